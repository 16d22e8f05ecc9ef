//! Where a frame's signature is and which bytes it signs.
//!
//! - Real-time / reissue (0x02 / 0x03, 2025, plain): the block walk of `vehicle`, then the
//!   backward search of `vehicle::signature` from where the walk stopped; signed = data unit
//!   start .. the byte before the 0xFF marker (§3.4; the rtm_con frames verify so).
//! - Activation (0x09, Table B.3): time, chip id (16), key length WORD, key, VIN (17), then
//!   Table 8; signed = data unit start .. the byte before Table 8. rtm_con's current vector has
//!   no marker there and verifies over time..VIN; an older one has a 0xFF marker before Table 8
//!   and verifies over time..VIN..0xFF: both are "everything before Table 8" [I].

use std::ops::Range;

use crate::envelope::{
    bcc, COMMAND_PACKET, ENCRYPTION_NONE, HEADER_SIZE, ID_OFFSET, ID_SIZE, MAX_DATA_LENGTH,
    REALTIME, REISSUE,
};
use crate::vehicle::signature_marker;

pub const ACTIVATION: u8 = 0x09;
const MARKER: u8 = 0xFF;
const TIME: usize = 6;
const CHIP_ID: usize = 16;
const VIN: usize = 17;

/// A Table 8 signature found in a frame: frame byte ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub algorithm: u8,
    pub signed: Range<usize>,
    pub r: Range<usize>,
    pub s: Range<usize>,
}

/// What `locate` finds in a frame that should carry a signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parts {
    pub command: u8,
    pub signature: Option<Located>,
    /// Activation only: the chip id and the public key it registers.
    pub chip_id: Option<Range<usize>>,
    pub public_key: Option<Range<usize>>,
}

/// The data unit's end when `buf` is a whole, plain, 2025 command packet whose length and BCC
/// check; None for anything else (the decoder rejects the malformed with its own reason).
fn plain_2025(buf: &[u8]) -> Option<usize> {
    if buf.len() <= HEADER_SIZE || buf[0] != b'$' || buf[1] != b'$' {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([buf[22], buf[23]]));
    let end = HEADER_SIZE + length;
    let ok = buf[3] == COMMAND_PACKET
        && buf[21] == ENCRYPTION_NONE
        && length <= MAX_DATA_LENGTH
        && buf.len() == end + 1
        && bcc(buf, 2, end) == buf[end];
    ok.then_some(end)
}

fn word(buf: &[u8], at: usize) -> Option<usize> {
    let b = buf.get(at..at.checked_add(2)?)?;
    Some(usize::from(u16::from_be_bytes([b[0], b[1]])))
}

/// Table 8 at `at`, which must end exactly at `end`; `signed` is the range it signs.
fn table8(buf: &[u8], at: usize, end: usize, signed: Range<usize>) -> Option<Located> {
    let algorithm = *buf.get(at)?;
    let r_len = word(buf, at + 1)?;
    let r = at + 3..at + 3 + r_len;
    let s_len = word(buf, r.end)?;
    let s = r.end + 2..r.end + 2 + s_len;
    (s.end == end).then_some(Located {
        algorithm,
        signed,
        r,
        s,
    })
}

/// The signature parts of a 2025 real-time, reissue or activation frame; None for any other.
pub fn locate(buf: &[u8]) -> Option<Parts> {
    let end = plain_2025(buf)?;
    let command = buf[2];
    let unit = HEADER_SIZE;
    match command {
        REALTIME | REISSUE => {
            if end < unit + TIME {
                return None;
            }
            let signature =
                signature_marker(buf, end).and_then(|p| table8(buf, p + 1, end, unit..p));
            Some(Parts {
                command,
                signature,
                chip_id: None,
                public_key: None,
            })
        }
        ACTIVATION => {
            let chip = unit + TIME..unit + TIME + CHIP_ID;
            let key_len = word(buf, chip.end)?;
            let key = chip.end + 2..chip.end + 2 + key_len;
            let vin_end = key.end.checked_add(VIN)?;
            if vin_end > end {
                return None;
            }
            // Table 8 right after the VIN, or after a 0xFF marker there (older rtm_con).
            let signature = table8(buf, vin_end, end, unit..vin_end).or_else(|| {
                (buf.get(vin_end) == Some(&MARKER))
                    .then(|| table8(buf, vin_end + 1, end, unit..vin_end + 1))
                    .flatten()
            });
            Some(Parts {
                command,
                signature,
                chip_id: Some(chip),
                public_key: Some(key),
            })
        }
        _ => None,
    }
}

/// The VIN's frame range (the same place in every frame).
pub const VIN_RANGE: Range<usize> = ID_OFFSET..ID_OFFSET + ID_SIZE;
