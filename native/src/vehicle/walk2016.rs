//! The 2016 (`##`) block walk: port of `ingest/decoders/fast_2016.py` (owner: n1-v2016).

use super::Walk;
use crate::error::Result;

/// Walk the information blocks in `buf[pos..end]` (after the frame time).
pub fn walk_2016(buf: &[u8], pos: usize, end: usize) -> Result<Walk> {
    let _ = (buf, pos, end);
    todo!("issue 12: port fast_2016.walk_2016")
}
