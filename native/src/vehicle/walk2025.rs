//! The 2025 (`$$`) block walk: port of `ingest/decoders/fast_2025.py` (owner: n2-v2025).

use super::Walk;
use crate::error::Result;

/// Walk the information blocks in `buf[pos..end]` (after the frame time).
pub fn walk_2025(buf: &[u8], pos: usize, end: usize) -> Result<Walk> {
    let _ = (buf, pos, end);
    todo!("issue 12: port fast_2025.walk_2025")
}
