//! Reject reasons: the same names as `ingest.decoders.errors` (the dead-letter topic's
//! `error_reason` header and the metrics label), and the error the decoders return.

use std::fmt;

pub const BAD_START: &str = "bad_start";
pub const TRUNCATED: &str = "truncated";
pub const LENGTH_MISMATCH: &str = "length_mismatch";
pub const BAD_CHECKSUM: &str = "bad_checksum";
pub const UNKNOWN_COMMAND: &str = "unknown_command";
pub const BAD_FIELD: &str = "bad_field";
pub const BAD_IDENTITY: &str = "bad_identity";
pub const COUNT_MISMATCH: &str = "count_mismatch";
/// An input limit (`ingest.config.limits`): here `blocks_per_frame`.
pub const OVER_LIMIT: &str = "over_limit";

/// Every reason a frame decoder here may give (`ingest.decoders.errors.FRAME_REASONS`).
pub const FRAME_REASONS: [&str; 9] = [
    BAD_START,
    TRUNCATED,
    LENGTH_MISMATCH,
    BAD_CHECKSUM,
    UNKNOWN_COMMAND,
    BAD_FIELD,
    BAD_IDENTITY,
    COUNT_MISMATCH,
    OVER_LIMIT,
];

/// The input limit `blocks_per_frame` (`ingest.config.limits.BLOCKS_PER_FRAME`,
/// `ingest.decoders.realtime.BLOCKS_PER_FRAME`; docs/security.md, "Input limits"): the most
/// information blocks one data unit may hold. Real frames carry under 20; without it, a 64 KiB data
/// unit of tiny blocks (a 5-byte engine block, a 3-byte empty custom block) would be thousands
/// of blocks walked, each a row or an entry to keep. The walks stop at the first block over it.
pub const BLOCKS_PER_FRAME: usize = 64;

/// The charger profile's own block limit `charger_blocks_per_frame`
/// (`ingest.config.limits.CHARGER_BLOCKS_PER_FRAME`, `ingest.decoders.charger.frame`): one block
/// per connector per block type (255 connectors, 5 types) and the pile's fault block. A charger
/// block is at least 28 bytes, so the tiny-block walk `BLOCKS_PER_FRAME` bounds cannot happen
/// here, and a pile of more than 21 connectors legitimately sends more than 64 blocks. Walked
/// natively up to it, such a frame costs ~0.2 ms, not the structured decoder's ~5 ms.
pub const CHARGER_BLOCKS_PER_FRAME: usize = 255 * 5 + 1;

/// The `over_limit` reject of a data unit whose block at `at` is one more than
/// `BLOCKS_PER_FRAME` (the same text as the Python walks').
pub fn too_many_blocks(at: usize) -> FrameError {
    FrameError::new(
        OVER_LIMIT,
        at,
        format!(
            "more than {BLOCKS_PER_FRAME} information blocks is over the limit \
             blocks_per_frame ({BLOCKS_PER_FRAME}): real frames carry under 20 \
             (docs/security.md, Input limits)"
        ),
    )
}

/// Why a frame was rejected: a reason of `ingest.decoders.errors`, the frame offset where the
/// problem was found, and a sentence for people. Python raises it as `FrameError`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    pub reason: &'static str,
    pub offset: usize,
    pub detail: String,
}

impl FrameError {
    pub fn new(reason: &'static str, offset: usize, detail: impl Into<String>) -> Self {
        Self {
            reason,
            offset,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at offset {}: {}",
            self.reason, self.offset, self.detail
        )
    }
}

impl std::error::Error for FrameError {}

pub type Result<T> = std::result::Result<T, FrameError>;
