//! The 2025 (`$$`) block walk of real-time / reissue data units (it replaced the Python fast
//! path's `fast_2025.py` in issue 12, result for result; the structured decoder in
//! `ingest/decoders/blocks/` is the readable reference and the differential tests' oracle).
//!
//! The 2025 layouts (GB/T 32960.3-2025 Tables 10-27, lengths per §3.12): renumbered types
//! (alarm 0x06, cell voltages 0x07 without paging, temperatures 0x08), the 0x30-0x32 types,
//! and the signature (0xFF) that ends the blocks.
//!
//! A block that does not fit (a count or length overrunning the data unit) stops the walk like
//! a type of unknown length: the frame keeps the blocks before it and becomes partial (`tail`
//! = the type byte of that block), exactly as the Python walk and the structured decoder do.
//! Nothing of that block is kept, but its offset stays in `counted` (Python appends it before
//! reading the block), which `counts::find_miscount` needs. The reject each block would give
//! (`block` returns it, with the Python reason, offset and detail) therefore never leaves the
//! walk: Python catches it too. So `walk_2025` fails only over the `blocks_per_frame` limit.

use super::common::{be16, be32, parse_alarm};
use super::{Alarm, Motor, Position, TempEntry, Vehicle, VoltEntry, Walk};
use crate::error::{too_many_blocks, FrameError, Result, BAD_FIELD, BLOCKS_PER_FRAME, TRUNCATED};

/// N1..N4 = 0 and N5 = 0: an alarm block without fault codes or bit levels.
const NO_FAULTS: [u8; 5] = [0; 5];

/// Where the walk goes after a block.
enum Next {
    /// The next block's type byte.
    At(usize),
    /// A block of unknown length (or a signature that does not end the unit): the rest is an
    /// opaque tail from this block on.
    Tail,
    /// The signature that ends the data unit: the blocks are complete and signed.
    Signed,
}

fn short(at: usize, name: &str, need: usize) -> FrameError {
    FrameError::new(TRUNCATED, at, format!("{name} block needs {need} bytes"))
}

/// A raw value unless it is one of the sentinels `>= invalid` (0xFE "abnormal", 0xFF "invalid"
/// and their WORD / DWORD forms).
#[inline(always)]
fn valid<T: PartialOrd>(raw: T, invalid: T) -> Option<T> {
    (raw < invalid).then_some(raw)
}

/// Walk the information blocks in `buf[pos..end]` (after the frame time). Fails only with
/// `over_limit`, at the first block walked over `BLOCKS_PER_FRAME` (neither the signature nor
/// a tail counts), before any row is built.
pub fn walk_2025(buf: &[u8], pos: usize, end: usize) -> Result<Walk> {
    let end = end.min(buf.len()); // callers pass end < len(buf); never index past it
    let mut walk = Walk::default();
    let mut pos = pos;
    let mut blocks = 0usize;
    while pos < end {
        let start = pos;
        let (volts, temps) = (walk.volts.len(), walk.temps.len());
        match block(buf, start, end, &mut walk) {
            Ok(Next::At(next)) => {
                blocks += 1;
                if blocks > BLOCKS_PER_FRAME {
                    return Err(too_many_blocks(start));
                }
                pos = next;
            }
            Ok(Next::Signed) => {
                walk.signed = true;
                walk.signature_at = Some(start);
                return Ok(walk);
            }
            Ok(Next::Tail) => {
                walk.tail = Some(start);
                return Ok(walk);
            }
            Err(_) => {
                // Python collects a block's entries locally and adds them at its end.
                walk.volts.truncate(volts);
                walk.temps.truncate(temps);
                walk.tail = Some(start);
                return Ok(walk);
            }
        }
    }
    Ok(walk)
}

/// One block whose type byte is at `start`.
fn block(buf: &[u8], start: usize, end: usize, walk: &mut Walk) -> Result<Next> {
    let pos = start + 1;
    match buf[start] {
        0x01 => {
            walk.vehicle = Some(vehicle(buf, pos, end)?);
            Ok(Next::At(pos + 18))
        }
        0x07 => {
            walk.counted.push(start);
            cell_voltages(buf, pos, end, &mut walk.volts).map(Next::At)
        }
        0x08 => {
            walk.counted.push(start);
            temperatures(buf, pos, end, &mut walk.temps).map(Next::At)
        }
        0x02 => {
            walk.counted.push(start);
            motors(buf, pos, end, &mut walk.motors).map(Next::At)
        }
        0x05 => {
            walk.position = Some(position(buf, pos, end)?);
            Ok(Next::At(pos + 10))
        }
        0x06 => {
            if pos + 10 <= end && buf[pos + 5..pos + 10] == NO_FAULTS {
                // The usual block: zero fault counts N1..N4 and no bit levels (N5), as Python
                // takes it; `parse_alarm` gives the same alarm at ~10x the cost.
                walk.alarm = Some(Alarm {
                    max_level: valid(buf[pos], 0xFE),
                    general_flags: be32(buf, pos + 1), // all 32 bits are flags: no sentinel
                    bit_levels: Some(Vec::new()),
                    ..Alarm::default()
                });
                return Ok(Next::At(pos + 10));
            }
            let (next, alarm) = parse_alarm(buf, pos, end, true)?;
            walk.alarm = Some(alarm);
            Ok(Next::At(next))
        }
        0xFF => Ok(signature(buf, pos, end)),
        0x03 => skip(pos, end, "fuel cell", 12),
        0x04 => skip(pos, end, "engine", 2),
        0x30 => fuel_cell_stacks(buf, pos, end).map(Next::At),
        0x31 => super_capacitor(buf, pos, end).map(Next::At),
        0x32 => skip(pos, end, "super-capacitor extremes", 18),
        0x80..=0xFE => {
            // Custom: WORD length + bytes (Table 27); an overrunning length cannot be trusted.
            if pos + 2 > end {
                return Ok(Next::Tail);
            }
            let next = pos + 2 + usize::from(be16(buf, pos));
            Ok(if next > end {
                Next::Tail
            } else {
                Next::At(next)
            })
        }
        // 0x00, 0x09-0x2F and 0x33-0x7F have no defined length: the rest is an opaque tail.
        _ => Ok(Next::Tail),
    }
}

/// A fixed-size block whose fields no row keeps.
fn skip(pos: usize, end: usize, name: &str, size: usize) -> Result<Next> {
    if pos + size > end {
        return Err(short(pos, name, size));
    }
    Ok(Next::At(pos + size))
}

/// 0x01, 18 bytes (Table 10).
fn vehicle(buf: &[u8], pos: usize, end: usize) -> Result<Vehicle> {
    if pos + 18 > end {
        return Err(short(pos, "vehicle", 18));
    }
    let b = &buf[pos..pos + 18];
    let word = |at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
    let odometer = u32::from_be_bytes([b[5], b[6], b[7], b[8]]);
    Ok(Vehicle {
        vehicle_state: valid(b[0], 0xFE),
        charging_state: valid(b[1], 0xFE),
        run_mode: valid(b[2], 0xFE),
        speed_kmh: valid(word(3), 0xFFFE).map(|v| f64::from(v) / 10.0),
        odometer_km: valid(odometer, 0xFFFF_FFFE).map(|v| f64::from(v) / 10.0),
        total_voltage_v: valid(word(9), 0xFFFE).map(|v| f64::from(v) / 10.0),
        // The 2025 current offset is 3000 A.
        total_current_a: valid(word(11), 0xFFFE).map(|v| f64::from(i32::from(v) - 30000) / 10.0),
        soc_pct: valid(b[13], 0xFE),
        dcdc_state: valid(b[14], 0xFE),
        gear: Some(b[15]), // bit 7 = gear invalid (Table A.1); kept raw
        insulation_kohm: valid(word(16), 0xFFFE).map(u32::from),
        // The pedals left the 2025 vehicle block.
        accel_pedal_pct: None,
        brake_pedal_pct: None,
    })
}

/// 0x05, 10 bytes: status, coordinate system, longitude, latitude (millionths of a degree).
fn position(buf: &[u8], pos: usize, end: usize) -> Result<Position> {
    if pos + 10 > end {
        return Err(short(pos, "position", 10));
    }
    let status = buf[pos];
    // Signed as integers before dividing, as Python does: a zero west longitude is 0.0, not -0.0.
    let degrees = |raw: u32, negative: bool| {
        valid(raw, 0xFFFF_FFFE).map(|v| {
            let v = i64::from(v);
            (if negative { -v } else { v }) as f64 / 1e6
        })
    };
    Ok(Position {
        valid: Some(status & 0x01 == 0),
        longitude: degrees(be32(buf, pos + 2), status & 0x04 != 0),
        latitude: degrees(be32(buf, pos + 6), status & 0x02 != 0),
    })
}

/// The entry count of a counted block at `pos`: Ok(None) for the sentinels 0xFE / 0xFF, which
/// have no entries.
fn count(buf: &[u8], pos: usize, end: usize, name: &str) -> Result<Option<usize>> {
    if pos >= end {
        return Err(short(pos, name, 1));
    }
    Ok(valid(buf[pos], 0xFE).map(usize::from))
}

/// 0x07 (Table 12): count, then per pack: number, voltage, current, cell count N, N cells.
fn cell_voltages(buf: &[u8], pos: usize, end: usize, out: &mut Vec<VoltEntry>) -> Result<usize> {
    let Some(n) = count(buf, pos, end, "cell voltage")? else {
        return Ok(pos + 1);
    };
    let mut pos = pos + 1;
    if pos + 7 * n > end {
        let detail = format!("{n} cell voltage packs overrun the data unit");
        return Err(FrameError::new(BAD_FIELD, pos, detail));
    }
    for _ in 0..n {
        if pos + 7 > end {
            let detail = "cell voltage pack header needs 7 bytes";
            return Err(FrameError::new(TRUNCATED, pos, detail));
        }
        let pack = buf[pos];
        let voltage = be16(buf, pos + 1);
        let current = be16(buf, pos + 3);
        let k = be16(buf, pos + 5);
        pos += 7;
        let (cell_count, cells) = match valid(k, 0xFFFE) {
            None => (None, 0..0),
            Some(k) => {
                let stop = pos + 2 * usize::from(k);
                if stop > end {
                    let detail = format!("{k} cells overrun the data unit");
                    return Err(FrameError::new(BAD_FIELD, pos, detail));
                }
                let cells = pos..stop;
                pos = stop;
                (Some(k), cells)
            }
        };
        out.push(VoltEntry {
            pack,
            voltage_v: valid(voltage, 0xFFFE).map(|v| f64::from(v) / 10.0),
            current_a: valid(current, 0xFFFE).map(|v| f64::from(i32::from(v) - 30000) / 10.0),
            cell_count,
            first_cell: 1, // 2025 has no paging: every unit of the pack is in the frame
            cells,
        });
    }
    Ok(pos)
}

/// 0x08 (Table 14): count, then per pack: number, probe count N, N probes.
fn temperatures(buf: &[u8], pos: usize, end: usize, out: &mut Vec<TempEntry>) -> Result<usize> {
    let Some(n) = count(buf, pos, end, "temperature")? else {
        return Ok(pos + 1);
    };
    let mut pos = pos + 1;
    if pos + 3 * n > end {
        let detail = format!("{n} probe lists overrun the data unit");
        return Err(FrameError::new(BAD_FIELD, pos, detail));
    }
    for _ in 0..n {
        if pos + 3 > end {
            let detail = "temperature pack header needs 3 bytes";
            return Err(FrameError::new(TRUNCATED, pos, detail));
        }
        let pack = buf[pos];
        let k = be16(buf, pos + 1);
        pos += 3;
        let probes = match valid(k, 0xFFFE) {
            None => 0..0,
            Some(k) => {
                let stop = pos + usize::from(k);
                if stop > end {
                    let detail = format!("{k} probes overrun the data unit");
                    return Err(FrameError::new(BAD_FIELD, pos, detail));
                }
                let probes = pos..stop;
                pos = stop;
                probes
            }
        };
        out.push(TempEntry { pack, probes });
    }
    Ok(pos)
}

/// 0x02 (Table 16): count, then 10 bytes per motor.
fn motors(buf: &[u8], pos: usize, end: usize, out: &mut Vec<Motor>) -> Result<usize> {
    let Some(n) = count(buf, pos, end, "drive motor")? else {
        return Ok(pos + 1);
    };
    let pos = pos + 1;
    let stop = pos + 10 * n;
    if stop > end {
        let detail = format!("{n} drive motors overrun the data unit");
        return Err(FrameError::new(BAD_FIELD, pos, detail));
    }
    out.extend(buf[pos..stop].chunks_exact(10).map(|m| {
        let speed = u16::from_be_bytes([m[3], m[4]]);
        let torque = u32::from_be_bytes([m[5], m[6], m[7], m[8]]);
        Motor {
            seq: m[0],
            state: valid(m[1], 0xFE),
            controller_temp_c: valid(m[2], 0xFE).map(|t| i16::from(t) - 40),
            speed_rpm: valid(speed, 0xFFFE).map(|s| i32::from(s) - 32000),
            torque_nm: valid(torque, 0xFFFF_FFFE).map(|t| (i64::from(t) - 200_000) as f64 / 10.0),
            temp_c: valid(m[9], 0xFE).map(|t| i16::from(t) - 40),
            // Controller voltage and current left the 2025 block.
            controller_voltage_v: None,
            controller_current_a: None,
        }
    }));
    Ok(stop)
}

/// 0xFF: the vehicle signature (Table 8) ends the blocks; it must end the data unit too, else
/// the walk stops here (the caller then searches it backwards with `find_signature`). Unlike
/// that search, this forward check does not look at the algorithm byte (as Python).
fn signature(buf: &[u8], pos: usize, end: usize) -> Next {
    if pos + 3 <= end {
        let at = pos + 3 + usize::from(be16(buf, pos + 1));
        if at + 2 <= end && at + 2 + usize::from(be16(buf, at)) == end {
            return Next::Signed;
        }
    }
    Next::Tail
}

/// 0x30: fuel-cell stacks: count, then per stack 12 bytes with the probe count N at +10 and N
/// probe bytes.
fn fuel_cell_stacks(buf: &[u8], pos: usize, end: usize) -> Result<usize> {
    let Some(n) = count(buf, pos, end, "fuel-cell stack")? else {
        return Ok(pos + 1);
    };
    let mut pos = pos + 1;
    if pos + 12 * n > end {
        let detail = format!("{n} fuel-cell stacks overrun the data unit");
        return Err(FrameError::new(BAD_FIELD, pos, detail));
    }
    for _ in 0..n {
        if pos + 12 > end {
            let detail = "fuel-cell stack needs 12 bytes";
            return Err(FrameError::new(TRUNCATED, pos, detail));
        }
        let k = be16(buf, pos + 10);
        let size = 12 + valid(k, 0xFFFE).map_or(0, usize::from);
        if pos + size > end {
            let detail = format!("{k} probes overrun the data unit");
            return Err(FrameError::new(BAD_FIELD, pos + 12, detail));
        }
        pos += size;
    }
    Ok(pos)
}

/// 0x31: super capacitor: system(1) V(2) I(2) M(2) cells(2M) N(2) probes(N).
fn super_capacitor(buf: &[u8], pos: usize, end: usize) -> Result<usize> {
    if pos + 7 > end {
        return Err(short(pos, "super-capacitor", 9)); // 9: the block without its lists
    }
    let m = be16(buf, pos + 5);
    let at = pos + 7 + valid(m, 0xFFFE).map_or(0, |m| 2 * usize::from(m));
    if at + 2 > end {
        let detail = format!("{m} capacitor cells overrun the data unit");
        return Err(FrameError::new(BAD_FIELD, pos + 7, detail));
    }
    let k = be16(buf, at);
    let next = at + 2 + valid(k, 0xFFFE).map_or(0, usize::from);
    if next > end {
        let detail = format!("{k} capacitor probes overrun the data unit");
        return Err(FrameError::new(BAD_FIELD, at + 2, detail));
    }
    Ok(next)
}

#[cfg(test)]
#[path = "walk2025_tests.rs"]
mod tests;
