//! The frame envelope (§6.2 of both editions): start marker, command and response flags, the
//! 17-byte unique ID, encryption byte, data-unit length, and the BCC that ends the frame.

pub const EDITION_2016: u16 = 2016;
pub const EDITION_2025: u16 = 2025;
pub const HEADER_SIZE: usize = 24;
pub const MAX_DATA_LENGTH: usize = 65531;
pub const ID_OFFSET: usize = 4;
pub const ID_SIZE: usize = 17;
pub const COMMAND_PACKET: u8 = 0xFE;
pub const ENCRYPTION_NONE: u8 = 0x01;
pub const REALTIME: u8 = 0x02;
pub const REISSUE: u8 = 0x03;

/// A well-formed real-time (0x02) or reissue (0x03) command packet with a plain data unit:
/// what `plain_data` found. The data unit is `buf[HEADER_SIZE..end]`; `buf[end]` is the BCC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plain {
    pub edition: u16,
    pub command: u8,
    pub end: usize,
}

/// XOR of `buf[start..end]` (0 for an empty range).
pub fn bcc(buf: &[u8], start: usize, end: usize) -> u8 {
    buf[start..end].iter().fold(0, |acc, b| acc ^ b)
}

/// The checks of the Python `parse_envelope` for the frames the native path decodes, without
/// building anything: `None` for every other frame (another command, a response, an encrypted
/// unit, a bad marker, length or BCC), which the caller hands to the structured decoder -- the
/// one that names the exact error. (The Python fast path's `plain_data` did the same before issue 12.)
pub fn plain_data(buf: &[u8]) -> Option<Plain> {
    if buf.len() <= HEADER_SIZE || buf[0] != buf[1] || (buf[0] != b'#' && buf[0] != b'$') {
        return None;
    }
    let command = buf[2];
    let response = buf[3];
    let encryption = buf[21];
    let length = usize::from(u16::from_be_bytes([buf[22], buf[23]]));
    let end = HEADER_SIZE + length;
    let ok = (command == REALTIME || command == REISSUE)
        && response == COMMAND_PACKET
        && encryption == ENCRYPTION_NONE
        && buf.len() == end + 1
        && length <= MAX_DATA_LENGTH
        && bcc(buf, 2, end) == buf[end];
    ok.then(|| Plain {
        edition: if buf[0] == b'#' {
            EDITION_2016
        } else {
            EDITION_2025
        },
        command,
        end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(marker: u8, command: u8, unit: &[u8]) -> Vec<u8> {
        let mut f = vec![marker, marker, command, COMMAND_PACKET];
        f.extend_from_slice(b"LSVAU2180N2183294");
        f.push(ENCRYPTION_NONE);
        f.extend_from_slice(&(unit.len() as u16).to_be_bytes());
        f.extend_from_slice(unit);
        let check = bcc(&f, 2, f.len());
        f.push(check);
        f
    }

    #[test]
    fn plain_realtime_frames_are_found() {
        let f = frame(b'#', REALTIME, &[24, 1, 2, 3, 4, 5]);
        let p = plain_data(&f).unwrap();
        assert_eq!(
            (p.edition, p.command, p.end),
            (EDITION_2016, REALTIME, f.len() - 1)
        );
        let f = frame(b'$', REISSUE, &[24, 1, 2, 3, 4, 5]);
        assert_eq!(plain_data(&f).unwrap().edition, EDITION_2025);
    }

    #[test]
    fn everything_else_goes_to_the_structured_decoder() {
        assert!(plain_data(&frame(b'#', 0x01, &[0; 6])).is_none()); // login
        let mut f = frame(b'#', REALTIME, &[0; 6]);
        let last = f.len() - 1;
        f[last] ^= 1; // bad BCC
        assert!(plain_data(&f).is_none());
        assert!(plain_data(&frame(b'#', REALTIME, &[0; 6])[..20]).is_none());
        assert!(plain_data(b"").is_none());
        let mut f = frame(b'#', REALTIME, &[0; 6]);
        f[1] = b'$'; // mixed marker
        assert!(plain_data(&f).is_none());
    }
}
