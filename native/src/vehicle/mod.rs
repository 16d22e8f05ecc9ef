//! Real-time (0x02) and reissue (0x03) vehicle frames, both editions: bytes -> `FrameRows`.
//!
//! `decode` mirrors `ingest/decoders/fast.py` as it stood before this crate replaced it:
//! plain-data check, VIN, frame time, the edition's block walk (`walk2016` / `walk2025`), the
//! signature search and miscount check of a walk that stopped early (`signature`, `counts`),
//! the pack join (`common`) and, in 2025, the derived extremes (`extremes`).

pub mod common;
pub mod counts;
pub mod encode;
pub mod extremes;
pub mod json;
pub mod rows;
pub mod signature;
pub mod walk2016;
pub mod walk2025;

use std::ops::Range;

use crate::error::FrameError;
pub use rows::{Alarm, Extremes, FrameRows, Motor, Pack, Position, Vehicle};

/// What `decode` makes of one frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A real-time / reissue command packet with a plain data unit, decoded.
    Rows(Box<FrameRows>),
    /// Not such a frame (another command, a response, an encrypted unit, or an envelope error):
    /// the Python structured decoder handles it and names the exact error.
    Structured,
    /// Rejected: the reason, offset and detail the Python decoder gives.
    Error(FrameError),
}

/// A voltage entry of the cell-voltage block: one pack (2016: one page of a pack).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VoltEntry {
    pub pack: u8,
    pub voltage_v: Option<f64>,
    pub current_a: Option<f64>,
    pub cell_count: Option<u16>,
    pub first_cell: u16,
    /// Frame byte range of the cells (big-endian u16 each).
    pub cells: Range<usize>,
}

/// A temperature entry: one pack's probes (u8 each, raw degC + 40).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TempEntry {
    pub pack: u8,
    pub probes: Range<usize>,
}

/// Raw values of a 2016 extremes block, used to check rather than search the packs' extremes:
/// (max-voltage pack, max mV, min-voltage pack, min mV, max-temp pack, max raw, min-temp pack,
/// min raw). Never trusted: `extremes::cell_extremes` / `probe_extremes` verify them.
pub type Hints = [i32; 8];
pub const NO_HINTS: Hints = [-1; 8];

/// What a block walk found (the Python `Walk` tuple).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Walk {
    pub vehicle: Option<Vehicle>,
    pub position: Option<Position>,
    pub extremes: Option<Extremes>,
    pub alarm: Option<Alarm>,
    pub motors: Vec<Motor>,
    pub volts: Vec<VoltEntry>,
    pub temps: Vec<TempEntry>,
    /// Frame offset of the first block the walk could not size (a partial frame).
    pub tail: Option<usize>,
    pub hints: Option<Hints>,
    /// Type-byte offsets of the motor and pack blocks, for `counts::find_miscount`.
    pub counted: Vec<usize>,
    /// 2025: the walk ended at a signature that ends the data unit (always false in 2016).
    pub signed: bool,
}

/// Decode one whole frame (start marker through BCC).
pub fn decode(buf: &[u8]) -> Outcome {
    let _ = buf;
    todo!("issue 12: port ingest/decoders/fast.py decode_rows/_data")
}
