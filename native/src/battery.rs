//! The battery-pack profile (docs/protocols/battery.md, `nev.battery.raw`), both envelopes:
//! real-time (0x02) and reissue (0x03) frames to one `PackTelemetryRow` (+ `PackAlarmRow`),
//! the walk of `ingest/decoders/battery/fast.py` as it stood before this module replaced it.
//!
//! `decode` checks the header ID, the GB/T 34014 pack code (`pack_code`), that the ID is the
//! code's positions 8-24 and the frame time; a frame failing any of these, or not plain
//! real-time data, is `None` and Python's structured decoder (`decode_pack_frame`) judges it.
//! The block walk keeps the blocks before the first one it cannot place (an unknown type, an
//! overrun, the 2025 signature) and says so (`stopped`): Python then asks the structured
//! decoder whether the frame is partial (and where) or rejected, as fast.py did.
//! If a type repeats in one frame, the last one wins.

use crate::envelope::{plain_data, ID_OFFSET, ID_SIZE};
use crate::error::BLOCKS_PER_FRAME;
use crate::time::{self, FrameTime};
use crate::wire::{be16, be32, byte, word};

pub mod pack_code;

pub const CODE_LENGTH: usize = 24;
pub const SITE_ID_SIZE: usize = 20;
const CODE_START: usize = 30; // after the header and the 6-byte frame time
const DATA_START: usize = CODE_START + CODE_LENGTH;
const STATE_SIZE: usize = 12; // BBBBHHHH (blocks.STATE_LAYOUT)

/// The pack state block (0x01), `blocks.STATE_LAYOUT`'s fields; sentinels are `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct State {
    pub lifecycle_stage: Option<u8>,
    pub work_state: Option<u8>,
    pub soc_pct: Option<u8>,
    pub soh_pct: Option<u8>,
    pub cycle_count: Option<u16>,
    pub voltage_v: Option<f64>,
    pub current_a: Option<f64>,
    pub insulation_kohm: Option<u16>,
}

/// The site block (0x02): the raw 20-byte site ID (text is decoded by the bindings, as
/// `text.decode_text`: ASCII, else GB 18030) and the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Site<'a> {
    pub site_id: &'a [u8],
    pub slot: Option<u16>,
}

/// A counted list (cells 0x03: WORD mV each; probes 0x04: BYTE degC + 40 each) with its
/// extremes; a sentinel count (FFFE/FFFF) is `count: None` and no list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counted<'a> {
    pub count: Option<u16>,
    pub raw: &'a [u8],
    /// mV for cells, degC for probes; `None` when no value is a valid one.
    pub min: Option<i32>,
    pub max: Option<i32>,
}

/// The alarm block (0x05). `codes` is `None` for a sentinel count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alarm {
    pub max_level: Option<u8>,
    pub flags: u32,
    pub codes: Option<Vec<u32>>,
}

/// What a real-time / reissue pack frame yields.
#[derive(Debug, Clone, PartialEq)]
pub struct PackRows<'a> {
    pub edition: u16,
    pub command: u8,
    /// The full 24-character GB/T 34014 code (validated).
    pub pack_code: &'a str,
    pub time: FrameTime,
    pub state: State,
    pub site: Option<Site<'a>>,
    pub cells: Option<Counted<'a>>,
    pub probes: Option<Counted<'a>>,
    pub alarm: Option<Alarm>,
    /// The walk stopped at a block it could not place: the structured decoder decides whether
    /// the frame is partial or rejected.
    pub stopped: bool,
}

impl PackRows<'_> {
    /// `(max_alarm_level, alarm_flags, fault_count)` of the telemetry row.
    pub fn alarm_summary(&self) -> (Option<u8>, Option<u32>, usize) {
        match &self.alarm {
            None => (None, None, 0),
            Some(a) => (
                a.max_level,
                Some(a.flags),
                a.codes.as_ref().map_or(0, Vec::len),
            ),
        }
    }

    /// Whether the frame has a `PackAlarmRow`: a non-zero level or non-zero flags.
    pub fn has_alarm_row(&self) -> bool {
        self.alarm
            .as_ref()
            .is_some_and(|a| a.max_level.unwrap_or(0) != 0 || a.flags != 0)
    }
}

/// Whether `decode` checks the header ID and pack code itself (`Check`) or takes them as the
/// structured decoder accepted them (`Trusted`, the Python fallback of a frame that `Check`
/// handed over and the structured decoder then accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    Check,
    Trusted,
}

/// The rows of one whole pack frame, or `None` when the structured decoder must judge it.
pub fn decode(buf: &[u8], identity: Identity) -> Option<PackRows<'_>> {
    let plain = plain_data(buf)?;
    let end = plain.end;
    if end < DATA_START {
        return None;
    }
    let raw_code = buf.get(CODE_START..DATA_START)?;
    let raw_id = buf.get(ID_OFFSET..ID_OFFSET + ID_SIZE)?;
    if identity == Identity::Check {
        // The header ID follows the VIN character rule (frame._keyed_id) and must be the
        // code's positions 8-24 (frame._same_pack).
        let id_ok = raw_id
            .iter()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase());
        if !id_ok || !pack_code::is_valid(raw_code) || raw_code.get(7..) != Some(raw_id) {
            return None;
        }
    }
    let pack_code = std::str::from_utf8(raw_code).ok()?;
    let raw_time: [u8; 6] = buf.get(24..30)?.try_into().ok()?;
    let frame_time = time::parse(raw_time, 24).ok()?;
    let mut rows = PackRows {
        edition: plain.edition,
        command: plain.command,
        pack_code,
        time: frame_time,
        state: State::default(),
        site: None,
        cells: None,
        probes: None,
        alarm: None,
        stopped: false,
    };
    rows.stopped = walk(buf, DATA_START, end, &mut rows).is_none();
    Some(rows)
}

/// The information blocks from `pos` to `end`; `None` at the first block it cannot place, or
/// at one over `BLOCKS_PER_FRAME` (the structured decoder then rejects it as `over_limit`).
fn walk<'a>(buf: &'a [u8], mut pos: usize, end: usize, rows: &mut PackRows<'a>) -> Option<()> {
    let mut blocks = 0usize;
    while pos < end {
        blocks += 1;
        if blocks > BLOCKS_PER_FRAME {
            return None;
        }
        let t = buf[pos];
        match t {
            0x01 => {
                let b = take(buf, pos + 1, STATE_SIZE, end)?;
                let (v, i) = (be16(b, 6), be16(b, 8));
                rows.state = State {
                    lifecycle_stage: byte(b[0]),
                    work_state: byte(b[1]),
                    soc_pct: byte(b[2]),
                    soh_pct: byte(b[3]),
                    cycle_count: word(be16(b, 4)),
                    voltage_v: word(v).map(|x| f64::from(x) / 10.0),
                    // offset -3000 A: (raw - 30000) / 10 (blocks.STATE_LAYOUT)
                    current_a: word(i).map(|x| f64::from(i32::from(x) - 30_000) / 10.0),
                    insulation_kohm: word(be16(b, 10)),
                };
                pos += 1 + STATE_SIZE;
            }
            0x02 => {
                let b = take(buf, pos + 1, SITE_ID_SIZE + 2, end)?;
                rows.site = Some(Site {
                    site_id: &b[..SITE_ID_SIZE],
                    slot: word(be16(b, SITE_ID_SIZE)),
                });
                pos += 3 + SITE_ID_SIZE;
            }
            0x03 | 0x04 => {
                let n = be16(take(buf, pos + 1, 2, end)?, 0);
                pos += 3;
                let mut list = Counted::default();
                if n < 0xFFFE {
                    let size = if t == 0x03 {
                        2 * usize::from(n)
                    } else {
                        usize::from(n)
                    };
                    let raw = take(buf, pos, size, end)?;
                    let (min, max) = if t == 0x03 {
                        cell_extremes(raw)
                    } else {
                        probe_extremes(raw)
                    };
                    list = Counted {
                        count: Some(n),
                        raw,
                        min,
                        max,
                    };
                    pos += size;
                }
                if t == 0x03 {
                    rows.cells = Some(list);
                } else {
                    rows.probes = Some(list);
                }
            }
            0x05 => {
                let b = take(buf, pos + 1, 6, end)?;
                let n = b[5];
                pos += 7;
                let mut codes = None;
                if n < 0xFE {
                    let size = 4 * usize::from(n);
                    let list = take(buf, pos, size, end)?;
                    codes = Some(list.chunks_exact(4).map(|c| be32(c, 0)).collect());
                    pos += size;
                }
                rows.alarm = Some(Alarm {
                    max_level: byte(b[0]),
                    flags: be32(b, 1),
                    codes,
                });
            }
            // Custom blocks: skipped by their WORD length (the vehicle walk's rule).
            0x80..=0xFE if pos + 3 <= end => {
                let n = usize::from(be16(buf, pos + 1));
                take(buf, pos + 3, n, end)?;
                pos += 3 + n;
            }
            _ => return None,
        }
    }
    Some(())
}

/// (min, max) mV of big-endian u16 cells, ignoring the sentinels 0xFFFE / 0xFFFF.
pub fn cell_extremes(raw: &[u8]) -> (Option<i32>, Option<i32>) {
    let valid = raw
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .filter(|&v| v < 0xFFFE);
    extremes(valid.map(i32::from))
}

/// (min, max) degC of u8 probes (raw - 40), ignoring the sentinels 0xFE / 0xFF.
pub fn probe_extremes(raw: &[u8]) -> (Option<i32>, Option<i32>) {
    let valid = raw.iter().filter(|&&v| v < 0xFE);
    extremes(valid.map(|&v| i32::from(v) - 40))
}

fn extremes(values: impl Iterator<Item = i32>) -> (Option<i32>, Option<i32>) {
    values.fold((None, None), |(lo, hi), v| {
        (
            Some(lo.map_or(v, |m: i32| m.min(v))),
            Some(hi.map_or(v, |m: i32| m.max(v))),
        )
    })
}

/// `n` bytes at `pos` when they end within the data unit (`end`), else `None`.
fn take(buf: &[u8], pos: usize, n: usize, end: usize) -> Option<&[u8]> {
    if pos.checked_add(n)? > end {
        return None;
    }
    buf.get(pos..pos + n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::bcc;

    const CODE: &[u8; 24] = b"03HPE010000000A1B0000042";

    fn frame(marker: u8, unit: &[u8]) -> Vec<u8> {
        let mut f = vec![marker, marker, 0x02, 0xFE];
        f.extend_from_slice(&CODE[7..]);
        f.push(0x01);
        f.extend_from_slice(&(unit.len() as u16 + 30).to_be_bytes());
        f.extend_from_slice(&[25, 1, 2, 3, 4, 5]);
        f.extend_from_slice(CODE);
        f.extend_from_slice(unit);
        let check = bcc(&f, 2, f.len());
        f.push(check);
        f
    }

    #[test]
    fn every_block_type() {
        let mut unit = vec![
            0x01, 1, 2, 55, 0xFE, 0, 7, 0x0F, 0xA0, 0x75, 0x32, 0xFF, 0xFF,
        ];
        unit.extend([0x02]);
        unit.extend(b"SWAP01\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
        unit.extend([0, 3]);
        unit.extend([0x03, 0, 3, 0x0C, 0xE4, 0xFF, 0xFE, 0x0D, 0x01]);
        unit.extend([0x04, 0, 2, 0xFF, 65]);
        unit.extend([0x05, 2, 0, 0, 0, 1, 1, 0, 0, 0, 9]);
        unit.extend([0x80, 0, 1, 0xAA]); // custom, skipped
        let f = frame(b'#', &unit);
        let rows = decode(&f, Identity::Check).unwrap();
        assert!(!rows.stopped);
        assert_eq!(rows.pack_code, "03HPE010000000A1B0000042");
        let s = rows.state;
        assert_eq!(
            (s.lifecycle_stage, s.soh_pct, s.cycle_count),
            (Some(1), None, Some(7))
        );
        assert_eq!((s.voltage_v, s.current_a), (Some(400.0), Some(0.2)));
        assert_eq!(s.insulation_kohm, None);
        assert_eq!(rows.site.unwrap().slot, Some(3));
        let c = rows.cells.unwrap();
        assert_eq!(
            (c.count, c.min, c.max, c.raw.len()),
            (Some(3), Some(3300), Some(3329), 6)
        );
        let p = rows.probes.unwrap();
        assert_eq!((p.count, p.min, p.max), (Some(2), Some(25), Some(25)));
        assert_eq!(rows.alarm_summary(), (Some(2), Some(1), 1));
        assert!(rows.has_alarm_row());
    }

    #[test]
    fn a_stop_keeps_the_blocks_before_it() {
        let unit = [0x03, 0xFF, 0xFF, 0x06, 1, 2];
        let f = frame(b'$', &unit);
        let rows = decode(&f, Identity::Check).unwrap();
        assert!(rows.stopped);
        assert_eq!(rows.cells, Some(Counted::default()));
        let overrun = [0x04, 0, 9, 60];
        assert!(
            decode(&frame(b'#', &overrun), Identity::Check)
                .unwrap()
                .stopped
        );
    }

    #[test]
    fn over_blocks_per_frame_goes_structured() {
        // The structured decoder then rejects it as `over_limit` (tests/unit/test_limits.py).
        let custom = [0x80, 0, 0];
        let at = custom.repeat(BLOCKS_PER_FRAME);
        assert!(!decode(&frame(b'$', &at), Identity::Check).unwrap().stopped);
        let over = custom.repeat(BLOCKS_PER_FRAME + 1);
        assert!(
            decode(&frame(b'$', &over), Identity::Check)
                .unwrap()
                .stopped
        );
    }

    #[test]
    fn a_bad_identity_goes_structured_unless_trusted() {
        let mut f = frame(b'#', &[]);
        f[20] = b'3'; // header ID no longer the code's positions 8-24
        let last = f.len() - 1;
        f[last] = bcc(&f, 2, last);
        assert!(decode(&f, Identity::Check).is_none());
        assert!(decode(&f, Identity::Trusted).is_some());
        for n in 0..f.len() {
            let _ = decode(&f[..n], Identity::Check); // no panic on any prefix
        }
    }

    #[test]
    fn extremes_ignore_sentinels() {
        assert_eq!(cell_extremes(&[0xFF, 0xFF, 0xFF, 0xFE]), (None, None));
        assert_eq!(
            cell_extremes(&[0xFF, 0xFD, 0x00, 0x01]),
            (Some(1), Some(0xFFFD))
        );
        assert_eq!(probe_extremes(&[0, 0xFD, 0xFE]), (Some(-40), Some(213)));
        assert_eq!(probe_extremes(&[]), (None, None));
    }
}
