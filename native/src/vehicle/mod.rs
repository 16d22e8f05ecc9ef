//! Real-time (0x02) and reissue (0x03) vehicle frames, both editions: bytes -> `FrameRows`.
//!
//! `decode` mirrors `ingest/decoders/fast.py` as it stood before this crate replaced it:
//! plain-data check, VIN, frame time, the edition's block walk (`walk2016` / `walk2025`), the
//! signature search and miscount check of a walk that stopped early (`signature`, `counts`),
//! the pack join (`common`) and, in 2025, the derived extremes (`extremes`).

pub mod common;
pub mod counts;
#[cfg(test)]
mod decode_tests;
pub mod encode;
pub mod extremes;
pub mod json;
pub mod limits;
pub mod rows;
pub mod signature;
pub mod walk2016;
pub mod walk2025;

use std::ops::Range;

use crate::envelope::{
    plain_data, Plain, EDITION_2016, EDITION_2025, HEADER_SIZE, ID_OFFSET, ID_SIZE,
};
use crate::error::{FrameError, Result, TRUNCATED};
use crate::identity::check_vin;
use crate::time;
use common::join_packs;
use counts::find_miscount;
use extremes::derive_extremes;
pub use rows::{Alarm, Extremes, FrameRows, Motor, Pack, Position, Vehicle};
use signature::find_signature;
use walk2016::walk_2016;
use walk2025::walk_2025;

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
    /// 2025: the frame offset of that signature's 0xFF marker (`sig::locate` verifies it).
    pub signature_at: Option<usize>,
}

/// Decode one whole frame (start marker through BCC): port of `fast.decode_rows` / `_data` /
/// `_check_counts` for the frames `envelope::plain_data` accepts.
pub fn decode(buf: &[u8]) -> Outcome {
    let Some(plain) = plain_data(buf) else {
        return Outcome::Structured;
    };
    match data(buf, plain) {
        Ok(rows) => Outcome::Rows(Box::new(rows)),
        Err(e) => Outcome::Error(e),
    }
}

fn walk(buf: &[u8], pos: usize, end: usize, edition: u16) -> Result<Walk> {
    if edition == EDITION_2016 {
        walk_2016(buf, pos, end)
    } else {
        walk_2025(buf, pos, end)
    }
}

/// Real-time / reissue data unit `buf[HEADER_SIZE..end]` -> rows.
fn data(buf: &[u8], plain: Plain) -> Result<FrameRows> {
    let Plain {
        edition,
        command,
        end,
    } = plain;
    let mut id = [0u8; ID_SIZE];
    id.copy_from_slice(&buf[ID_OFFSET..ID_OFFSET + ID_SIZE]);
    check_vin(&id)?;
    if end < HEADER_SIZE + 6 {
        return Err(FrameError::new(
            TRUNCATED,
            HEADER_SIZE,
            "real-time data needs a 6-byte time",
        ));
    }
    let mut raw = [0u8; 6];
    raw.copy_from_slice(&buf[HEADER_SIZE..HEADER_SIZE + 6]);
    let time = time::parse(raw, HEADER_SIZE)?;
    let mut w = walk(buf, HEADER_SIZE + 6, end, edition)?;
    let mut tail = w.tail;
    if let Some(at) = tail {
        if edition == EDITION_2025 {
            let sig = find_signature(buf, at, end);
            w.signed = sig.is_some();
            if sig == Some(at) {
                tail = None; // the walk stopped right at the signature (found backwards)
            }
        }
        if tail.is_some() && !w.counted.is_empty() {
            check_counts(buf, &w.counted, end, edition)?;
        }
    }
    let packs = if w.volts.is_empty() && w.temps.is_empty() {
        Vec::new()
    } else {
        join_packs(buf, &w.volts, &w.temps, w.hints.as_ref())
    };
    let mut extremes = w.extremes;
    let mut extremes_derived = false;
    if extremes.is_none() && !packs.is_empty() && edition != EDITION_2016 {
        extremes = derive_extremes(&packs, buf);
        extremes_derived = extremes.is_some();
    }
    Ok(FrameRows {
        edition,
        command,
        time,
        vehicle: w.vehicle,
        position: w.position,
        extremes,
        extremes_derived,
        alarm: w.alarm,
        motors: w.motors,
        packs,
        tail_offset: tail,
        signature_missing: edition == EDITION_2025 && !w.signed,
    })
}

/// The frame offset of the 0xFF marker of the signature that ends a 2025 real-time / reissue
/// data unit `buf[HEADER_SIZE..end]`, found as `decode` finds it (walk, then the backward
/// search from where the walk stopped); None when the unit carries none. For `sig::locate`.
pub fn signature_marker(buf: &[u8], end: usize) -> Option<usize> {
    let w = walk(buf, HEADER_SIZE + 6, end, EDITION_2025).ok()?;
    match w.tail {
        Some(tail) => find_signature(buf, tail, end),
        None => w.signature_at,
    }
}

/// `count_mismatch` when a smaller motor / pack count explains a stopped walk.
fn check_counts(buf: &[u8], counted: &[usize], end: usize, edition: u16) -> Result<()> {
    let clean = |at: usize| match walk(buf, at, end, edition) {
        Ok(w) => match w.tail {
            None => true,
            Some(tail) => edition == EDITION_2025 && find_signature(buf, tail, end) == Some(tail),
        },
        // A block they cannot size sets `tail`; the one failure, a recount over
        // `blocks_per_frame`, does not line up there (the Python `clean` says the same).
        Err(_) => false,
    };
    match find_miscount(buf, counted, end, edition, clean) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
