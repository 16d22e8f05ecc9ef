//! The alarm block and the pack join, shared by both editions (as the retired
//! Python fast path's `parse_alarm` / `join_packs` did), and (re-exported from `wire`) the
//! big-endian readers the walks use. Callers check lengths against the data unit's end before reading, exactly where
//! the Python code does (the checks decide the reject reason and offset).

use super::extremes::{cell_min_max, probe_min_max};
use super::{Alarm, Hints, Pack, TempEntry, VoltEntry};
use crate::error::{FrameError, Result, BAD_FIELD, TRUNCATED};

pub use crate::wire::{be16, be32};

/// `n` big-endian fault codes from `at` (checked by the caller).
fn codes(buf: &[u8], at: usize, n: usize) -> Vec<u32> {
    buf[at..at + 4 * n]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The alarm block body at `pos` (2016 0x07 / 2025 0x06): (next offset, alarm).
///
/// A count byte of 0xFE/0xFF is a sentinel and is followed by no codes (§3 sentinels).
pub fn parse_alarm(
    buf: &[u8],
    mut pos: usize,
    end: usize,
    edition_2025: bool,
) -> Result<(usize, Alarm)> {
    if pos + 5 > end {
        return Err(FrameError::new(
            TRUNCATED,
            pos,
            "alarm block needs 5 bytes for level and flags",
        ));
    }
    let level = buf[pos];
    let flags = be32(buf, pos + 1);
    pos += 5;
    let mut lists: [Vec<u32>; 4] = Default::default();
    for list in &mut lists {
        if pos >= end {
            return Err(FrameError::new(
                TRUNCATED,
                pos,
                "alarm block ends before a fault count",
            ));
        }
        let n = buf[pos];
        pos += 1;
        if n >= 0xFE {
            continue;
        }
        let n = usize::from(n);
        if pos + 4 * n > end {
            return Err(FrameError::new(
                BAD_FIELD,
                pos,
                format!("{n} fault codes overrun the data unit"),
            ));
        }
        *list = codes(buf, pos, n);
        pos += 4 * n;
    }
    let mut bit_levels = None;
    if edition_2025 {
        if pos >= end {
            return Err(FrameError::new(
                TRUNCATED,
                pos,
                "alarm block ends before the bit-level count",
            ));
        }
        let n = buf[pos];
        pos += 1;
        if n >= 0xFE {
            bit_levels = Some(Vec::new());
        } else {
            let n = usize::from(n);
            if pos + 2 * n > end {
                return Err(FrameError::new(
                    BAD_FIELD,
                    pos,
                    format!("{n} bit levels overrun the data unit"),
                ));
            }
            bit_levels = Some(buf[pos..pos + 2 * n].to_vec());
            pos += 2 * n;
        }
    }
    let [ress, motor, engine, other] = lists;
    let alarm = Alarm {
        max_level: (level < 0xFE).then_some(level),
        general_flags: flags, // all 32 bits are flags: no sentinel (Table 18)
        ress_faults: ress,
        motor_faults: motor,
        engine_faults: engine,
        other_faults: other,
        bit_levels,
    };
    Ok((pos, alarm))
}

/// Pack rows: each voltage entry joined with the first unused temperature entry of the same
/// pack number, in voltage-entry order; then the packs that only have temperatures.
///
/// Order-independent on purpose: real Dongfeng frames send 0x09 before 0x08 (§3.4). `buf` is
/// the frame the entries' byte ranges point into. The Python `hints` (the 2016 extremes block)
/// only let the interpreter check instead of search; they never changed a result (they were
/// verified against the cells), and a native search is cheaper than the check, so they are
/// accepted and not needed.
pub fn join_packs(
    buf: &[u8],
    volts: &[VoltEntry],
    temps: &[TempEntry],
    hints: Option<&Hints>,
) -> Vec<Pack> {
    let _ = hints;
    let row = |volt: Option<&VoltEntry>, pack: u8, probes: std::ops::Range<usize>| -> Pack {
        let (probe_min_c, probe_max_c) = match probe_min_max(&buf[probes.clone()]) {
            Some((lo, hi)) => (Some(lo), Some(hi)),
            None => (None, None),
        };
        let Some(v) = volt else {
            return Pack {
                pack,
                first_cell: 1,
                cells: 0..0,
                probes,
                probe_min_c,
                probe_max_c,
                ..Pack::default()
            };
        };
        let (cell_min_mv, cell_max_mv) = match cell_min_max(&buf[v.cells.clone()]) {
            Some((lo, hi)) => (Some(lo), Some(hi)),
            None => (None, None),
        };
        Pack {
            pack,
            voltage_v: v.voltage_v,
            current_a: v.current_a,
            cell_count: v.cell_count,
            first_cell: v.first_cell,
            cells: v.cells.clone(),
            probes,
            cell_min_mv,
            cell_max_mv,
            probe_min_c,
            probe_max_c,
        }
    };
    let mut packs = Vec::with_capacity(volts.len().max(temps.len()));
    // Which temperature entries are joined already. Frames carry a handful, so a linear scan
    // is cheaper than any map; a bit mask avoids allocating for up to 64 entries. Past that
    // (a hostile frame: 64 KB holds ~10,000 entries) each pack number's entries form a chain,
    // so the join stays linear: a scan per voltage entry cost such a frame 10-40 ms.
    let mut used = Used::new(temps.len());
    let mut chains = (temps.len() > 64).then(|| Chains::new(temps));
    for volt in volts {
        let found = match &mut chains {
            Some(chains) => chains.take(volt.pack),
            None => (0..temps.len()).find(|&k| temps[k].pack == volt.pack && !used.get(k)),
        };
        let mut probes = 0..0;
        if let Some(k) = found {
            used.set(k);
            probes = temps[k].probes.clone();
        }
        packs.push(row(Some(volt), volt.pack, probes));
    }
    for (k, entry) in temps.iter().enumerate() {
        if !used.get(k) {
            packs.push(row(None, entry.pack, entry.probes.clone()));
        }
    }
    packs
}

/// The temperature entries of each pack number not joined yet, first first: `head[pack]`,
/// then `next[k]` after entry `k` (`NONE` ends a chain).
struct Chains {
    head: [usize; 256],
    next: Vec<usize>,
}

const NONE: usize = usize::MAX;

impl Chains {
    fn new(temps: &[TempEntry]) -> Self {
        let mut chains = Chains {
            head: [NONE; 256],
            next: vec![NONE; temps.len()],
        };
        for (k, entry) in temps.iter().enumerate().rev() {
            chains.next[k] = chains.head[usize::from(entry.pack)];
            chains.head[usize::from(entry.pack)] = k;
        }
        chains
    }

    /// The first entry of `pack` not taken yet, taken.
    fn take(&mut self, pack: u8) -> Option<usize> {
        let k = self.head[usize::from(pack)];
        if k == NONE {
            return None;
        }
        self.head[usize::from(pack)] = self.next[k];
        Some(k)
    }
}

/// A set of entry indexes: a bit mask, or a Vec for more than 64 entries (hostile frames).
enum Used {
    Mask(u64),
    Many(Vec<bool>),
}

impl Used {
    fn new(n: usize) -> Self {
        if n <= 64 {
            Used::Mask(0)
        } else {
            Used::Many(vec![false; n])
        }
    }

    fn get(&self, k: usize) -> bool {
        match self {
            Used::Mask(m) => m >> k & 1 == 1,
            Used::Many(v) => v[k],
        }
    }

    fn set(&mut self, k: usize) {
        match self {
            Used::Mask(m) => *m |= 1 << k,
            Used::Many(v) => v[k] = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{BAD_FIELD, TRUNCATED};

    #[test]
    fn the_usual_alarm_block_and_its_lists() {
        // level 2, flags 0x00000101, N1 = 1 code, N2 sentinel, N3 = 0, N4 = 2 codes.
        let body = [
            2, 0, 0, 1, 1, 1, 0, 0, 0, 7, 0xFF, 0, 2, 0, 0, 0, 8, 0, 0, 0, 9, 0xAA,
        ];
        let (next, a) = parse_alarm(&body, 0, body.len() - 1, false).unwrap();
        assert_eq!(next, body.len() - 1);
        assert_eq!(a.max_level, Some(2));
        assert_eq!(a.general_flags, 0x101);
        assert_eq!(a.ress_faults, vec![7]);
        assert!(a.motor_faults.is_empty() && a.engine_faults.is_empty());
        assert_eq!(a.other_faults, vec![8, 9]);
        assert_eq!(a.fault_count(), 3);
        assert_eq!(a.bit_levels, None);
        assert!(a.has_row());
    }

    #[test]
    fn the_2025_bit_levels_follow_the_lists() {
        let body = [0xFE, 0, 0, 0, 0, 0, 0, 0, 0, 2, 3, 1, 9, 2];
        let (next, a) = parse_alarm(&body, 0, body.len(), true).unwrap();
        assert_eq!(next, body.len());
        assert_eq!(a.max_level, None);
        assert_eq!(a.bit_levels, Some(vec![3, 1, 9, 2]));
        assert!(!a.has_row());
        let sentinel = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF];
        let (_, a) = parse_alarm(&sentinel, 0, sentinel.len(), true).unwrap();
        assert_eq!(a.bit_levels, Some(vec![]));
    }

    #[test]
    fn every_alarm_reject_names_its_offset() {
        let e = parse_alarm(&[0; 10], 3, 7, false).unwrap_err();
        assert_eq!((e.reason, e.offset), (TRUNCATED, 3));
        assert_eq!(e.detail, "alarm block needs 5 bytes for level and flags");
        let e = parse_alarm(&[0; 10], 0, 7, false).unwrap_err();
        assert_eq!((e.reason, e.offset), (TRUNCATED, 7));
        assert_eq!(e.detail, "alarm block ends before a fault count");
        let e = parse_alarm(&[0, 0, 0, 0, 0, 2, 0, 0, 0, 0], 0, 10, false).unwrap_err();
        assert_eq!((e.reason, e.offset), (BAD_FIELD, 6));
        assert_eq!(e.detail, "2 fault codes overrun the data unit");
        let e = parse_alarm(&[0; 9], 0, 9, true).unwrap_err();
        assert_eq!((e.reason, e.offset), (TRUNCATED, 9));
        assert_eq!(e.detail, "alarm block ends before the bit-level count");
        let e = parse_alarm(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 1, 1], 0, 12, true).unwrap_err();
        assert_eq!((e.reason, e.offset), (BAD_FIELD, 10));
        assert_eq!(e.detail, "2 bit levels overrun the data unit");
    }

    fn volt(pack: u8, cells: std::ops::Range<usize>) -> VoltEntry {
        VoltEntry {
            pack,
            voltage_v: Some(400.0),
            current_a: None,
            cell_count: Some(2),
            first_cell: 1,
            cells,
        }
    }

    #[test]
    fn packs_join_the_first_unused_temperatures_then_temperature_only_packs() {
        // cells of pack 1 at 0..4 (3300, 3310 mV), pack 2 at 4..8 (one sentinel);
        // probes at 8..10 (pack 2), 10..12 (pack 1), 12..13 (pack 1 again), 13..14 (pack 3).
        let buf = [
            0x0C, 0xE4, 0x0C, 0xEE, 0x0C, 0xE4, 0xFF, 0xFF, 60, 61, 65, 66, 70, 0xFF,
        ];
        let volts = [volt(1, 0..4), volt(2, 4..8)];
        let temps = [
            TempEntry {
                pack: 2,
                probes: 8..10,
            },
            TempEntry {
                pack: 1,
                probes: 10..12,
            },
            TempEntry {
                pack: 1,
                probes: 12..13,
            },
            TempEntry {
                pack: 3,
                probes: 13..14,
            },
        ];
        let packs = join_packs(&buf, &volts, &temps, None);
        let got: Vec<_> = packs.iter().map(|p| (p.pack, p.probes.clone())).collect();
        assert_eq!(got, vec![(1, 10..12), (2, 8..10), (1, 12..13), (3, 13..14)]);
        assert_eq!(
            (packs[0].cell_min_mv, packs[0].cell_max_mv),
            (Some(3300), Some(3310))
        );
        assert_eq!(
            (packs[1].cell_min_mv, packs[1].cell_max_mv),
            (Some(3300), Some(3300))
        );
        assert_eq!(
            (packs[0].probe_min_c, packs[0].probe_max_c),
            (Some(25), Some(26))
        );
        // Temperature-only packs: no voltage fields, first cell 1, no cells.
        let t = &packs[2];
        assert_eq!(
            (t.voltage_v, t.cell_count, t.first_cell, t.cells.clone()),
            (None, None, 1, 0..0)
        );
        assert_eq!((t.probe_min_c, t.probe_max_c), (Some(30), Some(30)));
        // All probes sentinels: no extremes.
        assert_eq!((packs[3].probe_min_c, packs[3].probe_max_c), (None, None));
    }

    #[test]
    fn past_64_temperature_entries_the_chained_join_pairs_as_the_scan_does() {
        // Pack numbers repeat and interleave; some volts find no entry left, some entries
        // no volt. The expected pairs come from the plain scan, as written out here.
        let buf = [0u8; 256];
        let volts: Vec<_> = (0..150u8).map(|k| volt(k % 9, 0..0)).collect();
        let temps: Vec<_> = (0..200usize)
            .map(|k| TempEntry {
                pack: (k % 7) as u8,
                probes: k..k, // empty, and telling the entries apart
            })
            .collect();
        let mut used = vec![false; temps.len()];
        let mut want = Vec::new();
        for v in &volts {
            let k = (0..temps.len()).find(|&k| temps[k].pack == v.pack && !used[k]);
            if let Some(k) = k {
                used[k] = true;
            }
            want.push((v.pack, k.map(|k| temps[k].probes.clone()).unwrap_or(0..0)));
        }
        for (k, t) in temps.iter().enumerate() {
            if !used[k] {
                want.push((t.pack, t.probes.clone()));
            }
        }
        let packs = join_packs(&buf, &volts, &temps, None);
        let got: Vec<_> = packs.iter().map(|p| (p.pack, p.probes.clone())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_pack_without_cells_or_probes_has_no_extremes() {
        let packs = join_packs(&[0; 4], &[volt(1, 2..2)], &[], None);
        assert_eq!(packs.len(), 1);
        let p = &packs[0];
        assert_eq!(
            (p.cell_min_mv, p.cell_max_mv, p.probe_min_c),
            (None, None, None)
        );
        assert_eq!(p.probes, 0..0);
    }
}
