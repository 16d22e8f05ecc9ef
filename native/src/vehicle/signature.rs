//! The 2025 signature block at the end of a data unit: port of
//! `ingest.decoders.signature.find_signature`.
//!
//! Table 8 after the 0xFF marker: algorithm BYTE (0x01 SM2, 0x02 RSA, 0x03 ECC), R length WORD,
//! r, S length WORD, s. The search runs backwards (§3.12 step 3): the last marker whose body
//! ends exactly at the end of the data unit is the signature, whereas the first 0xFF may be a
//! sentinel inside a block.

const MARKER: u8 = 0xFF;
/// Marker, algorithm, R length and S length: the smallest signature.
const MIN_SIZE: usize = 6;

fn word(buf: &[u8], at: usize) -> Option<usize> {
    let b = buf.get(at..at.checked_add(2)?)?;
    Some(usize::from(u16::from_be_bytes([b[0], b[1]])))
}

/// Whether a Table 8 signature whose marker is at `p` ends exactly at `end`.
fn ends_at(buf: &[u8], p: usize, end: usize) -> Option<bool> {
    if !matches!(buf.get(p + 1)?, 0x01..=0x03) {
        return Some(false);
    }
    let q = p + 4 + word(buf, p + 2)?;
    if q + 2 > end {
        return Some(false);
    }
    Some(q + 2 + word(buf, q)? == end)
}

/// The frame offset where a signature that ends the data unit starts, searching from `tail`
/// (the first byte the walk could not place); None when there is none.
pub fn find_signature(buf: &[u8], tail: usize, end: usize) -> Option<usize> {
    // Markers at tail ..= end - 6 (Python: rfind(b"\xff", tail, end - 5)); `end` past the
    // buffer (no caller does that) finds nothing rather than panicking.
    let last = end.checked_sub(MIN_SIZE)?;
    if end > buf.len() || tail > last {
        return None;
    }
    let window = &buf[tail..=last];
    window
        .iter()
        .enumerate()
        .rev()
        .filter(|&(_, &b)| b == MARKER)
        .map(|(i, _)| tail + i)
        .find(|&p| ends_at(buf, p, end) == Some(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `prefix`, then a signature (marker, algorithm, r, s), then `suffix`.
    fn signed(prefix: &[u8], algorithm: u8, r: &[u8], s: &[u8], suffix: &[u8]) -> Vec<u8> {
        let mut buf = prefix.to_vec();
        buf.push(MARKER);
        buf.push(algorithm);
        buf.extend((r.len() as u16).to_be_bytes());
        buf.extend_from_slice(r);
        buf.extend((s.len() as u16).to_be_bytes());
        buf.extend_from_slice(s);
        buf.extend_from_slice(suffix);
        buf
    }

    #[test]
    fn finds_the_signature_that_ends_the_unit() {
        let buf = signed(&[0x01, 0x02, 0x03], 0x02, &[7; 32], &[], &[0xBC]);
        let end = buf.len() - 1; // the BCC is not part of the data unit
        assert_eq!(find_signature(&buf, 0, end), Some(3));
        assert_eq!(find_signature(&buf, 3, end), Some(3));
        assert_eq!(find_signature(&buf, 4, end), None); // the marker is before the search
    }

    #[test]
    fn an_earlier_ff_sentinel_is_not_the_signature() {
        // 0xFF 0x01 .. inside a block could parse as a signature that does not end the unit.
        let buf = signed(
            &[0xFF, 0x01, 0x00, 0x00, 0xFF, 0xFF],
            0x01,
            &[1, 2],
            &[3, 4],
            &[],
        );
        assert_eq!(find_signature(&buf, 0, buf.len()), Some(6));
    }

    #[test]
    fn an_ff_inside_r_or_s_is_searched_past() {
        // The last 0xFF of the unit is inside s; the real marker is before it.
        let buf = signed(&[0x10], 0x03, &[0xFF, 0x01], &[0xFF, 0x02, 0x00, 0x00], &[]);
        assert_eq!(find_signature(&buf, 0, buf.len()), Some(1));
    }

    #[test]
    fn absent_wrong_algorithm_or_truncated_finds_none() {
        let buf = signed(&[0x01], 0x04, &[9; 4], &[9; 4], &[]); // 0x04: reserved algorithm
        assert_eq!(find_signature(&buf, 0, buf.len()), None);
        let buf = signed(&[0x01], 0x02, &[9; 4], &[9; 4], &[]);
        assert_eq!(find_signature(&buf, 0, buf.len()), Some(1));
        assert_eq!(find_signature(&buf, 0, buf.len() - 1), None); // s one byte short
        assert_eq!(find_signature(&buf[..buf.len() - 1], 0, buf.len()), None); // end past buf
        let with_extra = signed(&[0x01], 0x02, &[9; 4], &[9; 4], &[0x00]);
        assert_eq!(find_signature(&with_extra, 0, with_extra.len()), None); // not at the end
        assert_eq!(find_signature(&[0x01, 0x02], 0, 2), None);
        assert_eq!(find_signature(&[], 0, 0), None);
        assert_eq!(find_signature(&[0xFF; 8], 9, 8), None);
    }

    #[test]
    fn the_smallest_signature_is_six_bytes() {
        let buf = signed(&[], 0x01, &[], &[], &[]);
        assert_eq!(buf.len(), MIN_SIZE);
        assert_eq!(find_signature(&buf, 0, 6), Some(0));
        // An r length that overruns the unit is no signature.
        assert_eq!(
            find_signature(&[0xFF, 0x01, 0xFF, 0xFF, 0x00, 0x00], 0, 6),
            None
        );
    }
}
