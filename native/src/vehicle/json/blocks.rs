//! The information blocks of both editions as JSON, one function per block shape, each
//! mirroring its module of ingest/decoders/blocks/ over the tables of `tables`.

use super::fields::*;
use super::out::Out;
use super::tables::*;
use crate::envelope::EDITION_2025;

/// A fixed-layout block (`codec.fixed_codec`).
fn fixed(
    o: &mut Out,
    buf: &[u8],
    off: usize,
    end: usize,
    fields: &[F],
    names: &[&str],
) -> R<(usize, Rec)> {
    let mut rec = Rec::default();
    let next = read(buf, off, end, fields, &mut rec)?;
    write_rec(o, buf, names, &rec);
    Ok((next, rec))
}

/// A block's entry list (motors, packs, stacks): `"key":[{...},...]` or `"key":null`, then
/// the block's own quality. `entry` reads one entry into a record and returns its end.
#[allow(clippy::too_many_arguments)]
fn entries(
    o: &mut Out,
    buf: &[u8],
    off: usize,
    end: usize,
    key: &'static str,
    (lo, hi, min_size): (u64, u64, usize),
    names: &[&str],
    entry: impl Fn(usize, &mut Rec) -> R<usize>,
) -> R<usize> {
    let mut head = Rec::default();
    let n = count(buf, off, end, (1, lo, hi), key, &mut head)?;
    let mut off = off + 1;
    o.key(key);
    match n {
        None => o.null(),
        Some(n) => {
            need_items(off, n, min_size, end)?;
            o.raw(b"[");
            for _ in 0..n {
                let mut rec = Rec::default();
                off = entry(off, &mut rec)?;
                o.item_start();
                write_rec(o, buf, names, &rec);
                o.end(b'}');
            }
            o.end(b']');
        }
    }
    write_rec(o, buf, &[], &head);
    Ok(off)
}

fn position(o: &mut Out, buf: &[u8], off: usize, end: usize, ed: u16) -> R<usize> {
    let size = if ed == EDITION_2025 { 10 } else { 9 };
    if off + size > end {
        return Err(Stop(TRUNCATED));
    }
    let status = buf[off];
    let at = off + size - 8;
    let mut rec = Rec::default();
    let coord = |raw: u64, negative: bool, name: &'static str, limit: u64, rec: &mut Rec| {
        if raw >= 0xFFFF_FFFE {
            if raw == 0xFFFF_FFFE {
                rec.flag(name, "abnormal");
            }
            return V::Null;
        }
        if raw > limit {
            rec.flag(name, "out_of_range");
        }
        // Signed as an integer, as the rows are (walk2016.rs): a west or south 0 is 0.0.
        let v = raw as i64;
        V::Float((if negative { -v } else { v }) as f64 / 1_000_000.0)
    };
    let lon = coord(
        raw_at(buf, at, 4),
        status & 0x04 != 0,
        "longitude",
        180_000_000,
        &mut rec,
    );
    let lat = coord(
        raw_at(buf, at + 4, 4),
        status & 0x02 != 0,
        "latitude",
        90_000_000,
        &mut rec,
    );
    o.key("valid");
    o.bool(status & 0x01 == 0);
    o.key("longitude");
    write_val(o, buf, lon);
    o.key("latitude");
    write_val(o, buf, lat);
    o.key("coord_system");
    if ed == EDITION_2025 {
        let cs = buf[off + 1];
        if !(1..=3).contains(&cs) {
            rec.flag("coord_system", "out_of_range");
        }
        o.int(i64::from(cs));
    } else {
        o.null();
    }
    o.key("status");
    o.int(i64::from(status));
    write_rec(o, buf, &[], &rec);
    Ok(off + size)
}

fn alarm_name(o: &mut Out, bit: u32, ed: u16) {
    let defined = if ed == EDITION_2025 { 28 } else { 19 };
    match ALARM_BITS.get(bit as usize) {
        Some(name) if bit < defined => o.str(name),
        _ => {
            o.raw(b"\"bit_");
            o.int(i64::from(bit));
            o.raw(b"\"");
        }
    }
}

fn alarm(o: &mut Out, buf: &[u8], off: usize, end: usize, ed: u16) -> R<usize> {
    let mut rec = Rec::default();
    let head = if ed == EDITION_2025 {
        &ALARM_HEAD_2025
    } else {
        &ALARM_HEAD_2016
    };
    let mut off = read(buf, off, end, head, &mut rec)?;
    let count_hi = if ed == EDITION_2025 { 253 } else { 252 };
    for name in FAULT_LISTS {
        let n = count(buf, off, end, (1, 0, count_hi), name, &mut rec)?;
        off += 1;
        match n {
            None => rec.set(name, V::Null),
            Some(n) => {
                need_items(off, n, 4, end)?;
                let cut = u64::MAX;
                rec.set(
                    name,
                    V::Arr(Arr {
                        at: off,
                        n,
                        width: 4,
                        div: 1,
                        sub: 0,
                        cut,
                    }),
                );
                off += 4 * n;
            }
        }
    }
    let mut levels = None;
    if ed == EDITION_2025 {
        if let Some(n) = count(buf, off, end, (1, 0, count_hi), "bit_levels", &mut rec)? {
            need_items(off + 1, n, 2, end)?;
            levels = Some((off + 1, n));
            off += 2 * n;
        }
        off += 1;
    }
    let names = [
        "max_level",
        "general_flags",
        "ress_faults",
        "motor_faults",
        "engine_faults",
        "other_faults",
    ];
    for name in names {
        o.key(name);
        write_val(o, buf, rec.get(name));
    }
    o.key("bit_levels");
    match levels {
        None => o.null(),
        Some((at, n)) => {
            o.raw(b"[");
            for i in 0..n {
                let (bit, level) = (buf[at + 2 * i], buf[at + 2 * i + 1]);
                o.item_start();
                o.key("bit");
                o.int(i64::from(bit));
                o.key("level");
                o.int(i64::from(level));
                o.key("alarm");
                alarm_name(o, u32::from(bit), ed);
                o.end(b'}');
            }
            o.end(b']');
        }
    }
    write_rec(o, buf, &[], &rec);
    o.key("general_alarms");
    o.raw(b"[");
    if let V::Int(flags) = rec.get("general_flags") {
        for bit in (0..32).filter(|b| flags >> b & 1 == 1) {
            o.item();
            alarm_name(o, bit, ed);
        }
    }
    o.end(b']');
    Ok(off)
}

fn vehicle(o: &mut Out, buf: &[u8], off: usize, end: usize, ed: u16) -> R<usize> {
    let layout: &[F] = if ed == EDITION_2025 {
        &VEHICLE_2025
    } else {
        &VEHICLE_2016
    };
    let (next, rec) = fixed(o, buf, off, end, layout, &VEHICLE_NAMES)?;
    if let V::Int(gear) = rec.get("gear") {
        let low = gear & 0x0F;
        o.key("gear_position");
        match low {
            0 => o.str("N"),
            13 => o.str("R"),
            14 => o.str("D"),
            15 => o.str("P"),
            _ => {
                o.raw(b"\"");
                o.int(low);
                o.raw(b"\"");
            }
        }
        o.key("gear_drive_force");
        o.bool(gear & 0x20 != 0);
        o.key("gear_brake_force");
        o.bool(gear & 0x10 != 0);
        o.key("gear_valid");
        o.bool(ed != EDITION_2025 || gear & 0x80 == 0);
    }
    Ok(next)
}

fn motors(o: &mut Out, buf: &[u8], off: usize, end: usize, ed: u16) -> R<usize> {
    let layout: &[F] = if ed == EDITION_2025 {
        &MOTOR_2025
    } else {
        &MOTOR_2016
    };
    let size = if ed == EDITION_2025 { 10 } else { 12 };
    entries(
        o,
        buf,
        off,
        end,
        "motors",
        (1, 253, size),
        &MOTOR_NAMES,
        |at, rec| read(buf, at, end, layout, rec),
    )
}

fn fuel_cell(o: &mut Out, buf: &[u8], off: usize, end: usize, ed: u16) -> R<usize> {
    if ed == EDITION_2025 {
        return fixed(o, buf, off, end, &FUEL_CELL_2025, &FUEL_CELL_NAMES).map(|r| r.0);
    }
    let mut rec = Rec::default();
    let at = read(buf, off, end, &FUEL_CELL_HEAD_2016, &mut rec)?;
    // No sentinels in the probe list (Table 12): 0xFE/0xFF are temperatures.
    let names = ("probe_temps_c", "probe_temps_c");
    let (_, at) = counted(
        buf,
        at,
        end,
        (2, 0, 65_531),
        names,
        (1, 1, 40, false),
        &mut rec,
    )?;
    let at = read(buf, at, end, &FUEL_CELL_TAIL_2016, &mut rec)?;
    write_rec(o, buf, &FUEL_CELL_NAMES, &rec);
    Ok(at)
}

fn volts(o: &mut Out, buf: &[u8], off: usize, end: usize, ed: u16) -> R<usize> {
    if ed == EDITION_2025 {
        return entries(
            o,
            buf,
            off,
            end,
            "packs",
            (0, 50, 7),
            &VOLT_NAMES,
            |at, rec| {
                let at = read(buf, at, end, &VOLT_HEAD_2025, rec)?;
                let names = ("cell_count", "cell_voltages_v");
                let (n, next) = counted(buf, at, end, WORD_COUNT, names, CELLS, rec)?;
                rec.set("cell_count", n.map_or(V::Null, |n| V::Int(n as i64)));
                rec.set("first_cell", V::Int(1));
                Ok(next)
            },
        );
    }
    entries(
        o,
        buf,
        off,
        end,
        "packs",
        (1, 250, 10),
        &VOLT_NAMES,
        |at, rec| {
            let at = read(buf, at, end, &VOLT_HEAD_2016, rec)?;
            // Up to 255 cells per page are accepted: the text says 200 but the field is a BYTE.
            let names = ("cell_voltages_v", "cell_voltages_v");
            let (_, next) = counted(buf, at, end, (1, 1, 200), names, CELLS, rec)?;
            Ok(next)
        },
    )
}

fn temps(o: &mut Out, buf: &[u8], off: usize, end: usize, ed: u16) -> R<usize> {
    let (head, lo, hi): (&[F], u64, u64) = if ed == EDITION_2025 {
        (&TEMP_HEAD_2025, 0, 50)
    } else {
        (&TEMP_HEAD_2016, 1, 250)
    };
    entries(
        o,
        buf,
        off,
        end,
        "packs",
        (lo, hi, 3),
        &TEMP_NAMES,
        |at, rec| {
            read(buf, at, end, head, rec)?;
            let names = ("probe_count", "temps_c");
            let (n, next) = counted(buf, at + 1, end, WORD_COUNT, names, PROBES, rec)?;
            rec.set("probe_count", n.map_or(V::Null, |n| V::Int(n as i64)));
            Ok(next)
        },
    )
}

fn stacks(o: &mut Out, buf: &[u8], off: usize, end: usize) -> R<usize> {
    entries(
        o,
        buf,
        off,
        end,
        "stacks",
        (1, 253, 12),
        &STACK_NAMES,
        |at, rec| {
            let at = read(buf, at, end, &STACK_HEAD, rec)?;
            let names = ("coolant_temps_c", "coolant_temps_c");
            let (_, next) = counted(buf, at, end, (2, 0, 65_531), names, PROBES, rec)?;
            Ok(next)
        },
    )
}

fn supercap(o: &mut Out, buf: &[u8], off: usize, end: usize) -> R<usize> {
    let mut rec = Rec::default();
    let at = read(buf, off, end, &SUPERCAP_HEAD, &mut rec)?;
    let names = ("cell_voltages_v", "cell_voltages_v");
    let (_, at) = counted(buf, at, end, WORD_COUNT, names, CELLS, &mut rec)?;
    let names = ("temps_c", "temps_c");
    let (_, at) = counted(buf, at, end, WORD_COUNT, names, PROBES, &mut rec)?;
    write_rec(o, buf, &SUPERCAP_NAMES, &rec);
    Ok(at)
}

/// The block of type `t` whose body starts at `off`, as an item of the `blocks` array:
/// `None` when the edition defines no such type (the walk decides), else its end or why the
/// walk stops there (what was written of it is taken back).
pub fn block(o: &mut Out, buf: &[u8], t: u8, off: usize, end: usize, ed: u16) -> Option<R<usize>> {
    let name = block_name(t, ed)?;
    let mark = o.len();
    o.item_start();
    o.key("type");
    o.int(i64::from(t));
    o.key("name");
    o.str(name);
    let r = match (ed == EDITION_2025, t) {
        (_, 0x01) => vehicle(o, buf, off, end, ed),
        (_, 0x02) => motors(o, buf, off, end, ed),
        (_, 0x03) => fuel_cell(o, buf, off, end, ed),
        (false, 0x04) => fixed(o, buf, off, end, &ENGINE_2016, &ENGINE_NAMES).map(|r| r.0),
        (true, 0x04) => fixed(o, buf, off, end, &ENGINE_2025, &ENGINE_NAMES).map(|r| r.0),
        (_, 0x05) => position(o, buf, off, end, ed),
        (false, 0x06) => fixed(o, buf, off, end, &EXTREMES_2016, &EXTREMES_NAMES).map(|r| r.0),
        (false, 0x07) | (true, 0x06) => alarm(o, buf, off, end, ed),
        (false, 0x08) | (true, 0x07) => volts(o, buf, off, end, ed),
        (false, 0x09) | (true, 0x08) => temps(o, buf, off, end, ed),
        (true, 0x30) => stacks(o, buf, off, end),
        (true, 0x31) => supercap(o, buf, off, end),
        (true, 0x32) => fixed(
            o,
            buf,
            off,
            end,
            &SUPERCAP_EXTREMES,
            &SUPERCAP_EXTREMES_NAMES,
        )
        .map(|r| r.0),
        _ => {
            o.truncate(mark);
            return None;
        }
    };
    match r {
        Ok(next) => {
            o.end(b'}');
            Some(Ok(next))
        }
        Err(stop) => {
            o.truncate(mark);
            Some(Err(stop))
        }
    }
}
