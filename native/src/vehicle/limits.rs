//! The row limits of a decoded frame (`ingest.config.limits`), counted before its row objects
//! are built: a frame over one is rejected for the price of its walk, not of the hundreds of
//! objects it would make and the pipeline would drop (a 254-motor frame cost about a dozen good
//! frames of drain time).
//! The counts are those `ingest.pipeline.limits.limit_rows` takes of the built rows, in its
//! order, so both reject the same frames with the same limit.

use std::ops::Range;

use super::FrameRows;

/// The largest counts a frame may have; the names are the limits' (`ingest.config.limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowLimits {
    pub motors: usize,
    pub pack_rows: usize,
    pub cells: usize,
    pub probes: usize,
}

/// The first limit `rows` cross, with its count, or None.
pub fn over_limit(
    rows: &FrameRows,
    buf: &[u8],
    limits: &RowLimits,
) -> Option<(&'static str, usize)> {
    if rows.motors.len() > limits.motors {
        return Some(("motors_per_frame", rows.motors.len()));
    }
    if rows.packs.len() > limits.pack_rows {
        return Some(("pack_rows_per_frame", rows.packs.len()));
    }
    // The row's cell_voltages_raw / probe_temps_raw are these slices of the frame (empty when
    // out of range), two bytes per cell and one per probe.
    let span = |r: &Range<usize>| buf.get(r.clone()).map_or(0, <[u8]>::len);
    let cells = rows.packs.iter().map(|p| span(&p.cells)).sum::<usize>() / 2;
    if cells > limits.cells {
        return Some(("cells_per_frame", cells));
    }
    let probes = rows.packs.iter().map(|p| span(&p.probes)).sum::<usize>();
    if probes > limits.probes {
        return Some(("probes_per_frame", probes));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vehicle::{Motor, Pack};

    const LIMITS: RowLimits = RowLimits {
        motors: 2,
        pack_rows: 2,
        cells: 3,
        probes: 4,
    };

    fn pack(cells: Range<usize>, probes: Range<usize>) -> Pack {
        Pack {
            cells,
            probes,
            ..Pack::default()
        }
    }

    #[test]
    fn each_limit_in_the_python_order() {
        let buf = [0u8; 64];
        let mut rows = FrameRows::default();
        assert_eq!(over_limit(&rows, &buf, &LIMITS), None);
        rows.packs = vec![pack(0..4, 0..2), pack(4..6, 2..4)]; // 3 cells, 4 probes: at the limits
        assert_eq!(over_limit(&rows, &buf, &LIMITS), None);
        rows.packs[1].probes = 2..5;
        assert_eq!(
            over_limit(&rows, &buf, &LIMITS),
            Some(("probes_per_frame", 5))
        );
        rows.packs[1].cells = 4..8;
        assert_eq!(
            over_limit(&rows, &buf, &LIMITS),
            Some(("cells_per_frame", 4))
        );
        rows.packs.push(pack(0..0, 0..0));
        assert_eq!(
            over_limit(&rows, &buf, &LIMITS),
            Some(("pack_rows_per_frame", 3))
        );
        rows.motors = vec![Motor::default(); 3];
        assert_eq!(
            over_limit(&rows, &buf, &LIMITS),
            Some(("motors_per_frame", 3))
        );
    }

    #[test]
    fn a_range_outside_the_frame_counts_nothing() {
        let rows = FrameRows {
            packs: vec![pack(60..80, 70..90)],
            ..FrameRows::default()
        };
        assert_eq!(over_limit(&rows, &[0u8; 64], &LIMITS), None);
    }
}
