//! The public JSON of a real-time (0x02) / reissue (0x03) command packet with a plain data
//! unit, written straight to bytes: exactly `orjson.dumps(frame_to_dict(decode_frame(buf)))`
//! (ingest/decoders/jsonview.py, docs/protocols/gbt32960.md), for `nev-ingest decode`.
//!
//! Bytes rather than Python dicts: a frame's JSON is mostly cell voltages, and building a
//! Python float per cell only for orjson to format it again costs more than the whole walk.
//! What orjson would decide is decided here the same way: keys in dataclass field order,
//! floats in orjson's notation (`fmt_float`), `quality` with dict semantics. The differential
//! test (tests/unit/test_native_json.py) compares the bytes with the reference's.
//!
//! `None` means "not taken here": any other frame and any reject (a miscount found after a
//! stopped walk included); the caller then runs the Python reference, which names the exact
//! error. The block walk mirrors
//! `ingest.decoders.realtime.walk_blocks`; the field tables mirror ingest/decoders/blocks/.

use std::cell::Cell;

use crate::envelope::{plain_data, EDITION_2025, HEADER_SIZE, ID_OFFSET, ID_SIZE};
use crate::error::BLOCKS_PER_FRAME;
use crate::identity::check_vin;
use crate::time;
use crate::vehicle::counts::find_miscount;
mod blocks;
mod fields;
mod out;
mod tables;

use blocks::block;
use fields::Stop;
use out::Out;

const UNKNOWN_TYPE: &str = "unknown_type";
const CUSTOM_OVERRUN: &str = "custom_overrun";
const BAD_SIGNATURE: &str = "bad_signature";
const MARKER: u8 = 0xFF;

/// A 2025 signature (Table 8) and the range it signs.
struct Sig {
    algorithm: u8,
    r: (usize, usize),
    s: (usize, usize),
    signed_end: usize,
}

fn u16_at(buf: &[u8], at: usize) -> Option<usize> {
    Some(usize::from(u16::from_be_bytes([
        *buf.get(at)?,
        *buf.get(at + 1)?,
    ])))
}

/// `signature.decode_signature`: Table 8 at `off`, and the offset after it.
fn decode_signature(buf: &[u8], off: usize, end: usize, signed_end: usize) -> Option<(Sig, usize)> {
    if off + 3 > end {
        return None;
    }
    let r_len = u16_at(buf, off + 1)?;
    let r = off + 3;
    if r + r_len + 2 > end {
        return None;
    }
    let s_len = u16_at(buf, r + r_len)?;
    let s = r + r_len + 2;
    if s + s_len > end {
        return None;
    }
    let sig = Sig {
        algorithm: buf[off],
        r: (r, r + r_len),
        s: (s, s + s_len),
        signed_end,
    };
    Some((sig, s + s_len))
}

/// `signature.find_signature`: the last 0xFF in `[lo, end)` whose Table 8 ends at `end`.
fn find_signature(buf: &[u8], lo: usize, end: usize) -> Option<usize> {
    let top = end.checked_sub(5)?;
    let mut p = top;
    while p > lo {
        p -= 1;
        if buf[p] != MARKER || !(1..=3).contains(&buf[p + 1]) {
            continue;
        }
        let q = p + 4 + u16_at(buf, p + 2)?;
        if q + 2 <= end && q + 2 + u16_at(buf, q)? == end {
            return Some(p);
        }
    }
    None
}

/// Where a walk ended: the signature, and the opaque tail `[start, end)` with its reason.
struct Walked {
    sig: Option<Sig>,
    tail: Option<(usize, usize, &'static str)>,
    /// Type-byte offsets of the counted blocks met (for `counts::find_miscount`).
    counted: Vec<usize>,
    /// More than `BLOCKS_PER_FRAME` blocks walked: the reference rejects the frame
    /// (`over_limit`), and names the error.
    over: bool,
}

fn stop(
    buf: &[u8],
    pos: usize,
    end: usize,
    ed: u16,
    reason: &'static str,
    counted: Vec<usize>,
) -> Walked {
    let mut sig = None;
    let mut tail_end = end;
    if ed == EDITION_2025 {
        if let Some(p) = find_signature(buf, pos, end) {
            sig = decode_signature(buf, p + 1, end, p).map(|(s, _)| s);
            tail_end = p;
        }
    }
    if tail_end == pos {
        return Walked {
            sig,
            tail: None,
            counted: Vec::new(),
            over: false,
        };
    }
    Walked {
        sig,
        tail: Some((pos, tail_end, reason)),
        counted,
        over: false,
    }
}

fn is_counted(ed: u16, t: u8) -> bool {
    if ed == EDITION_2025 {
        matches!(t, 0x02 | 0x07 | 0x08)
    } else {
        matches!(t, 0x02 | 0x08 | 0x09)
    }
}

/// `realtime.walk_blocks`: the blocks go to `o` as the items of the `blocks` array.
fn walk(o: &mut Out, buf: &[u8], mut pos: usize, end: usize, ed: u16) -> Walked {
    let mut counted = Vec::new();
    // Blocks walked, custom ones included (not the signature nor the tail), as `walk_2016` /
    // `walk_2025` count them against the input limit.
    let mut blocks = 0usize;
    let over = || Walked {
        sig: None,
        tail: None,
        counted: Vec::new(),
        over: true,
    };
    while pos < end {
        let t = buf[pos];
        if is_counted(ed, t) {
            counted.push(pos);
        }
        match block(o, buf, t, pos + 1, end, ed) {
            Some(Ok(next)) => {
                blocks += 1;
                if blocks > BLOCKS_PER_FRAME {
                    return over();
                }
                pos = next;
                continue;
            }
            Some(Err(Stop(reason))) => return stop(buf, pos, end, ed, reason, counted),
            None => {}
        }
        if t == MARKER && ed == EDITION_2025 {
            if let Some((sig, after)) = decode_signature(buf, pos + 1, end, pos) {
                if after == end {
                    return Walked {
                        sig: Some(sig),
                        tail: None,
                        counted: Vec::new(),
                        over: false,
                    };
                }
            }
            return stop(buf, pos, end, ed, BAD_SIGNATURE, counted);
        }
        if (0x80..=0xFE).contains(&t) {
            let size = if pos + 3 <= end {
                u16_at(buf, pos + 1)
            } else {
                None
            };
            match size {
                Some(size) if pos + 3 + size <= end => {
                    blocks += 1;
                    if blocks > BLOCKS_PER_FRAME {
                        return over();
                    }
                    o.item_start();
                    o.key("type");
                    o.int(i64::from(t));
                    o.key("name");
                    o.str("custom");
                    o.key("data_hex");
                    o.hex(&buf[pos + 3..pos + 3 + size]);
                    o.end(b'}');
                    pos += 3 + size;
                    continue;
                }
                _ => return stop(buf, pos, end, ed, CUSTOM_OVERRUN, counted),
            }
        }
        return stop(buf, pos, end, ed, UNKNOWN_TYPE, counted);
    }
    Walked {
        sig: None,
        tail: None,
        counted: Vec::new(),
        over: false,
    }
}

fn two(o: &mut Out, v: u8) {
    o.raw(&[b'0' + v / 10, b'0' + v % 10]);
}

/// The JSON object of `buf` (one line, no newline), or `None` to use the Python reference.
pub fn frame_json(buf: &[u8]) -> Option<Vec<u8>> {
    let plain = plain_data(buf)?;
    let id: &[u8; ID_SIZE] = buf.get(ID_OFFSET..ID_OFFSET + ID_SIZE)?.try_into().ok()?;
    let vin = check_vin(id).ok()?;
    let (ed, end) = (plain.edition, plain.end);
    let raw: [u8; 6] = buf.get(HEADER_SIZE..HEADER_SIZE + 6)?.try_into().ok()?;
    if end < HEADER_SIZE + 6 {
        return None;
    }
    let t = time::parse(raw, HEADER_SIZE).ok()?;
    let mut o = Out::with_capacity(buf.len() * 8 + 512);
    o.raw(b"{\"edition\":");
    o.int(i64::from(ed));
    o.raw(b",\"command\":");
    o.int(i64::from(plain.command));
    o.raw(b",\"command_name\":");
    o.str(if plain.command == 0x02 {
        "realtime"
    } else {
        "reissue"
    });
    o.raw(b",\"response\":254,\"response_name\":\"command\",\"vin\":");
    o.str(vin);
    o.raw(b",\"encryption\":1,\"encrypted\":false,\"time\":\"20");
    two(&mut o, raw[0]);
    for (sep, v) in [
        (b'-', raw[1]),
        (b'-', raw[2]),
        (b'T', raw[3]),
        (b':', raw[4]),
        (b':', raw[5]),
    ] {
        o.raw(&[sep]);
        two(&mut o, v);
    }
    o.raw(b"+08:00\",\"ts_ms\":");
    o.int(t.epoch_ms);
    o.raw(b",\"blocks\":[");
    let w = walk(&mut o, buf, HEADER_SIZE + 6, end, ed);
    if w.over {
        return None;
    }
    if w.tail.is_some() && !w.counted.is_empty() {
        // A stopped walk after a counted block may be a miscount (frame.py): then the
        // reference rejects the frame, and names the error. So it does when a walk from a
        // corrected count goes over the block limit.
        let over = Cell::new(false);
        let clean = |at: usize| {
            let again = walk(&mut Out::with_capacity(0), buf, at, end, ed);
            over.set(over.get() || again.over);
            again.tail.is_none() && !again.over
        };
        if find_miscount(buf, &w.counted, end, ed, clean).is_some() || over.get() {
            return None;
        }
    }
    o.raw(b"]");
    if let Some(sig) = &w.sig {
        o.raw(b",\"signature\":{\"algorithm\":");
        o.int(i64::from(sig.algorithm));
        o.raw(b",\"r_hex\":");
        o.hex(&buf[sig.r.0..sig.r.1]);
        o.raw(b",\"s_hex\":");
        o.hex(&buf[sig.s.0..sig.s.1]);
        o.raw(b",\"signed_start\":24,\"signed_end\":");
        o.int(sig.signed_end as i64);
        o.raw(b",\"algorithm_name\":");
        o.str(match sig.algorithm {
            1 => "SM2",
            2 => "RSA",
            3 => "ECC",
            _ => "reserved",
        });
        o.raw(b"}");
    }
    o.raw(b",\"partial\":");
    o.bool(w.tail.is_some());
    o.raw(b",\"signature_missing\":");
    o.bool(ed == EDITION_2025 && w.sig.is_none());
    match w.tail {
        Some((start, stop, reason)) => {
            o.raw(b",\"tail_hex\":");
            o.hex(&buf[start..stop]);
            o.raw(b",\"tail_reason\":");
            o.str(reason);
            o.raw(b",\"tail_offset\":");
            o.int(start as i64);
            o.raw(b"}");
        }
        None => o.raw(b",\"tail_hex\":null,\"tail_reason\":null,\"tail_offset\":null}"),
    }
    Some(o.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::bcc;

    fn seeds() -> Vec<Vec<u8>> {
        let text = include_str!("../../fuzz-seeds/frames.hex");
        let hex = |s: &str| {
            (0..s.len() / 2)
                .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
                .collect()
        };
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(hex)
            .collect()
    }

    #[test]
    fn seed_frames_are_written_as_one_json_object() {
        let frames = seeds();
        let written: Vec<Vec<u8>> = frames.iter().filter_map(|f| frame_json(f)).collect();
        assert!(
            written.len() * 2 > frames.len(),
            "most seeds are plain real-time frames"
        );
        for out in written {
            assert_eq!((out[0], out[out.len() - 1]), (b'{', b'}'));
            assert!(out.windows(10).any(|w| w == b"\"blocks\":["));
        }
    }

    /// A bounded fuzz loop (the big one is examples/fuzz.rs over `decode`): mutated seeds,
    /// half of them resealed (length and BCC fixed) so that the mutation reaches the walk;
    /// any panic fails the test. `NEV_JSON_FUZZ=<inputs>` runs more (docs/performance.md).
    #[test]
    fn mutated_frames_never_panic() {
        let frames = seeds();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut taken = 0;
        let inputs: usize = std::env::var("NEV_JSON_FUZZ").map_or(40_000, |n| n.parse().unwrap());
        for i in 0..inputs {
            let mut f = frames[i % frames.len()].clone();
            for _ in 0..1 + next() % 4 {
                let at = 24 + (next() as usize) % f.len().saturating_sub(24).max(1);
                match next() % 3 {
                    0 if at < f.len() => f[at] = next() as u8,
                    1 if at < f.len() => {
                        f.drain(at..(at + 1 + (next() % 8) as usize).min(f.len()));
                    }
                    _ => f.insert(at.min(f.len()), next() as u8),
                }
            }
            if next() % 2 == 0 && f.len() > HEADER_SIZE {
                let n = f.len() - HEADER_SIZE - 1;
                f[22..24].copy_from_slice(&(n.min(0xFFFF) as u16).to_be_bytes());
                let last = f.len() - 1;
                f[last] = bcc(&f, 2, last);
            }
            taken += usize::from(frame_json(&f).is_some());
        }
        assert!(taken > 1000, "the walk was reached: {taken}");
    }
}
