//! The information blocks of both editions as JSON: each block is a field table in the order
//! of its table of the standard (as `ingest.decoders.blocks.*` declares it with `Field`), read
//! by one generic `read`, then written in the record's dataclass field order, which is the
//! JSON contract's key order (fields of the other edition are `null`).

use super::out::Out;
use crate::envelope::EDITION_2025;

pub use crate::error::{BAD_FIELD, TRUNCATED};

/// Why a block could not be read: the walk stops there (the tail reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop(pub &'static str);

type R<T> = Result<T, Stop>;

/// One scalar of a fixed layout (`fields.Field`): value = (raw - sub) / div, valid lo..=hi.
#[derive(Clone, Copy)]
struct F {
    name: &'static str,
    width: u8,
    div: u32,
    sub: i64,
    lo: u32,
    hi: Option<u32>,
    sentinel: bool,
}

const fn f(name: &'static str, width: u8) -> F {
    F {
        name,
        width,
        div: 1,
        sub: 0,
        lo: 0,
        hi: None,
        sentinel: true,
    }
}

impl F {
    const fn div(mut self, div: u32) -> F {
        self.div = div;
        self
    }
    const fn sub(mut self, sub: i64) -> F {
        self.sub = sub;
        self
    }
    const fn lo(mut self, lo: u32) -> F {
        self.lo = lo;
        self
    }
    const fn hi(mut self, hi: u32) -> F {
        self.hi = Some(hi);
        self
    }
    /// A field the text gives no sentinels: every raw value is a number.
    const fn raw(mut self) -> F {
        self.sentinel = false;
        self
    }
}

/// A list of `n` items of `width` bytes at `at`, scaled like a field (`codec.decode_array`).
#[derive(Clone, Copy)]
struct Arr {
    at: usize,
    n: usize,
    width: u8,
    div: u32,
    sub: i64,
    cut: u64, // raw values >= cut are sentinels (null)
}

#[derive(Clone, Copy)]
enum V {
    Null,
    Int(i64),
    Float(f64),
    Arr(Arr),
}

/// A record being read: its values by name and its quality, in reading order.
#[derive(Default)]
struct Rec {
    vals: Vec<(&'static str, V)>,
    quality: Vec<(&'static str, &'static str)>,
}

impl Rec {
    fn set(&mut self, name: &'static str, v: V) {
        self.vals.push((name, v));
    }
    /// `dict(quality)`: a repeated name keeps its first place and takes the last value.
    fn flag(&mut self, name: &'static str, what: &'static str) {
        match self.quality.iter_mut().find(|q| q.0 == name) {
            Some(q) => q.1 = what,
            None => self.quality.push((name, what)),
        }
    }
    fn get(&self, name: &str) -> V {
        self.vals
            .iter()
            .find(|v| v.0 == name)
            .map_or(V::Null, |v| v.1)
    }
}

fn top(width: u8) -> u64 {
    (1u64 << (8 * u32::from(width))) - 1
}

fn raw_at(buf: &[u8], at: usize, width: u8) -> u64 {
    buf[at..at + usize::from(width)]
        .iter()
        .fold(0, |acc, b| acc << 8 | u64::from(*b))
}

fn scaled(raw: u64, div: u32, sub: i64) -> V {
    let v = raw as i64 - sub;
    if div == 1 {
        V::Int(v)
    } else {
        V::Float(v as f64 / f64::from(div))
    }
}

/// `Layout.read`: the fields at `off` into `rec`; the offset after them.
fn read(buf: &[u8], off: usize, end: usize, fields: &[F], rec: &mut Rec) -> R<usize> {
    let size: usize = fields.iter().map(|f| usize::from(f.width)).sum();
    if off + size > end {
        return Err(Stop(TRUNCATED));
    }
    let mut at = off;
    for f in fields {
        let raw = raw_at(buf, at, f.width);
        at += usize::from(f.width);
        let top = top(f.width);
        let abnormal = if f.sentinel { top - 1 } else { top + 1 };
        if raw >= abnormal {
            rec.set(f.name, V::Null);
            if raw == abnormal {
                rec.flag(f.name, "abnormal");
            }
            continue;
        }
        let hi =
            f.hi.map_or(if f.sentinel { top - 2 } else { top }, u64::from);
        if raw < u64::from(f.lo) || raw > hi {
            rec.flag(f.name, "out_of_range");
        }
        rec.set(f.name, scaled(raw, f.div, f.sub));
    }
    Ok(at)
}

/// `codec.read_count`: a BYTE / WORD count; `None` for a sentinel.
fn count(
    buf: &[u8],
    off: usize,
    end: usize,
    width: u8,
    name: &'static str,
    lo: u64,
    hi: u64,
    rec: &mut Rec,
) -> R<Option<usize>> {
    if off + usize::from(width) > end {
        return Err(Stop(TRUNCATED));
    }
    let n = raw_at(buf, off, width);
    let top = top(width);
    if n >= top - 1 {
        if n == top - 1 {
            rec.flag(name, "abnormal");
        }
        return Ok(None);
    }
    if n < lo || n > hi {
        rec.flag(name, "out_of_range");
    }
    Ok(Some(n as usize))
}

/// `codec.need_items`: `n` items of `size` bytes must fit before `end`.
fn need_items(off: usize, n: usize, size: usize, end: usize) -> R<()> {
    if off + n * size > end {
        return Err(Stop(BAD_FIELD));
    }
    Ok(())
}

/// `codec.read_counted`: a count (`names.0` in quality, valid `lo..=hi`) then its items,
/// the list `names.1` (null for a sentinel count); the count and the offset after the list.
fn counted(
    buf: &[u8],
    off: usize,
    end: usize,
    (cw, lo, hi): (u8, u64, u64),
    names: (&'static str, &'static str),
    (width, div, sub, sentinel): (u8, u32, i64, bool),
    rec: &mut Rec,
) -> R<(Option<usize>, usize)> {
    let n = count(buf, off, end, cw, names.0, lo, hi, rec)?;
    let off = off + usize::from(cw);
    let Some(n) = n else {
        rec.set(names.1, V::Null);
        return Ok((None, off));
    };
    need_items(off, n, usize::from(width), end)?;
    let cut = if sentinel {
        top(width) - 1
    } else {
        top(width) + 1
    };
    rec.set(
        names.1,
        V::Arr(Arr {
            at: off,
            n,
            width,
            div,
            sub,
            cut,
        }),
    );
    Ok((Some(n), off + n * usize::from(width)))
}

/// Cell voltages (WORD, 0.001 V) and probe temperatures (BYTE, -40 degC), with sentinels.
const CELLS: (u8, u32, i64, bool) = (2, 1000, 0, true);
const PROBES: (u8, u32, i64, bool) = (1, 1, 40, true);
const WORD_COUNT: (u8, u64, u64) = (2, 1, 65_531);

fn write_arr(o: &mut Out, buf: &[u8], a: Arr) {
    o.raw(b"[");
    for i in 0..a.n {
        o.item();
        let raw = raw_at(buf, a.at + i * usize::from(a.width), a.width);
        if raw >= a.cut {
            o.null();
        } else {
            match scaled(raw, a.div, a.sub) {
                V::Float(x) => o.float(x),
                V::Int(x) => o.int(x),
                _ => o.null(),
            }
        }
    }
    o.end(b']');
}

fn write_val(o: &mut Out, buf: &[u8], v: V) {
    match v {
        V::Null => o.null(),
        V::Int(x) => o.int(x),
        V::Float(x) => o.float(x),
        V::Arr(a) => write_arr(o, buf, a),
    }
}

/// The record's members in `names` order, then `quality`.
fn write_rec(o: &mut Out, buf: &[u8], names: &[&str], rec: &Rec) {
    for name in names {
        o.key(name);
        write_val(o, buf, rec.get(name));
    }
    o.key("quality");
    o.raw(b"{");
    for (name, what) in &rec.quality {
        o.key(name);
        o.str(what);
    }
    o.end(b'}');
}

mod tables;
use tables::*;

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
    let n = count(buf, off, end, 1, key, lo, hi, &mut head)?;
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
        let v = raw as f64 / 1_000_000.0;
        V::Float(if negative { -v } else { v })
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
        let n = count(buf, off, end, 1, name, 0, count_hi, &mut rec)?;
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
        if let Some(n) = count(buf, off, end, 1, "bit_levels", 0, count_hi, &mut rec)? {
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
