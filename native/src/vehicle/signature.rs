//! The 2025 signature block at the end of a data unit: port of
//! `ingest.decoders.signature.find_signature` (owner: n2-v2025).

/// The frame offset where a signature that ends the data unit starts, searching from `tail`
/// (the first byte the walk could not place); None when there is none.
pub fn find_signature(buf: &[u8], tail: usize, end: usize) -> Option<usize> {
    let _ = (buf, tail, end);
    todo!("issue 12: port signature.find_signature")
}
