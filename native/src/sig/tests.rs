//! Keys in testdata/ were made for these tests with `openssl genpkey` (RSA-2048, SM2); they
//! protect nothing. OpenSSL's own signatures check that RustCrypto verifies what another
//! implementation signs; frames are signed here with the crates' signers.

use rsa::pkcs1v15::SigningKey as RsaSigningKey;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use rsa::sha2::Sha256;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use sm2::dsa::SigningKey as Sm2SigningKey;

use super::locate::{locate, ACTIVATION};
use super::*;
use crate::envelope::{bcc, HEADER_SIZE};

const RSA_KEY: &str = include_str!("testdata/rsa_test_key.pem");
const RSA_PUB: &str = include_str!("testdata/rsa_test_pub.pem");
const SM2_KEY: &str = include_str!("testdata/sm2_test_key.pem");
const SM2_PUB: &str = include_str!("testdata/sm2_test_pub.pem");
const MSG: &[u8] = b"nev-ingest signature test";
/// `openssl dgst -sha256 -sign rsa_test_key.pem` of MSG.
const OPENSSL_RSA_SIG: &str = "b221d28c0e4a711c93d1a130b3f1fa9ad9148eaa8445f66ba73f2e38fed575c6d696d089f06c69d9c6f627cbf717a1c7f3de0654ee915ca0f8f8b12bc283eb71ed3a75c6c0841587576c046b1907befda487dce0013a7cea4ef50cb0b4c8a970f5b7e293c279fb3c4e3bf723d597c2b926acba1fc6929c7c36b41f9d2bfe482298bae964395be0d24d9ba3cee463e553c29e87885b5d355223986a8a2356e1f655a3662e2ad76b7087ce8fb68341e349ba1da5af28c16241cd9d204963f05353f76d9d5c6ff4cc2603f47efce2da907050050004130df50a9aa44ccb8bc137806fc64125afbb4f38c90dd40b23a7d40537a313bad9aababa725a5876a68040d8";
/// `openssl dgst -sm3 -sign sm2_test_key.pem -sigopt distid:1234567812345678` of MSG (DER r, s).
const OPENSSL_SM2_R: &str = "8029b0903ef9b19023d53b4af238b16a4154bc8faacdc1ff88fa6d519d74f902";
const OPENSSL_SM2_S: &str = "81e93318e7d47ef924da56492dc55d3dabcd0db885b0ff17bc885a1c46c66aff";

pub(crate) fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn rsa_signer() -> RsaSigningKey<Sha256> {
    RsaSigningKey::<Sha256>::new(rsa::PrivateKey::from_pkcs8_pem(RSA_KEY).unwrap())
}

fn sm2_signer() -> Sm2SigningKey {
    let secret = sm2::SecretKey::from_pkcs8_pem(SM2_KEY).unwrap();
    Sm2SigningKey::new(SM2_DEFAULT_ID, &secret).unwrap()
}

fn rsa_raw_key() -> Vec<u8> {
    // The activation's form: modulus || exponent.
    let k = rsa::PublicKey::from_public_key_pem(RSA_PUB).unwrap();
    let mut out = k.n().to_be_bytes().to_vec();
    out.extend(k.e().to_be_bytes().iter().skip_while(|&&b| b == 0));
    out
}

fn sm2_xy() -> Vec<u8> {
    let k = sm2::PublicKey::from_public_key_pem(SM2_PUB).unwrap();
    k.to_sec1_bytes()[1..].to_vec()
}

/// A 2025 frame: header, `unit`, BCC.
fn frame(command: u8, unit: &[u8]) -> Vec<u8> {
    let mut buf = b"$$".to_vec();
    buf.push(command);
    buf.push(0xFE);
    buf.extend_from_slice(b"LSIGTEST000000001");
    buf.push(0x01);
    buf.extend((unit.len() as u16).to_be_bytes());
    buf.extend_from_slice(unit);
    buf.push(bcc(&buf, 2, buf.len()));
    buf
}

/// Table 8 for `algorithm`, r, s.
fn table8(algorithm: u8, r: &[u8], s: &[u8]) -> Vec<u8> {
    let mut out = vec![algorithm];
    out.extend((r.len() as u16).to_be_bytes());
    out.extend_from_slice(r);
    out.extend((s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
    out
}

/// Time and an engine block (rtm_con's 2025 vector), the bytes a real-time frame signs.
const BODY: [u8; 9] = [0x19, 0x0A, 0x1B, 0x14, 0x02, 0x02, 0x04, 0xFF, 0xFF];

fn signed_realtime(algorithm: u8) -> Vec<u8> {
    let (r, s) = match algorithm {
        RSA => (rsa_signer().sign(&BODY).to_vec(), Vec::new()),
        _ => {
            let sig: sm2::dsa::Signature = sm2_signer().sign(&BODY);
            (sig.r_bytes().to_vec(), sig.s_bytes().to_vec())
        }
    };
    let mut unit = BODY.to_vec();
    unit.push(0xFF);
    unit.extend(table8(algorithm, &r, &s));
    frame(0x02, &unit)
}

#[test]
fn openssl_signatures_verify() {
    let sig = hex(OPENSSL_RSA_SIG);
    for key in [RSA_PUB.as_bytes().to_vec(), rsa_raw_key()] {
        assert_eq!(verify(RSA, &key, RSA, MSG, &sig, &[]), Status::Valid);
        assert_eq!(verify(RSA, &key, RSA, b"other", &sig, &[]), Status::Invalid);
    }
    let der = rsa::PublicKey::from_public_key_pem(RSA_PUB)
        .unwrap()
        .to_public_key_der()
        .unwrap();
    assert_eq!(
        verify(RSA, der.as_bytes(), RSA, MSG, &sig, &[]),
        Status::Valid
    );
    let (r, s) = (hex(OPENSSL_SM2_R), hex(OPENSSL_SM2_S));
    let mut sec1 = vec![0x04];
    sec1.extend(sm2_xy());
    for key in [SM2_PUB.as_bytes().to_vec(), sm2_xy(), sec1] {
        assert_eq!(verify(SM2, &key, SM2, MSG, &r, &s), Status::Valid);
        assert_eq!(verify(SM2, &key, SM2, b"other", &r, &s), Status::Invalid);
        assert_eq!(verify(SM2, &key, SM2, MSG, &s, &r), Status::Invalid);
    }
}

#[test]
fn good_forged_unknown_and_unsigned_frames() {
    for (algorithm, key) in [(RSA, rsa_raw_key()), (SM2, sm2_xy())] {
        let parsed = parse_key(algorithm, &key).unwrap();
        let good = signed_realtime(algorithm);
        assert_eq!(verify_frame(&good, Some(&parsed)), Status::Valid);
        assert_eq!(verify_frame(&good, None), Status::UnknownKey);
        // Forged: one signed byte changed (and the BCC fixed, so the frame is well formed).
        let mut forged = good.clone();
        forged[HEADER_SIZE + 7] ^= 0x01;
        let end = forged.len() - 1;
        forged[end] = bcc(&forged, 2, end);
        assert_eq!(verify_frame(&forged, Some(&parsed)), Status::Invalid);
        // The other algorithm's key: a mismatch, not a verdict.
        let other = if algorithm == RSA {
            parse_key(SM2, &sm2_xy()).unwrap()
        } else {
            parse_key(RSA, &rsa_raw_key()).unwrap()
        };
        assert_eq!(verify_frame(&good, Some(&other)), Status::AlgorithmMismatch);
    }
    let unsigned = frame(0x02, &BODY);
    let key = parse_key(RSA, &rsa_raw_key()).unwrap();
    assert_eq!(verify_frame(&unsigned, Some(&key)), Status::Unsigned);
    // 2016 frames and other commands carry no signature: nothing to check.
    let mut old = unsigned.clone();
    old[0] = b'#';
    old[1] = b'#';
    assert_eq!(verify_frame(&old, Some(&key)), Status::NotApplicable);
    assert_eq!(
        verify_frame(&frame(0x07, &[]), Some(&key)),
        Status::NotApplicable
    );
}

#[test]
fn ecc_and_reserved_types_against_a_key_are_a_mismatch_and_bad_keys_say_so() {
    // A registered key is SM2 or RSA: a frame that claims ECC or a reserved type cannot be
    // vouched for by it (and must not slip past `reject` as "unsupported").
    for claimed in [ECC, 0x00, 0x04, 0x07, 0xFF] {
        assert_eq!(
            verify(RSA, &rsa_raw_key(), claimed, MSG, &[1], &[2]),
            Status::AlgorithmMismatch
        );
        let key = parse_key(SM2, &sm2_xy()).unwrap();
        assert_eq!(
            verify_parsed(&key, claimed, MSG, &[1], &[2]),
            Status::AlgorithmMismatch
        );
    }
    assert_eq!(verify(ECC, &[4], ECC, MSG, &[1], &[2]), Status::Unsupported);
    assert_eq!(verify(RSA, &[1, 2, 3], RSA, MSG, &[1], &[]), Status::BadKey);
    assert_eq!(
        verify(SM2, &[0u8; 64], SM2, MSG, &[1], &[2]),
        Status::BadKey
    );
    assert_eq!(
        verify(SM2, &sm2_xy(), RSA, MSG, &[1], &[]),
        Status::AlgorithmMismatch
    );
    assert!(parse_key(ECC, &[0x04]).is_err());
}

/// rtm_con's `activation2025` from its git history (tests/golden/vectors.jsonl): the RSA key it
/// carries verifies its own signature, PKCS#1 v1.5 + SHA-256 over time..VIN..0xFF marker.
const ACTIVATION_2025: &str = "242409FE48474C48334143463150413731343430380102321906170F0616313233343536373831323334353637380103CE6F0A94CBECE0C56BA8E4EDA6DBF838D5374536B0B5E9B57DB2ABE2ACE31ABC8F9C2A72C8A71C2128E999C354733542B034A5FC521D7C2124BB3C7EFF16C2F1161C11F7E38AEBF17A69A2D68D23D78730B98B0D1C867076F44003786E35B89FDA73130A48211959521CC613C9978F622F328383350BF334E4A7A80208981123D384D4F8685189240F8EBC56DFC4C0628A044466BC13C833DDE1BEA636147892069C6C294923E4C6C8AA64D0E981A0F8135D1C332EF9FDC7C3612B37DECB5DF6CC8E4040CF912B845456D169807B494805EEED7AEC09F22B344F0ED029375F49903BD704515E319509AEACF3C50DAAED3561C9A54879F13FF0790A499C96D3C101000148474C4833414346315041373134343038FF020100BE3B4D48647B90FD359F5365B700850FF095C360470336505BFD7393454BD782719567968E021109F2D21EBF8AA4548020336DC21E6AFDC07D4897CBC25B007C02E28C971D626ACF4ED30D2197735480D5489967BD7BC336DA1E9A6F12C3E9FDB60A1C00F237042F8F82E31A51307E97F77D4BFB50B5CBCD80C1711A5ADB0D7E8BE9650222E71273A3642FE65E93E437DEAEF46F257F389FDFAC889333CA759CE7EC5027879C4D8BF872DF84A2ED1CAB4C7A2E92CCABDE77B22DEE19AF32F371360F67B0310FBAE66201C8F68E8D2E709F692951BCA151A6AC509443FAFCD565FDA62B3B5D4D5B7350995699F7B1F39B60B4EF6791F6D8A75661BEF055FE93C700000D";

#[test]
fn the_public_activation_vector_verifies_with_its_own_key() {
    let buf = hex(&ACTIVATION_2025.to_ascii_lowercase());
    let parts = locate(&buf).unwrap();
    assert_eq!(parts.command, ACTIVATION);
    assert_eq!(&buf[parts.chip_id.clone().unwrap()], b"1234567812345678");
    let key = &buf[parts.public_key.clone().unwrap()];
    assert_eq!(key.len(), 259);
    let parsed = parse_key(RSA, key).unwrap();
    assert_eq!(verify_frame(&buf, Some(&parsed)), Status::Valid);
    let sig = parts.signature.unwrap();
    assert_eq!(buf[sig.signed.end - 1], 0xFF); // this older layout signs its marker too
}

#[test]
fn activation_without_marker_signs_time_to_vin() {
    let key = rsa_raw_key();
    let mut body = BODY[..6].to_vec();
    body.extend_from_slice(b"CHIP000000000001");
    body.extend((key.len() as u16).to_be_bytes());
    body.extend_from_slice(&key);
    body.extend_from_slice(b"LSIGTEST000000001");
    let sig = rsa_signer().sign(&body).to_vec();
    let mut unit = body.clone();
    unit.extend(table8(RSA, &sig, &[]));
    let buf = frame(ACTIVATION, &unit);
    let parsed = parse_key(RSA, &key).unwrap();
    assert_eq!(verify_frame(&buf, Some(&parsed)), Status::Valid);
    assert_eq!(&buf[locate(&buf).unwrap().public_key.unwrap()], &key[..]);
}

#[test]
fn arbitrary_inputs_never_panic() {
    // A bounded fuzz loop (xorshift, fixed seed): random keys, signatures and frames, and
    // mutations of good ones; the verifier must return a status for every input.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let goods = [
        signed_realtime(RSA),
        signed_realtime(SM2),
        hex(&ACTIVATION_2025.to_ascii_lowercase()),
    ];
    let keys = [rsa_raw_key(), sm2_xy(), RSA_PUB.as_bytes().to_vec()];
    let parsed = [
        parse_key(RSA, &keys[0]).unwrap(),
        parse_key(SM2, &keys[1]).unwrap(),
    ];
    for i in 0..3_000 {
        let n = (next() % 600) as usize;
        let random: Vec<u8> = (0..n).map(|_| next() as u8).collect();
        let alg = (next() % 5) as u8;
        let cut = (next() as usize) % (n + 1);
        let _ = verify(
            alg,
            &random,
            alg,
            &random[..cut],
            &random[cut..],
            &random[..n / 2],
        );
        let _ = parse_key(alg, &random);
        let mut m = goods[i % goods.len()].clone();
        for _ in 0..=(next() % 4) {
            let at = (next() as usize) % m.len();
            m[at] = next() as u8;
        }
        if next() % 3 == 0 {
            m.truncate((next() as usize) % (m.len() + 1));
        }
        let _ = verify_frame(&m, Some(&parsed[i % 2]));
        let _ = verify_frame(&random, Some(&parsed[i % 2]));
        let mut k = keys[i % keys.len()].clone();
        let at = (next() as usize) % k.len();
        k[at] ^= 1 << (next() % 8);
        let _ = parse_key(if i % 3 == 1 { SM2 } else { RSA }, &k);
    }
}
