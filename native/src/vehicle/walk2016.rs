//! The 2016 (`##`) block walk of real-time / reissue data units (it replaced the Python fast
//! path's `fast_2016.py` in issue 12, result for result; the structured decoder in
//! `ingest/decoders/blocks/` is the readable reference and the differential tests' oracle).
//!
//! Layout and scaling follow GB/T 32960.3-2016 Tables 9-19 and Annex B Tables B.5-B.8;
//! lengths per §3.12. Values are divided (`raw as f64 / 10.0`), not multiplied by 0.1, so that
//! 12.2 km/h is the float nearest to 12.2, as in the Python decoders and the JSON contract.
//!
//! A block that does not fit (a count or length overrunning the data unit) stops the walk like
//! a type of unknown length: the frame keeps the blocks before it and becomes partial (`tail`
//! is the stopped block's type byte), exactly as the structured decoder does. Nothing of that
//! block is kept. The Python walk raised a `FrameError` inside the block and caught it at the
//! walk's end, so no reason or text of those errors ever left it: here a block just says
//! "cannot size" (`None`).

use super::common::{be16, be32, parse_alarm};
use super::{Extremes, Motor, Position, TempEntry, Vehicle, VoltEntry, Walk};
use crate::error::{too_many_blocks, Result, BLOCKS_PER_FRAME};
use crate::wire::byte;

/// Walk the information blocks in `buf[pos..end]` (after the frame time). A block that cannot
/// be sized ends the walk with `tail` set; the one failure is `over_limit`, at the first block
/// walked over `BLOCKS_PER_FRAME` (the tail does not count), before any row is built.
pub fn walk_2016(buf: &[u8], mut pos: usize, end: usize) -> Result<Walk> {
    // `end` comes from the envelope (the BCC's offset); the clamp only keeps a wrong caller
    // from reading past the buffer.
    let end = end.min(buf.len());
    let mut walk = Walk::default();
    let mut blocks = 0usize;
    while pos < end {
        let start = pos;
        match block(buf, pos + 1, end, buf[pos], &mut walk) {
            Some(next) => {
                blocks += 1;
                if blocks > BLOCKS_PER_FRAME {
                    return Err(too_many_blocks(start));
                }
                pos = next;
            }
            None => {
                walk.tail = Some(start);
                break;
            }
        }
    }
    Ok(walk)
}

/// A WORD scaled by 1/`div` with `offset` subtracted first, None for 0xFFFE / 0xFFFF.
#[inline(always)]
fn word(raw: u16, offset: i32, div: f64) -> Option<f64> {
    (raw < 0xFFFE).then(|| f64::from(i32::from(raw) - offset) / div)
}

/// A BYTE temperature (raw degC + 40), None for the sentinels.
#[inline(always)]
fn temp(raw: u8) -> Option<i16> {
    (raw < 0xFE).then(|| i16::from(raw) - 40)
}

/// Decode the block of type `t` whose body starts at `pos` into `walk`: the offset after it,
/// or None when it cannot be sized inside the data unit (the walk stops before it).
fn block(buf: &[u8], mut pos: usize, end: usize, t: u8, walk: &mut Walk) -> Option<usize> {
    match t {
        0x01 => {
            // Whole vehicle, 20 bytes (Table 9 + Annex B pedals).
            let b = buf.get(pos..pos + 20).filter(|_| pos + 20 <= end)?;
            let cu = u16::from_be_bytes([b[11], b[12]]);
            let od = u32::from_be_bytes([b[5], b[6], b[7], b[8]]);
            walk.vehicle = Some(Vehicle {
                vehicle_state: byte(b[0]),
                charging_state: byte(b[1]),
                run_mode: byte(b[2]),
                speed_kmh: word(u16::from_be_bytes([b[3], b[4]]), 0, 10.0),
                odometer_km: (od < 0xFFFF_FFFE).then(|| f64::from(od) / 10.0),
                total_voltage_v: word(u16::from_be_bytes([b[9], b[10]]), 0, 10.0),
                total_current_a: word(cu, 10000, 10.0),
                soc_pct: byte(b[13]),
                dcdc_state: byte(b[14]),
                gear: Some(b[15]), // a bit field (Table A.1), kept raw
                // 2016 insulation resistance has no sentinels.
                insulation_kohm: Some(u32::from(u16::from_be_bytes([b[16], b[17]]))),
                accel_pedal_pct: byte(b[18]),
                brake_pedal_pct: byte(b[19]),
            });
            Some(pos + 20)
        }
        0x08 => {
            // RESS voltages: page count, then 10-byte page headers each followed by its cells.
            walk.counted.push(pos - 1);
            if pos >= end {
                return None;
            }
            let n = usize::from(buf[pos]);
            pos += 1;
            if n >= 0xFE {
                return Some(pos); // sentinel count: no subsystems follow
            }
            if pos + 10 * n > end {
                return None;
            }
            let kept = walk.volts.len();
            walk.volts.reserve(n);
            for _ in 0..n {
                if pos + 10 > end {
                    walk.volts.truncate(kept);
                    return None;
                }
                let pack = buf[pos];
                let vo = be16(buf, pos + 1);
                let cu = be16(buf, pos + 3);
                let total = be16(buf, pos + 5);
                let first = be16(buf, pos + 7);
                let m = buf[pos + 9];
                pos += 10;
                let cells = if m >= 0xFE {
                    pos..pos // sentinel page count: no cells follow
                } else {
                    let stop = pos + 2 * usize::from(m);
                    if stop > end {
                        walk.volts.truncate(kept);
                        return None;
                    }
                    let cells = pos..stop;
                    pos = stop;
                    cells
                };
                walk.volts.push(VoltEntry {
                    pack,
                    voltage_v: word(vo, 0, 10.0),
                    current_a: word(cu, 10000, 10.0),
                    cell_count: (total < 0xFFFE).then_some(total),
                    first_cell: first,
                    cells,
                });
            }
            Some(pos)
        }
        0x09 => {
            // RESS temperatures: list count, then (pack, WORD probe count, probes) each.
            walk.counted.push(pos - 1);
            if pos >= end {
                return None;
            }
            let n = usize::from(buf[pos]);
            pos += 1;
            if n >= 0xFE {
                return Some(pos);
            }
            if pos + 3 * n > end {
                return None;
            }
            let kept = walk.temps.len();
            walk.temps.reserve(n);
            for _ in 0..n {
                if pos + 3 > end {
                    walk.temps.truncate(kept);
                    return None;
                }
                let pack = buf[pos];
                let k = be16(buf, pos + 1);
                pos += 3;
                if k >= 0xFFFE {
                    walk.temps.push(TempEntry {
                        pack,
                        probes: pos..pos,
                    });
                    continue;
                }
                let stop = pos + usize::from(k);
                if stop > end {
                    walk.temps.truncate(kept);
                    return None;
                }
                walk.temps.push(TempEntry {
                    pack,
                    probes: pos..stop,
                });
                pos = stop;
            }
            Some(pos)
        }
        0x02 => {
            // Drive motors: count, then 12 bytes each (Table 11).
            walk.counted.push(pos - 1);
            if pos >= end {
                return None;
            }
            let n = usize::from(buf[pos]);
            pos += 1;
            if n >= 0xFE {
                return Some(pos);
            }
            if pos + 12 * n > end {
                return None;
            }
            walk.motors.reserve(n);
            for m in buf[pos..pos + 12 * n].chunks_exact(12) {
                walk.motors.push(Motor {
                    seq: m[0],
                    state: byte(m[1]),
                    controller_temp_c: temp(m[2]),
                    speed_rpm: {
                        let sp = u16::from_be_bytes([m[3], m[4]]);
                        (sp < 0xFFFE).then(|| i32::from(sp) - 20000)
                    },
                    torque_nm: word(u16::from_be_bytes([m[5], m[6]]), 20000, 10.0),
                    temp_c: temp(m[7]),
                    controller_voltage_v: word(u16::from_be_bytes([m[8], m[9]]), 0, 10.0),
                    controller_current_a: word(u16::from_be_bytes([m[10], m[11]]), 10000, 10.0),
                });
            }
            Some(pos + 12 * n)
        }
        0x05 => {
            // Position, 9 bytes (Table 15): status bits 0 invalid, 1 south, 2 west.
            if pos + 9 > end {
                return None;
            }
            let st = buf[pos];
            let lon = be32(buf, pos + 1);
            let lat = be32(buf, pos + 5);
            // Negate the integer, not the float: a zero west longitude stays +0.0, as the
            // reference's does (blocks/position.py; a float -0.0 would change the COPY bytes).
            let degrees = |raw: u32, negative: bool| {
                (raw < 0xFFFF_FFFE).then(|| {
                    let v = i64::from(raw);
                    (if negative { -v } else { v }) as f64 / 1e6
                })
            };
            walk.position = Some(Position {
                valid: Some(st & 0x01 == 0),
                longitude: degrees(lon, st & 0x04 != 0),
                latitude: degrees(lat, st & 0x02 != 0),
            });
            Some(pos + 9)
        }
        0x06 => {
            // Extremes, 14 bytes (Table 16).
            if pos + 14 > end {
                return None;
            }
            let b = &buf[pos..pos + 14];
            let (vp, vc, np, nc) = (b[0], b[1], b[4], b[5]);
            let vmax = u16::from_be_bytes([b[2], b[3]]);
            let vmin = u16::from_be_bytes([b[6], b[7]]);
            let (tp, tc, tmax, sp, sc, tmin) = (b[8], b[9], b[10], b[11], b[12], b[13]);
            walk.extremes = Some(Extremes {
                max_cell_voltage_v: word(vmax, 0, 1000.0),
                max_cell_voltage_pack: byte(vp),
                max_cell_voltage_cell: byte(vc).map(u16::from),
                min_cell_voltage_v: word(vmin, 0, 1000.0),
                min_cell_voltage_pack: byte(np),
                min_cell_voltage_cell: byte(nc).map(u16::from),
                max_temp_c: temp(tmax),
                max_temp_pack: byte(tp),
                max_temp_probe: byte(tc).map(u16::from),
                min_temp_c: temp(tmin),
                min_temp_pack: byte(sp),
                min_temp_probe: byte(sc).map(u16::from),
            });
            let h = |v: u8| i32::from(v);
            walk.hints = Some([
                h(vp),
                i32::from(vmax),
                h(np),
                i32::from(vmin),
                h(tp),
                h(tmax),
                h(sp),
                h(tmin),
            ]);
            Some(pos + 14)
        }
        0x07 => {
            // Alarm (Table 18). parse_alarm handles the usual block (four zero fault counts)
            // without allocating, so it needs no separate fast case here.
            let (next, alarm) = parse_alarm(buf, pos, end, false).ok()?;
            walk.alarm = Some(alarm);
            Some(next)
        }
        0x03 => {
            // Fuel cell: 18 + N bytes, N = probe count WORD at body offset 6 (sentinel: none).
            if pos + 8 > end {
                return None;
            }
            let k = be16(buf, pos + 6);
            let size = 18 + if k >= 0xFFFE { 0 } else { usize::from(k) };
            (pos + size <= end).then_some(pos + size)
        }
        0x04 => (pos + 5 <= end).then_some(pos + 5), // engine, 5 bytes
        0x80..=0xFE => {
            // User-defined: WORD length + bytes (Table 19). Shanghai buses send 0x81/0x82 with
            // no length at all, so a length that overruns the data unit means "cannot size
            // this block": keep what was decoded and stop, never guess (§3.12).
            if pos + 2 > end {
                return None;
            }
            let next = pos + 2 + usize::from(be16(buf, pos));
            (next <= end).then_some(next)
        }
        // 0x00, 0x0A-0x7F and 0xFF have no defined length: the rest is an opaque tail.
        _ => None,
    }
}
