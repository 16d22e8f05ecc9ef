//! Per-pack cell / probe min-max and the 2025 derived frame extremes: port of
//! `ingest/decoders/fast_extremes.py` (owner: n2-v2025). The Python hints only made the search
//! cheaper in the interpreter; the result is the min/max over the non-sentinel values.

use super::{Extremes, Pack};

/// (min, max) mV over the non-sentinel cells of `cells` (big-endian u16 each); None if none.
pub fn cell_min_max(cells: &[u8]) -> Option<(u16, u16)> {
    let _ = cells;
    todo!("issue 12: port fast_extremes.cell_extremes")
}

/// (min, max) degC over the non-sentinel probes of `probes` (raw u8, degC + 40); None if none.
pub fn probe_min_max(probes: &[u8]) -> Option<(i16, i16)> {
    let _ = probes;
    todo!("issue 12: port fast_extremes.probe_extremes")
}

/// The frame extremes a 2025 frame does not send, derived from its packs (`buf` is the frame
/// the packs' byte ranges point into); None when the packs give none.
pub fn derive_extremes(packs: &[Pack], buf: &[u8]) -> Option<Extremes> {
    let _ = (packs, buf);
    todo!("issue 12: port fast_extremes.derive_extremes")
}
