//! Per-pack cell / probe min-max and the 2025 derived frame extremes: port of
//! the retired Python fast path's `fast_extremes.py`. The Python hints only made the search
//! cheaper in the interpreter (they are verified, so they never change the answer); the result
//! is the min/max over the non-sentinel values.
//!
//! Sentinels, as the Python fast path defines them: a cell of 0xFFFE / 0xFFFF and a probe byte
//! of 0xFE / 0xFF. Everything else counts, including cells above the int2 range (0x8000..0xFFFD,
//! e.g. a 0xFF00 cell) and probes below 0 degC (raw < 40).

use super::{Extremes, Pack};

const CELL_VALID_BELOW: u16 = 0xFFFE;
const PROBE_VALID_BELOW: u8 = 0xFE;
/// Probe bytes are degC + 40 (Table 14).
const PROBE_OFFSET: i16 = 40;

/// Cells per block of the min/max loops: 8 u16 lanes, one SSE2 register.
const LANES: usize = 8;

/// The cell at `at` of a block (big-endian).
#[inline(always)]
fn cell(block: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([block[2 * at], block[2 * at + 1]])
}

/// (min, max) mV over the non-sentinel cells of `cells` (big-endian u16 each); None if none.
/// A trailing odd byte is not a cell (the walks only make even ranges).
///
/// It runs over every cell of every pack, so it is written to vectorise: blocks of `LANES`
/// cells into per-lane accumulators, no branches. The sentinels are the two largest values, so
/// they never lower the min and count as 0 for the max; a min that is a sentinel means no cell
/// was valid.
pub fn cell_min_max(cells: &[u8]) -> Option<(u16, u16)> {
    let mut lo = [u16::MAX; LANES];
    let mut hi = [0u16; LANES];
    let mut blocks = cells.chunks_exact(2 * LANES);
    for block in &mut blocks {
        for i in 0..LANES {
            let v = cell(block, i);
            lo[i] = lo[i].min(v);
            hi[i] = hi[i].max(if v < CELL_VALID_BELOW { v } else { 0 });
        }
    }
    let rest = blocks.remainder();
    for i in 0..rest.len() / 2 {
        let v = cell(rest, i);
        lo[0] = lo[0].min(v);
        hi[0] = hi[0].max(if v < CELL_VALID_BELOW { v } else { 0 });
    }
    let lo = lo.into_iter().fold(u16::MAX, u16::min);
    let hi = hi.into_iter().fold(0, u16::max);
    (lo < CELL_VALID_BELOW).then_some((lo, hi))
}

/// (min, max) degC over the non-sentinel probes of `probes` (raw u8, degC + 40); None if none.
/// Written to vectorise as `cell_min_max` (0xFE / 0xFF are the largest bytes).
pub fn probe_min_max(probes: &[u8]) -> Option<(i16, i16)> {
    let mut lo = [u8::MAX; 2 * LANES];
    let mut hi = [0u8; 2 * LANES];
    let mut blocks = probes.chunks_exact(2 * LANES);
    for block in &mut blocks {
        for i in 0..2 * LANES {
            let v = block[i];
            lo[i] = lo[i].min(v);
            hi[i] = hi[i].max(if v < PROBE_VALID_BELOW { v } else { 0 });
        }
    }
    for &v in blocks.remainder() {
        lo[0] = lo[0].min(v);
        hi[0] = hi[0].max(if v < PROBE_VALID_BELOW { v } else { 0 });
    }
    let lo = lo.into_iter().fold(u8::MAX, u8::min);
    let hi = hi.into_iter().fold(0, u8::max);
    (lo < PROBE_VALID_BELOW).then(|| (i16::from(lo) - PROBE_OFFSET, i16::from(hi) - PROBE_OFFSET))
}

/// 0-based index of the first cell (2-byte aligned) equal to `mv`; a pack's min/max came from
/// its own cells, so it is there (0 otherwise, which no caller reaches).
fn cell_index(cells: &[u8], mv: u16) -> usize {
    let want = mv.to_be_bytes();
    cells.chunks_exact(2).position(|c| c == want).unwrap_or(0)
}

/// 1-based number of the first probe whose raw byte is `temp_c` + 40 (see `cell_index`).
fn probe_number(probes: &[u8], temp_c: i16) -> u16 {
    let raw = u8::try_from(temp_c + PROBE_OFFSET).unwrap_or(0);
    let at = probes.iter().position(|&b| b == raw).unwrap_or(0);
    // A probe list holds at most 0xFFFD bytes (a count of 0xFFFE+ is a sentinel): fits.
    u16::try_from(at + 1).unwrap_or(u16::MAX)
}

/// A cell number: the pack's first cell + the 0-based index (1 + at most 0xFFFC in 2025).
fn cell_number(pack: &Pack, cells: &[u8], mv: u16) -> u16 {
    let at = u16::try_from(cell_index(cells, mv)).unwrap_or(u16::MAX);
    pack.first_cell.saturating_add(at)
}

/// The bytes of `range` in `buf`; empty when the range is not inside it (never for a walk's).
fn bytes_of<'a>(buf: &'a [u8], range: &std::ops::Range<usize>) -> &'a [u8] {
    buf.get(range.clone()).unwrap_or(&[])
}

/// The frame extremes a 2025 frame does not send, derived from its packs (`buf` is the frame
/// the packs' byte ranges point into); None when the packs give none.
///
/// As the Python fast path's `derive_extremes` did: the highest and lowest non-sentinel cell and probe over
/// all packs (each pack's own `cell_min_mv` .. `probe_max_c`), the first pack on ties (a later
/// pack must be strictly beyond), the first cell / probe of that value within the pack. Volts
/// are mV / 1000 (divided, as Python does), temperatures degC. The voltage half and the
/// temperature half are None on their own when no pack has a valid cell / probe.
pub fn derive_extremes(packs: &[Pack], buf: &[u8]) -> Option<Extremes> {
    let mut vmax: Option<(&Pack, u16)> = None;
    let mut vmin: Option<(&Pack, u16)> = None;
    let mut tmax: Option<(&Pack, i16)> = None;
    let mut tmin: Option<(&Pack, i16)> = None;
    for pack in packs {
        if let (Some(hi), Some(lo)) = (pack.cell_max_mv, pack.cell_min_mv) {
            if vmax.is_none_or(|(_, top)| hi > top) {
                vmax = Some((pack, hi));
            }
            if vmin.is_none_or(|(_, bottom)| lo < bottom) {
                vmin = Some((pack, lo));
            }
        }
        if let (Some(hi), Some(lo)) = (pack.probe_max_c, pack.probe_min_c) {
            if tmax.is_none_or(|(_, top)| hi > top) {
                tmax = Some((pack, hi));
            }
            if tmin.is_none_or(|(_, bottom)| lo < bottom) {
                tmin = Some((pack, lo));
            }
        }
    }
    if vmax.is_none() && tmax.is_none() {
        return None;
    }
    let mut out = Extremes::default();
    if let (Some((hp, hi)), Some((lp, lo))) = (vmax, vmin) {
        out.max_cell_voltage_v = Some(f64::from(hi) / 1000.0);
        out.max_cell_voltage_pack = Some(hp.pack);
        out.max_cell_voltage_cell = Some(cell_number(hp, bytes_of(buf, &hp.cells), hi));
        out.min_cell_voltage_v = Some(f64::from(lo) / 1000.0);
        out.min_cell_voltage_pack = Some(lp.pack);
        out.min_cell_voltage_cell = Some(cell_number(lp, bytes_of(buf, &lp.cells), lo));
    }
    if let (Some((hp, hi)), Some((lp, lo))) = (tmax, tmin) {
        out.max_temp_c = Some(hi);
        out.max_temp_pack = Some(hp.pack);
        out.max_temp_probe = Some(probe_number(bytes_of(buf, &hp.probes), hi));
        out.min_temp_c = Some(lo);
        out.min_temp_pack = Some(lp.pack);
        out.min_temp_probe = Some(probe_number(bytes_of(buf, &lp.probes), lo));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(values: &[u16]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_be_bytes()).collect()
    }

    #[test]
    fn cell_min_max_skips_only_the_two_sentinels() {
        assert_eq!(
            cell_min_max(&cells(&[3300, 3310, 3295])),
            Some((3295, 3310))
        );
        // 0xFFFE / 0xFFFF are "abnormal" / "invalid"; 0xFFFD and values above int2 count.
        assert_eq!(
            cell_min_max(&cells(&[0xFFFF, 3300, 0xFFFE])),
            Some((3300, 3300))
        );
        assert_eq!(
            cell_min_max(&cells(&[0xFFFD, 0x8000, 12])),
            Some((12, 0xFFFD))
        );
        assert_eq!(
            cell_min_max(&cells(&[0xFF00, 0xFF01])),
            Some((0xFF00, 0xFF01))
        );
        assert_eq!(cell_min_max(&cells(&[0xFFFE, 0xFFFF])), None);
        assert_eq!(cell_min_max(&[]), None);
        // Packs straddling a 256 mV boundary (high bytes differ).
        assert_eq!(
            cell_min_max(&cells(&[0x0D00, 0x0CFF, 0x0D01])),
            Some((0x0CFF, 0x0D01))
        );
    }

    #[test]
    fn probe_min_max_skips_fe_ff_and_subtracts_40() {
        assert_eq!(probe_min_max(&[65, 66, 64]), Some((24, 26)));
        assert_eq!(probe_min_max(&[0, 0xFD, 0xFE, 0xFF]), Some((-40, 213)));
        assert_eq!(probe_min_max(&[0xFE, 0xFF]), None);
        assert_eq!(probe_min_max(&[]), None);
    }

    /// The blocked loops against the obvious filter + min/max, on every length around the
    /// block size and values near the sentinels (a small LCG: no dependency, reproducible).
    #[test]
    fn blocked_min_max_matches_the_plain_definition() {
        let mut seed = 32960u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            seed >> 8
        };
        for len in 0..80usize {
            for _ in 0..20 {
                let pick = [0u16, 1, 3300, 0x7FFF, 0x8000, 0xFFFD, 0xFFFE, 0xFFFF];
                let values: Vec<u16> = (0..len)
                    .map(|_| match next() % 3 {
                        0 => pick[(next() % 8) as usize],
                        _ => (next() & 0xFFFF) as u16,
                    })
                    .collect();
                let valid: Vec<u16> = values.iter().copied().filter(|&v| v < 0xFFFE).collect();
                let want = valid
                    .iter()
                    .min()
                    .zip(valid.iter().max())
                    .map(|(a, b)| (*a, *b));
                assert_eq!(cell_min_max(&cells(&values)), want, "{values:?}");
                let bytes: Vec<u8> = values.iter().map(|&v| (v >> 8) as u8).collect();
                let valid: Vec<i16> = bytes
                    .iter()
                    .filter(|&&b| b < 0xFE)
                    .map(|&b| i16::from(b) - 40)
                    .collect();
                let want = valid
                    .iter()
                    .min()
                    .zip(valid.iter().max())
                    .map(|(a, b)| (*a, *b));
                assert_eq!(probe_min_max(&bytes), want, "{bytes:?}");
            }
        }
        // An odd trailing byte is no cell.
        assert_eq!(cell_min_max(&[0x0C, 0xE4, 0x00]), Some((3300, 3300)));
    }

    /// A frame with each pack's cells then probes, and the packs pointing into it.
    fn frame(specs: &[(u8, &[u16], &[u8])]) -> (Vec<u8>, Vec<Pack>) {
        let mut buf = vec![0xAA; 3]; // ranges start inside the frame, not at 0
        let mut packs = Vec::new();
        for &(number, volts, probes) in specs {
            let c0 = buf.len();
            buf.extend(cells(volts));
            let p0 = buf.len();
            buf.extend_from_slice(probes);
            let c = cell_min_max(&buf[c0..p0]);
            let p = probe_min_max(probes);
            packs.push(Pack {
                pack: number,
                first_cell: 1,
                cells: c0..p0,
                probes: p0..buf.len(),
                cell_min_mv: c.map(|m| m.0),
                cell_max_mv: c.map(|m| m.1),
                probe_min_c: p.map(|m| m.0),
                probe_max_c: p.map(|m| m.1),
                ..Pack::default()
            });
        }
        (buf, packs)
    }

    #[test]
    fn one_pack_gives_first_positions_and_scaled_values() {
        let (buf, packs) = frame(&[(1, &[3301, 3305, 3290, 3305, 3290], &[60, 70, 50, 70])]);
        let e = derive_extremes(&packs, &buf).expect("extremes");
        assert_eq!(e.max_cell_voltage_v, Some(3305.0 / 1000.0));
        assert_eq!(e.max_cell_voltage_v, Some(3.305));
        assert_eq!(
            (e.max_cell_voltage_pack, e.max_cell_voltage_cell),
            (Some(1), Some(2))
        );
        assert_eq!(e.min_cell_voltage_v, Some(3.29));
        assert_eq!(
            (e.min_cell_voltage_pack, e.min_cell_voltage_cell),
            (Some(1), Some(3))
        );
        assert_eq!(
            (e.max_temp_c, e.max_temp_pack, e.max_temp_probe),
            (Some(30), Some(1), Some(2))
        );
        assert_eq!(
            (e.min_temp_c, e.min_temp_pack, e.min_temp_probe),
            (Some(10), Some(1), Some(3))
        );
    }

    #[test]
    fn a_match_straddling_two_cells_is_not_a_cell() {
        // Cells 0x0C0D, 0x0D0C: the bytes "0D 0C" also sit at offset 1, across two cells.
        let (buf, packs) = frame(&[(1, &[0x0C0D, 0x0D0C, 0x0D0C], &[])]);
        let e = derive_extremes(&packs, &buf).expect("extremes");
        assert_eq!(e.max_cell_voltage_cell, Some(2));
        assert_eq!(e.min_cell_voltage_cell, Some(1));
    }

    #[test]
    fn ties_between_packs_go_to_the_first_pack() {
        let (buf, packs) = frame(&[
            (3, &[3300, 3310], &[60, 65]),
            (1, &[3310, 3300], &[65, 60]),
            (2, &[3305, 3320, 3280], &[65, 59]),
            (4, &[3320, 3280], &[59, 65]),
        ]);
        let e = derive_extremes(&packs, &buf).expect("extremes");
        assert_eq!(
            (e.max_cell_voltage_pack, e.max_cell_voltage_cell),
            (Some(2), Some(2))
        );
        assert_eq!(
            (e.min_cell_voltage_pack, e.min_cell_voltage_cell),
            (Some(2), Some(3))
        );
        assert_eq!(
            (e.max_temp_c, e.max_temp_pack, e.max_temp_probe),
            (Some(25), Some(3), Some(2))
        );
        assert_eq!(
            (e.min_temp_c, e.min_temp_pack, e.min_temp_probe),
            (Some(19), Some(2), Some(2))
        );
    }

    #[test]
    fn each_half_is_none_without_valid_values() {
        let (buf, packs) = frame(&[(1, &[0xFFFF], &[50]), (2, &[], &[0xFE])]);
        let e = derive_extremes(&packs, &buf).expect("probes only");
        assert_eq!(e.max_cell_voltage_v, None);
        assert_eq!(e.min_cell_voltage_cell, None);
        assert_eq!(
            (e.max_temp_c, e.max_temp_pack, e.max_temp_probe),
            (Some(10), Some(1), Some(1))
        );

        let (buf, packs) = frame(&[(5, &[3000, 0xFFFE, 2999], &[0xFF])]);
        let e = derive_extremes(&packs, &buf).expect("cells only");
        assert_eq!(
            (e.max_cell_voltage_v, e.max_cell_voltage_cell),
            (Some(3.0), Some(1))
        );
        assert_eq!(
            (e.min_cell_voltage_v, e.min_cell_voltage_cell),
            (Some(2.999), Some(3))
        );
        assert_eq!((e.max_temp_c, e.min_temp_probe), (None, None));

        let (buf, packs) = frame(&[(1, &[0xFFFF], &[0xFF]), (2, &[], &[])]);
        assert_eq!(derive_extremes(&packs, &buf), None);
        assert_eq!(derive_extremes(&[], &buf), None);
    }

    #[test]
    fn the_first_cell_offsets_the_cell_number() {
        let (buf, mut packs) = frame(&[(1, &[10, 20, 5], &[])]);
        packs[0].first_cell = 101;
        let e = derive_extremes(&packs, &buf).expect("extremes");
        assert_eq!(
            (e.max_cell_voltage_cell, e.min_cell_voltage_cell),
            (Some(102), Some(103))
        );
    }

    #[test]
    fn ranges_outside_the_frame_do_not_panic() {
        let packs = [Pack {
            cells: 10..40,
            probes: 50..60,
            cell_min_mv: Some(1),
            cell_max_mv: Some(2),
            probe_min_c: Some(0),
            probe_max_c: Some(1),
            ..Pack::default()
        }];
        let e = derive_extremes(&packs, &[0; 4]).expect("extremes");
        assert_eq!(e.max_cell_voltage_cell, Some(0)); // first_cell 0 + index 0: no such cell
    }
}
