//! Device public keys as they arrive: in an activation (0x09, Table B.3) or from an admin
//! (`nev-ingest keys add`, DER or PEM). Parsing never panics; a key it cannot read is an error.
//!
//! RSA, in this order: PEM ("-----BEGIN"), DER SubjectPublicKeyInfo, DER PKCS#1
//! RSAPublicKey, then the activation's raw form, modulus || exponent, as in rtm_con's
//! `activation2025` vector (259 bytes: a 2048-bit modulus and `01 00 01`) [U: the
//! transcription does not give the layout]; a bare 128/256/384/512-byte modulus takes e = 65537.
//! SM2: 64 bytes x || y, 65 bytes `04 || x || y` (SEC1 uncompressed), 33 bytes compressed,
//! DER SubjectPublicKeyInfo, PEM.

use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::{BoxedUint, PublicKey as RsaPublicKey};
use sm2::dsa::VerifyingKey as Sm2VerifyingKey;

use super::{RSA, SM2, SM2_DEFAULT_ID};

/// A key ready to verify with.
#[derive(Debug, Clone)]
pub enum DeviceKey {
    Rsa(RsaPublicKey),
    Sm2(Box<Sm2VerifyingKey>),
}

/// Why a key could not be read (one line for the admin command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError(pub String);

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyError {}

/// The raw activation forms end with this exponent (65537).
const F4: [u8; 3] = [0x01, 0x00, 0x01];
const RSA_MODULUS_SIZES: [usize; 4] = [128, 256, 384, 512];

/// Read a device key of `algorithm` (0x01 SM2, 0x02 RSA) from its stored bytes.
pub fn parse_key(algorithm: u8, bytes: &[u8]) -> Result<DeviceKey, KeyError> {
    match algorithm {
        RSA => parse_rsa(bytes).map(DeviceKey::Rsa),
        SM2 => parse_sm2(bytes).map(|k| DeviceKey::Sm2(Box::new(k))),
        other => Err(KeyError(format!(
            "signature type 0x{other:02X} has no key format here; use 1 (SM2) or 2 (RSA)"
        ))),
    }
}

fn pem_text(bytes: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(bytes).ok()?.trim();
    text.starts_with("-----BEGIN").then_some(text)
}

fn parse_rsa(bytes: &[u8]) -> Result<RsaPublicKey, KeyError> {
    if let Some(text) = pem_text(bytes) {
        return RsaPublicKey::from_public_key_pem(text)
            .or_else(|_| RsaPublicKey::from_pkcs1_pem(text))
            .map_err(|e| {
                KeyError(format!(
                    "RSA PEM key unreadable ({e}); give a PUBLIC KEY or RSA PUBLIC KEY block"
                ))
            });
    }
    if bytes.first() == Some(&0x30) {
        if let Ok(k) = RsaPublicKey::from_public_key_der(bytes) {
            return Ok(k);
        }
        if let Ok(k) = RsaPublicKey::from_pkcs1_der(bytes) {
            return Ok(k);
        }
    }
    let (n, e) = if RSA_MODULUS_SIZES.contains(&bytes.len()) {
        (bytes, &F4[..])
    } else if bytes.len() > 3
        && bytes.ends_with(&F4)
        && RSA_MODULUS_SIZES.contains(&(bytes.len() - 3))
    {
        bytes.split_at(bytes.len() - 3)
    } else {
        return Err(KeyError(format!(
            "RSA key of {} bytes is not DER, PEM or modulus||01 00 01; give the key as DER or PEM",
            bytes.len()
        )));
    };
    let n = BoxedUint::from_be_slice_vartime(n);
    let e = BoxedUint::from_be_slice_vartime(e);
    RsaPublicKey::new(n, e)
        .map_err(|e| KeyError(format!("RSA key rejected ({e}); check the modulus")))
}

fn parse_sm2(bytes: &[u8]) -> Result<Sm2VerifyingKey, KeyError> {
    let bad = |what: &str| {
        KeyError(format!(
            "SM2 key unreadable ({what}); give 64-byte x||y, 65-byte 04||x||y, DER or PEM"
        ))
    };
    let public = if let Some(text) = pem_text(bytes) {
        sm2::PublicKey::from_public_key_pem(text).map_err(|_| bad("PEM"))?
    } else if bytes.len() == 64 {
        let mut sec1 = [0u8; 65];
        sec1[0] = 0x04;
        sec1[1..].copy_from_slice(bytes);
        sm2::PublicKey::from_sec1_bytes(&sec1).map_err(|_| bad("not a curve point"))?
    } else if bytes.first() == Some(&0x30) {
        sm2::PublicKey::from_public_key_der(bytes).map_err(|_| bad("DER"))?
    } else {
        sm2::PublicKey::from_sec1_bytes(bytes).map_err(|_| bad("not a curve point"))?
    };
    Sm2VerifyingKey::new(SM2_DEFAULT_ID, public).map_err(|_| bad("user id hash"))
}
