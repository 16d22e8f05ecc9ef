//! The generic part of the block readers: a field table (`fields.Field` / `Layout`), counts
//! and counted lists (`codec.read_count` / `read_counted`), and a record's values written in
//! its dataclass field order, which is the JSON contract's key order (fields the edition does
//! not have are `null`), then its `quality` object.

use super::out::Out;
pub use crate::error::{BAD_FIELD, TRUNCATED};

/// Why a block could not be read: the walk stops there (the tail reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop(pub &'static str);

pub type R<T> = Result<T, Stop>;

/// One scalar of a fixed layout (`fields.Field`): value = (raw - sub) / div, valid lo..=hi.
#[derive(Clone, Copy)]
pub struct F {
    pub name: &'static str,
    pub width: u8,
    pub div: u32,
    pub sub: i64,
    pub lo: u32,
    pub hi: Option<u32>,
    pub sentinel: bool,
}

pub const fn f(name: &'static str, width: u8) -> F {
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
    pub const fn div(mut self, div: u32) -> F {
        self.div = div;
        self
    }
    pub const fn sub(mut self, sub: i64) -> F {
        self.sub = sub;
        self
    }
    pub const fn lo(mut self, lo: u32) -> F {
        self.lo = lo;
        self
    }
    pub const fn hi(mut self, hi: u32) -> F {
        self.hi = Some(hi);
        self
    }
    /// A field the text gives no sentinels: every raw value is a number.
    pub const fn raw(mut self) -> F {
        self.sentinel = false;
        self
    }
}

/// A list of `n` items of `width` bytes at `at`, scaled like a field (`codec.decode_array`).
#[derive(Clone, Copy)]
pub struct Arr {
    pub at: usize,
    pub n: usize,
    pub width: u8,
    pub div: u32,
    pub sub: i64,
    pub cut: u64, // raw values >= cut are sentinels (null)
}

#[derive(Clone, Copy)]
pub enum V {
    Null,
    Int(i64),
    Float(f64),
    /// `(raw - sub) / div` as Python computes it (a float), kept exact for `Out::decimal`.
    Dec(i64, u32),
    Arr(Arr),
}

/// A record being read: its values by name and its quality, in reading order.
#[derive(Default)]
pub struct Rec {
    pub vals: Vec<(&'static str, V)>,
    pub quality: Vec<(&'static str, &'static str)>,
}

impl Rec {
    pub fn set(&mut self, name: &'static str, v: V) {
        self.vals.push((name, v));
    }
    /// `dict(quality)`: a repeated name keeps its first place and takes the last value.
    pub fn flag(&mut self, name: &'static str, what: &'static str) {
        match self.quality.iter_mut().find(|q| q.0 == name) {
            Some(q) => q.1 = what,
            None => self.quality.push((name, what)),
        }
    }
    pub fn get(&self, name: &str) -> V {
        self.vals
            .iter()
            .find(|v| v.0 == name)
            .map_or(V::Null, |v| v.1)
    }
}

pub fn top(width: u8) -> u64 {
    (1u64 << (8 * u32::from(width))) - 1
}

pub fn raw_at(buf: &[u8], at: usize, width: u8) -> u64 {
    buf[at..at + usize::from(width)]
        .iter()
        .fold(0, |acc, b| acc << 8 | u64::from(*b))
}

fn scaled(raw: u64, div: u32, sub: i64) -> V {
    let v = raw as i64 - sub;
    if div == 1 {
        V::Int(v)
    } else {
        V::Dec(v, div)
    }
}

/// `Layout.read`: the fields at `off` into `rec`; the offset after them.
pub fn read(buf: &[u8], off: usize, end: usize, fields: &[F], rec: &mut Rec) -> R<usize> {
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
pub fn count(
    buf: &[u8],
    off: usize,
    end: usize,
    (width, lo, hi): (u8, u64, u64),
    name: &'static str,
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
pub fn need_items(off: usize, n: usize, size: usize, end: usize) -> R<()> {
    if off + n * size > end {
        return Err(Stop(BAD_FIELD));
    }
    Ok(())
}

/// `codec.read_counted`: a count (`names.0` in quality, valid `lo..=hi`) then its items,
/// the list `names.1` (null for a sentinel count); the count and the offset after the list.
pub fn counted(
    buf: &[u8],
    off: usize,
    end: usize,
    (cw, lo, hi): (u8, u64, u64),
    names: (&'static str, &'static str),
    (width, div, sub, sentinel): (u8, u32, i64, bool),
    rec: &mut Rec,
) -> R<(Option<usize>, usize)> {
    let n = count(buf, off, end, (cw, lo, hi), names.0, rec)?;
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
pub const CELLS: (u8, u32, i64, bool) = (2, 1000, 0, true);
pub const PROBES: (u8, u32, i64, bool) = (1, 1, 40, true);
pub const WORD_COUNT: (u8, u64, u64) = (2, 1, 65_531);

pub fn write_arr(o: &mut Out, buf: &[u8], a: Arr) {
    o.raw(b"[");
    for i in 0..a.n {
        o.item();
        let raw = raw_at(buf, a.at + i * usize::from(a.width), a.width);
        if raw >= a.cut {
            o.null();
        } else {
            match scaled(raw, a.div, a.sub) {
                V::Dec(x, div) => o.decimal(x, div),
                V::Int(x) => o.int(x),
                _ => o.null(),
            }
        }
    }
    o.end(b']');
}

pub fn write_val(o: &mut Out, buf: &[u8], v: V) {
    match v {
        V::Null => o.null(),
        V::Int(x) => o.int(x),
        V::Float(x) => o.float(x),
        V::Dec(x, div) => o.decimal(x, div),
        V::Arr(a) => write_arr(o, buf, a),
    }
}

/// The record's members in `names` order, then `quality`.
pub fn write_rec(o: &mut Out, buf: &[u8], names: &[&str], rec: &Rec) {
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
