//! GB/T 32960-2025 vehicle signatures (Table 8): verification with maintained RustCrypto
//! crates (`rsa` for RSA PKCS#1 v1.5 + SHA-256, `sm2` for SM2 with SM3), the device key formats
//! (`keys`) and where a frame's signature and signed bytes are (`locate`). Pure: bytes in, a
//! status out; no I/O, no panics on any input (examples/fuzz.rs and the tests below).

pub mod keys;
pub mod locate;
#[cfg(test)]
mod tests;

use rsa::pkcs1v15::{Signature as RsaSignature, VerifyingKey as RsaVerifyingKey};
use rsa::sha2::Sha256;
use rsa::signature::Verifier;
use sm2::dsa::Signature as Sm2Signature;

pub use keys::{parse_key, DeviceKey, KeyError};

/// Table 8 signature types.
pub const SM2: u8 = 0x01;
pub const RSA: u8 = 0x02;
pub const ECC: u8 = 0x03;

/// The SM2 user id when the standard names none: GM/T 0009-2012's default, which the 2025
/// transcription does not override [U: the standard's text on SM2 signatures was not read].
pub const SM2_DEFAULT_ID: &str = "1234567812345678";

/// The outcome of checking one frame's signature. The numbers cross to Python
/// (`ingest.pipeline.signatures.Status`); keep them in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// The signature verifies with the key.
    Valid = 0,
    /// The signature does not verify (forged, corrupted, or signed by another key).
    Invalid = 1,
    /// A frame that must carry a signature (2025 real-time / reissue) carries none.
    Unsigned = 2,
    /// No key is registered for the frame's VIN.
    UnknownKey = 3,
    /// The registered key cannot be read in the signature's algorithm.
    BadKey = 4,
    /// A key and signature both of a type the verifier has no scheme for (ECC 0x03, whose
    /// curve the transcription does not name, or a reserved one): not checked. A frame typed
    /// so against a registered SM2 or RSA key is `AlgorithmMismatch`.
    Unsupported = 5,
    /// The frame's signature type is not the registered key's algorithm.
    AlgorithmMismatch = 6,
    /// Not a frame that carries a signature (2016, another command, encrypted, malformed):
    /// nothing to check here; the decoder rejects the malformed ones with its own reason.
    NotApplicable = 7,
}

/// Verify `r`/`s` over `signed` with the device key `key` (already parsed).
pub fn verify_parsed(key: &DeviceKey, algorithm: u8, signed: &[u8], r: &[u8], s: &[u8]) -> Status {
    match (key, algorithm) {
        (DeviceKey::Rsa(k), RSA) => {
            // RSA: R carries the whole signature and S is empty (the rtm_con 2025 frames).
            if !s.is_empty() {
                return Status::Invalid;
            }
            let Ok(sig) = RsaSignature::try_from(r) else {
                return Status::Invalid;
            };
            let vk = RsaVerifyingKey::<Sha256>::new(k.clone());
            status(vk.verify(signed, &sig).is_ok())
        }
        (DeviceKey::Sm2(vk), SM2) => {
            // r and s are 32-byte big-endian scalars; a shorter one is left-padded (a
            // terminal may strip leading zeros) [U: the transcription gives no width].
            let (Some(r), Some(s)) = (scalar(r), scalar(s)) else {
                return Status::Invalid;
            };
            let Ok(sig) = Sm2Signature::from_scalars(r, s) else {
                return Status::Invalid;
            };
            status(vk.verify(signed, &sig).is_ok())
        }
        // Any other type, ECC and the reserved ones included, is not the registered key's
        // algorithm (the registry holds SM2 and RSA keys only): that key cannot vouch for the
        // frame, which claiming an unchecked type must not get past `reject`.
        _ => Status::AlgorithmMismatch,
    }
}

/// `verify_parsed` from the key's stored bytes (`keys::parse_key`).
pub fn verify(
    key_algorithm: u8,
    public_key: &[u8],
    algorithm: u8,
    signed: &[u8],
    r: &[u8],
    s: &[u8],
) -> Status {
    if key_algorithm != algorithm {
        return Status::AlgorithmMismatch;
    }
    if algorithm != SM2 && algorithm != RSA {
        return Status::Unsupported; // a key of a type the verifier has no scheme for
    }
    match parse_key(key_algorithm, public_key) {
        Ok(key) => verify_parsed(&key, algorithm, signed, r, s),
        Err(_) => Status::BadKey,
    }
}

fn status(ok: bool) -> Status {
    if ok {
        Status::Valid
    } else {
        Status::Invalid
    }
}

fn scalar(v: &[u8]) -> Option<[u8; 32]> {
    let v = match v.iter().position(|&b| b != 0) {
        Some(first) if v.len() > 32 => &v[first..],
        _ => v,
    };
    if v.len() > 32 {
        return None;
    }
    let mut out = [0u8; 32];
    out[32 - v.len()..].copy_from_slice(v);
    Some(out)
}

/// Parse `key` once and verify one frame with it: the hot path's form, so that a batch of
/// frames from one vehicle does not re-read the key (`locate::locate` finds the parts).
pub fn verify_frame(frame: &[u8], key: Option<&DeviceKey>) -> Status {
    let Some(parts) = locate::locate(frame) else {
        return Status::NotApplicable;
    };
    let Some(sig) = parts.signature else {
        return Status::Unsigned;
    };
    let Some(key) = key else {
        return Status::UnknownKey;
    };
    verify_parsed(
        key,
        sig.algorithm,
        &frame[sig.signed.clone()],
        &frame[sig.r.clone()],
        &frame[sig.s.clone()],
    )
}
