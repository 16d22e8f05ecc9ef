//! A walk that stopped early because a motor / pack count was too large: port of
//! `ingest/decoders/counts.py` `find_miscount`.
//!
//! The drive-motor and cell-voltage/temperature blocks have no length, only an entry count, so
//! a count of 3 over two motors makes the walk read the next block's bytes as a third motor and
//! go on misaligned: invented rows, then usually a stop (a partial frame). Nothing inside the
//! block can tell; the rest of the data unit can. So when a walk stops early, each counted
//! block before the stop (latest first) is tried with fewer entries: if the walk from that
//! entry boundary consumes the rest of the data unit (or reaches the 2025 signature that ends
//! it), the count is what was wrong, and the frame is rejected with `count_mismatch` at the
//! count byte. A stop that no smaller count explains stays a partial frame (§3.12).

use crate::envelope::EDITION_2016;
use crate::error::{FrameError, COUNT_MISMATCH};

/// Each try is one walk of the rest of the unit: a bound, so that a hostile frame full of
/// counted blocks costs a few walks, not blocks x entries of them.
pub const MAX_TRIES: usize = 32;

/// The name of a counted block type in the reject message (`counts.COUNTED`).
fn name(edition: u16, t: u8) -> &'static str {
    match (edition == EDITION_2016, t) {
        (_, 0x02) => "drive motors",
        (true, 0x08) => "RESS voltages",
        (true, 0x09) => "RESS temperatures",
        (false, 0x07) => "cell voltages",
        (false, 0x08) => "temperatures",
        // Only the walks' `counted` offsets come here, and they point at counted types.
        _ => "counted block",
    }
}

/// Bytes of the entry at `pos` of a block of type `t`; None when its header is cut.
fn entry_size(buf: &[u8], pos: usize, end: usize, edition: u16, t: u8) -> Option<usize> {
    let word = |at: usize| usize::from(buf[at]) << 8 | usize::from(buf[at + 1]);
    if t == 0x02 {
        return Some(if edition == EDITION_2016 { 12 } else { 10 });
    }
    if edition == EDITION_2016 && t == 0x08 {
        // Header 10 bytes, page cell count m BYTE at +9.
        if pos + 10 > end {
            return None;
        }
        let m = usize::from(buf[pos + 9]);
        return Some(10 + if m >= 0xFE { 0 } else { 2 * m });
    }
    if edition != EDITION_2016 && t == 0x07 {
        // Header 7 bytes, unit count N WORD at +5.
        if pos + 7 > end {
            return None;
        }
        let n = word(pos + 5);
        return Some(7 + if n >= 0xFFFE { 0 } else { 2 * n });
    }
    // Temperatures: pack BYTE, probe count N WORD, N bytes.
    if pos + 3 > end {
        return None;
    }
    let n = word(pos + 1);
    Some(3 + if n >= 0xFFFE { 0 } else { n })
}

/// Where the counted block whose type byte is at `at` would end with 0, 1, ... fewer entries
/// than its count says (only the boundaries inside the data unit).
pub fn entry_bounds(buf: &[u8], at: usize, end: usize, edition: u16) -> Vec<usize> {
    let end = end.min(buf.len());
    if at + 2 > end {
        return Vec::new();
    }
    let (t, n) = (buf[at], buf[at + 1]);
    if n >= 0xFE {
        return Vec::new(); // a sentinel count has no list: nothing to recount
    }
    let mut out = Vec::with_capacity(usize::from(n));
    let mut pos = at + 2;
    for _ in 0..n {
        if pos > end {
            break;
        }
        out.push(pos);
        match entry_size(buf, pos, end, edition, t) {
            Some(size) => pos += size,
            None => break,
        }
    }
    out
}

/// The `count_mismatch` error of a stopped walk, or None when no count explains the stop.
///
/// `counted` are the type-byte offsets of the counted blocks the walk met (in order);
/// `clean(pos)` says whether a walk from `pos` consumes the rest of the data unit.
pub fn find_miscount(
    buf: &[u8],
    counted: &[usize],
    end: usize,
    edition: u16,
    mut clean: impl FnMut(usize) -> bool,
) -> Option<FrameError> {
    let mut tries = MAX_TRIES;
    for &at in counted.iter().rev() {
        let bounds = entry_bounds(buf, at, end, edition);
        for k in (0..bounds.len()).rev() {
            if tries == 0 {
                return None;
            }
            tries -= 1;
            if clean(bounds[k]) {
                let (t, n) = (buf[at], buf[at + 1]);
                return Some(FrameError::new(
                    COUNT_MISMATCH,
                    at + 1,
                    format!(
                        "{} (type {t:#04x}): count {n}, but the blocks after it line up after \
                         {k} entries",
                        name(edition, t)
                    ),
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::EDITION_2025;

    #[test]
    fn bounds_step_over_each_entry_and_stop_at_the_end() {
        // 2016 voltages at 0: 3 pages, the first with 1 cell (12 bytes), the second none.
        let mut buf = vec![0x08, 3];
        buf.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0x0C, 0xE4]);
        buf.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0, 1, 0xFF]);
        assert_eq!(
            entry_bounds(&buf, 0, buf.len(), EDITION_2016),
            vec![2, 14, 24]
        );
        // A cut header ends the list after its own boundary.
        assert_eq!(entry_bounds(&buf, 0, 20, EDITION_2016), vec![2, 14]);
        // Sentinel count, or no count byte: nothing to recount.
        assert!(entry_bounds(&[0x02, 0xFE, 0], 0, 3, EDITION_2016).is_empty());
        assert!(entry_bounds(&[0x02], 0, 1, EDITION_2016).is_empty());
        // 2025 motors are 10 bytes.
        let mut motors = [0u8; 30];
        motors[..2].copy_from_slice(&[0x02, 2]);
        assert_eq!(entry_bounds(&motors, 0, 30, EDITION_2025), vec![2, 12]);
    }

    #[test]
    fn the_latest_count_that_lines_up_is_named() {
        // Motors count 2 at 0 with bounds 2, 14; a clean walk from 14 means one entry fits.
        let buf = [0x02u8, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x05, 0, 0];
        let e = find_miscount(&buf, &[0], buf.len(), EDITION_2016, |at| at == 14).unwrap();
        assert_eq!((e.reason, e.offset), (COUNT_MISMATCH, 1));
        assert_eq!(
            e.detail,
            "drive motors (type 0x02): count 2, but the blocks after it line up after 1 entries"
        );
        assert!(find_miscount(&buf, &[0], buf.len(), EDITION_2016, |_| false).is_none());
    }

    #[test]
    fn the_tries_are_bounded() {
        let mut calls = 0;
        let mut buf = vec![0u8; 2401];
        buf[..2].copy_from_slice(&[0x02, 200]);
        let counted = vec![0; 10];
        let got = find_miscount(&buf, &counted, 2400, EDITION_2016, |_| {
            calls += 1;
            false
        });
        assert!(got.is_none());
        assert_eq!(calls, MAX_TRIES);
    }
}
