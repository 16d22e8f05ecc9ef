//! The unique ID of a real-time / reissue command packet must be a VIN: 17 digits and
//! upper-case letters (GB 16735; I, O, Q accepted as real terminals send them), no padding.
//! Mirrors `ingest.decoders.identity.check_identity(raw, vin=True)`.

use crate::envelope::{ID_OFFSET, ID_SIZE};
use crate::error::{FrameError, Result, BAD_IDENTITY};

/// The VIN of the ID field `raw` (17 bytes), or `bad_identity` at the first offending byte.
pub fn check_vin(raw: &[u8; ID_SIZE]) -> Result<&str> {
    for (i, &b) in raw.iter().enumerate() {
        if !(b.is_ascii_digit() || b.is_ascii_uppercase()) {
            return Err(FrameError::new(
                BAD_IDENTITY,
                ID_OFFSET + i,
                format!(
                    "unique ID byte {b:#04x} at position {}: a VIN is 17 digits and upper-case \
                     letters (GB 16735)",
                    i + 1
                ),
            ));
        }
    }
    // Every byte is ASCII, checked just above.
    Ok(std::str::from_utf8(raw).expect("ASCII is UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vins_pass_and_the_first_bad_byte_is_named() {
        assert_eq!(
            check_vin(b"LSVAU2180N2183294").unwrap(),
            "LSVAU2180N2183294"
        );
        let e = check_vin(b"LSVAU2180n2183294").unwrap_err();
        assert_eq!((e.reason, e.offset), (BAD_IDENTITY, ID_OFFSET + 9));
        assert!(e.detail.starts_with("unique ID byte 0x6e at position 10"));
        assert_eq!(check_vin(&[0; 17]).unwrap_err().offset, ID_OFFSET);
    }
}
