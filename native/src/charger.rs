//! The charger profile (docs/protocols/charger.md, `nev.charger.raw`): real-time (0x02) and
//! reissue (0x03) frames to the rows of `contract.charger`, the walk of
//! `ingest/decoders/charger/fast.py` as it stood before this module replaced it.
//!
//! The walk is optimistic: at the first thing it does not place (an unknown type, a block that
//! overruns the data unit, a code outside T/CEC 102, a bad header code, ConnectorID, VIN or
//! time ...) `decode` returns `None` and Python hands the whole frame to the structured decoder
//! (`decode_charger_frame`), which raises the exact error or returns the rows. The structured
//! decoder is therefore the one judge of every reject, by construction.

use std::collections::HashMap;

use crate::envelope::{plain_data, ID_OFFSET, ID_SIZE};
use crate::error::CHARGER_BLOCKS_PER_FRAME;
use crate::time::{self, FrameTime};
use crate::wire::{be16, be32, byte, dword, word};

pub const CONNECTOR_ID_SIZE: usize = 26;
pub const SEQ_SIZE: usize = 27;
pub const VIN_SIZE: usize = 17;
pub const OPERATOR_ID_SIZE: usize = 9;
const C: usize = CONNECTOR_ID_SIZE;
const STATUS_SIZE: usize = C + 3;
const OUTPUT_SIZE: usize = C + 11; // HHHIB (blocks._OUTPUT)
const DEMAND_SIZE: usize = C + VIN_SIZE + 5; // BHH (blocks._DEMAND)
const ORDER_SIZE: usize = C + SEQ_SIZE + 1 + 6 + 12; // state, start time, III (blocks._MONEY)
const DATA_START: usize = 30; // after the header and the 6-byte frame time

/// The output block (0x02) of a connector; sentinels are `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Output {
    pub voltage_v: Option<f64>,
    pub current_a: Option<f64>,
    pub power_kw: Option<f64>,
    pub energy_kwh: Option<f64>,
    pub connector_temp_c: Option<i16>,
}

/// The vehicle/BMS block (0x03) of a connector.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Demand<'a> {
    pub vin: Option<&'a str>,
    pub soc_pct: Option<u8>,
    pub bms_voltage_demand_v: Option<f64>,
    pub bms_current_demand_a: Option<f64>,
}

/// A `ChargerTelemetryRow`: a connector's output joined with its vehicle/BMS block.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Telemetry<'a> {
    pub connector_id: &'a str,
    pub output: Output,
    pub demand: Demand<'a>,
}

/// A `ConnectorStatusRow` (0x01).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status<'a> {
    pub connector_id: &'a str,
    pub status: u8,
    pub park_status: u8,
    pub lock_status: u8,
}

/// A `ChargingSessionRow` of event "progress" (0x04), joined with the connector's output
/// energy and VIN of the same frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Session<'a> {
    pub connector_id: &'a str,
    pub start_charge_seq: &'a str,
    pub state: u8,
    pub start_time: FrameTime,
    pub energy_kwh: Option<f64>,
    pub elec_money: Option<f64>,
    pub service_money: Option<f64>,
    pub total_money: Option<f64>,
    pub vin: Option<&'a str>,
}

/// A `ChargerFaultRow` (0x05); `connector_id` is "" for a fault of the pile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault<'a> {
    pub connector_id: &'a str,
    pub codes: Vec<u32>,
}

/// Everything a real-time / reissue charger frame yields.
#[derive(Debug, Clone, PartialEq)]
pub struct ChargerRows<'a> {
    pub command: u8,
    /// The 17-character header code: OperatorID (9) + pile code (8).
    pub charger_id: &'a str,
    pub time: FrameTime,
    pub statuses: Vec<Status<'a>>,
    pub telemetry: Vec<Telemetry<'a>>,
    pub sessions: Vec<Session<'a>>,
    pub faults: Vec<Fault<'a>>,
}

impl ChargerRows<'_> {
    /// The T/CEC OperatorID: the first 9 characters of the header code.
    pub fn operator_id(&self) -> &str {
        self.charger_id
            .get(..OPERATOR_ID_SIZE)
            .unwrap_or(self.charger_id)
    }
}

/// The rows of one whole charger frame, or `None` when the structured decoder must judge it.
pub fn decode(buf: &[u8]) -> Option<ChargerRows<'_>> {
    let plain = plain_data(buf)?;
    if buf[0] != b'#' || plain.end < DATA_START {
        return None;
    }
    let charger_id = charger_id(buf.get(ID_OFFSET..ID_OFFSET + ID_SIZE)?)?;
    let raw_time: [u8; 6] = buf.get(24..30)?.try_into().ok()?;
    let frame_time = time::parse(raw_time, 24).ok()?;
    let mut rows = ChargerRows {
        command: plain.command,
        charger_id,
        time: frame_time,
        statuses: Vec::new(),
        telemetry: Vec::new(),
        sessions: Vec::new(),
        faults: Vec::new(),
    };
    let mut outputs: Slots<'_, Output> = Slots::new();
    let mut demands: Slots<'_, Demand<'_>> = Slots::new();
    let mut orders: Vec<Session<'_>> = Vec::new();
    let end = plain.end;
    let mut pos = DATA_START;
    let mut blocks = 0usize;
    while pos < end {
        // Over `charger_blocks_per_frame`: the structured decoder rejects it as `over_limit`,
        // having walked no further either.
        blocks += 1;
        if blocks > CHARGER_BLOCKS_PER_FRAME {
            return None;
        }
        let t = buf[pos];
        pos += 1;
        match t {
            0x02 => {
                let b = take(buf, pos, OUTPUT_SIZE, end)?;
                let cid = code_string(&b[..C])?;
                let (v, i, w) = (be16(b, C), be16(b, C + 2), be16(b, C + 4));
                let (e, temp) = (be32(b, C + 6), b[C + 10]);
                let out = Output {
                    voltage_v: word(v).map(|x| f64::from(x) / 10.0),
                    current_a: word(i).map(|x| f64::from(x) / 10.0),
                    power_kw: word(w).map(|x| f64::from(x) / 10.0),
                    energy_kwh: dword(e).map(|x| f64::from(x) / 1000.0),
                    connector_temp_c: byte(temp).map(|x| i16::from(x) - 40),
                };
                outputs.upsert(cid, out);
                pos += OUTPUT_SIZE;
            }
            0x03 => {
                let b = take(buf, pos, DEMAND_SIZE, end)?;
                let cid = code_string(&b[..C])?;
                let raw_vin = &b[C..C + VIN_SIZE];
                let vin = if raw_vin.iter().all(|&x| x == 0) {
                    None
                } else {
                    Some(vin(raw_vin)?)
                };
                let p = C + VIN_SIZE;
                let dem = Demand {
                    vin,
                    soc_pct: byte(b[p]),
                    bms_voltage_demand_v: word(be16(b, p + 1)).map(|x| f64::from(x) / 10.0),
                    bms_current_demand_a: word(be16(b, p + 3)).map(|x| f64::from(x) / 10.0),
                };
                demands.upsert(cid, dem);
                pos += DEMAND_SIZE;
            }
            0x01 => {
                let b = take(buf, pos, STATUS_SIZE, end)?;
                let cid = code_string(&b[..C])?;
                let (status, park, lock) = (b[C], b[C + 1], b[C + 2]);
                // T/CEC 102 code sets (blocks.CONNECTOR_STATUS, PARK_STATUS, LOCK_STATUS).
                let known = matches!(status, 0..=4 | 255)
                    && matches!(park, 0 | 10 | 50)
                    && matches!(lock, 0 | 10 | 50);
                if !known {
                    return None;
                }
                rows.statuses.push(Status {
                    connector_id: cid,
                    status,
                    park_status: park,
                    lock_status: lock,
                });
                pos += STATUS_SIZE;
            }
            0x04 => {
                let b = take(buf, pos, ORDER_SIZE, end)?;
                let cid = code_string(&b[..C])?;
                let seq = code_string(&b[C..C + SEQ_SIZE])?;
                if seq.len() != SEQ_SIZE {
                    return None;
                }
                let p = C + SEQ_SIZE;
                let state = b[p];
                if !(1..=5).contains(&state) {
                    return None; // blocks.ORDER_STATES
                }
                let raw_start: [u8; 6] = b[p + 1..p + 7].try_into().ok()?;
                let start_time = time::parse(raw_start, pos + p + 1).ok()?;
                let money = |k: usize| dword(be32(b, p + 7 + 4 * k)).map(|x| f64::from(x) / 100.0);
                orders.push(Session {
                    connector_id: cid,
                    start_charge_seq: seq,
                    state,
                    start_time,
                    energy_kwh: None,
                    elec_money: money(0),
                    service_money: money(1),
                    total_money: money(2),
                    vin: None,
                });
                pos += ORDER_SIZE;
            }
            0x05 => {
                let head = take(buf, pos, C + 1, end)?;
                let n = usize::from(head[C]);
                let list = take(buf, pos + C + 1, 4 * n, end)?;
                // All padding: a fault of the pile (""), as fast.py's _fault_cid.
                let cid = if head[..C].iter().all(|&x| x == 0 || x == b' ') {
                    ""
                } else {
                    code_string(&head[..C])?
                };
                let codes = list.chunks_exact(4).map(|c| be32(c, 0)).collect();
                rows.faults.push(Fault {
                    connector_id: cid,
                    codes,
                });
                pos += C + 1 + 4 * n;
            }
            _ => return None,
        }
    }
    // The join of rows.py: connectors in first-seen order, output ones before demand-only ones.
    for &(cid, output) in &outputs.rows {
        let demand = demands.get(cid).copied().unwrap_or_default();
        rows.telemetry.push(Telemetry {
            connector_id: cid,
            output,
            demand,
        });
    }
    for &(cid, demand) in &demands.rows {
        if outputs.get(cid).is_none() {
            rows.telemetry.push(Telemetry {
                connector_id: cid,
                output: Output::default(),
                demand,
            });
        }
    }
    for mut order in orders {
        order.energy_kwh = outputs.get(order.connector_id).and_then(|o| o.energy_kwh);
        order.vin = demands.get(order.connector_id).and_then(|d| d.vin);
        rows.sessions.push(order);
    }
    Some(rows)
}

/// `n` bytes at `pos` when they end within the data unit (`end`), else `None` (an overrun:
/// the structured decoder names it).
fn take(buf: &[u8], pos: usize, n: usize, end: usize) -> Option<&[u8]> {
    if pos.checked_add(n)? > end {
        return None;
    }
    buf.get(pos..pos + n)
}

/// A connector's slot in a join: the first-seen position keeps, the last block's value wins
/// (a Python dict assigned by key).
/// A frame's rows keyed by connector id, in first-seen order (a repeat replaces the value, the
/// first position stays). Searched linearly while few (every real frame: a hash index would
/// cost more than it saves), indexed once `INDEX_FROM` connectors: a frame may hold up to
/// `CHARGER_BLOCKS_PER_FRAME` blocks of distinct connectors, and a linear search per block made
/// such a crafted frame quadratic (~1.7 ms instead of ~0.2 ms).
struct Slots<'a, T> {
    rows: Vec<(&'a str, T)>,
    index: HashMap<&'a str, usize>,
}

const INDEX_FROM: usize = 16;

impl<'a, T> Slots<'a, T> {
    fn new() -> Self {
        Slots {
            rows: Vec::new(),
            index: HashMap::new(),
        }
    }

    fn position(&self, key: &str) -> Option<usize> {
        if self.rows.len() < INDEX_FROM {
            self.rows.iter().position(|(k, _)| *k == key)
        } else {
            self.index.get(key).copied()
        }
    }

    fn upsert(&mut self, key: &'a str, value: T) {
        if let Some(i) = self.position(key) {
            self.rows[i].1 = value;
            return;
        }
        self.rows.push((key, value));
        if self.rows.len() == INDEX_FROM {
            self.index = self
                .rows
                .iter()
                .enumerate()
                .map(|(i, (k, _))| (*k, i))
                .collect();
        } else if self.rows.len() > INDEX_FROM {
            self.index.insert(key, self.rows.len() - 1);
        }
    }

    fn get(&self, key: &str) -> Option<&T> {
        self.position(key).map(|i| &self.rows[i].1)
    }
}

/// The header code: OperatorID (9 digits / upper-case letters) + pile code (8 printable ASCII).
fn charger_id(raw: &[u8]) -> Option<&str> {
    let ok = raw.iter().enumerate().all(|(i, &b)| {
        if i < OPERATOR_ID_SIZE {
            b.is_ascii_digit() || b.is_ascii_uppercase()
        } else {
            is_printable(b)
        }
    });
    if !ok {
        return None;
    }
    std::str::from_utf8(raw).ok()
}

/// A fixed-width identifier as `blocks.code_string`: printable ASCII, then only NUL / space
/// padding; `None` when empty or any other byte (the structured decoder names it).
pub fn code_string(raw: &[u8]) -> Option<&str> {
    let n = raw.len()
        - raw
            .iter()
            .rev()
            .take_while(|&&b| b == 0 || b == b' ')
            .count();
    let text = &raw[..n];
    if n == 0 || !text.iter().all(|&b| is_printable(b)) {
        return None;
    }
    std::str::from_utf8(text).ok()
}

/// A VIN of the vehicle/BMS block: 17 digits / upper-case letters.
fn vin(raw: &[u8]) -> Option<&str> {
    if !raw
        .iter()
        .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
    {
        return None;
    }
    std::str::from_utf8(raw).ok()
}

fn is_printable(b: u8) -> bool {
    (0x21..0x7F).contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::bcc;

    const CHARGER: &[u8; 17] = b"MA01H3BQ2P0000001";

    fn frame(command: u8, unit: &[u8]) -> Vec<u8> {
        let mut f = vec![b'#', b'#', command, 0xFE];
        f.extend_from_slice(CHARGER);
        f.push(0x01);
        f.extend_from_slice(&(unit.len() as u16 + 6).to_be_bytes());
        f.extend_from_slice(&[25, 3, 1, 10, 0, 0]);
        f.extend_from_slice(unit);
        let check = bcc(&f, 2, f.len());
        f.push(check);
        f
    }

    fn cid(text: &str) -> Vec<u8> {
        let mut raw = text.as_bytes().to_vec();
        raw.resize(C, 0);
        raw
    }

    fn output(c: &str, v: u16, e: u32) -> Vec<u8> {
        let mut b = vec![0x02];
        b.extend(cid(c));
        b.extend(v.to_be_bytes());
        b.extend(1200u16.to_be_bytes());
        b.extend(0xFFFEu16.to_be_bytes());
        b.extend(e.to_be_bytes());
        b.push(75);
        b
    }

    fn demand(c: &str, vin: &[u8; 17]) -> Vec<u8> {
        let mut b = vec![0x03];
        b.extend(cid(c));
        b.extend(vin);
        b.extend([55, 0x10, 0x04, 0xFF, 0xFF]);
        b
    }

    #[test]
    fn over_blocks_per_frame_goes_structured() {
        // The structured decoder then rejects it as `over_limit` (tests/unit/test_limits.py).
        let block = output("A", 4001, 12345);
        let at = block.repeat(CHARGER_BLOCKS_PER_FRAME);
        assert_eq!(decode(&frame(0x02, &at)).unwrap().telemetry.len(), 1);
        let over = block.repeat(CHARGER_BLOCKS_PER_FRAME + 1);
        assert!(decode(&frame(0x02, &over)).is_none());
    }

    #[test]
    fn many_connectors_join_in_first_seen_order_past_the_index() {
        // Past INDEX_FROM connectors the join is indexed: the same rows as the linear search.
        let names: Vec<String> = (0..INDEX_FROM * 3).map(|k| format!("C{k}")).collect();
        let mut unit = Vec::new();
        for (k, c) in names.iter().enumerate() {
            unit.extend(output(c, 4000 + k as u16, 1));
        }
        unit.extend(output(&names[3], 9, 2)); // a repeat before the index's first entry
        unit.extend(output(&names[INDEX_FROM + 5], 9, 3)); // and one after it
        unit.extend(demand(&names[INDEX_FROM * 2], b"LSVAU2180N2183294"));
        let f = frame(0x02, &unit);
        let rows = decode(&f).unwrap();
        let got: Vec<&str> = rows.telemetry.iter().map(|t| t.connector_id).collect();
        assert_eq!(got, names.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(rows.telemetry[3].output.energy_kwh, Some(0.002));
        assert_eq!(
            rows.telemetry[INDEX_FROM + 5].output.energy_kwh,
            Some(0.003)
        );
        assert_eq!(rows.telemetry[1].output.energy_kwh, Some(0.001));
        let d = rows.telemetry[INDEX_FROM * 2].demand;
        assert_eq!(d.vin, Some("LSVAU2180N2183294"));
    }

    #[test]
    fn blocks_join_by_connector_in_first_seen_order() {
        let mut unit = demand("B", b"LSVAU2180N2183294");
        unit.extend(output("A", 4001, 12345));
        unit.extend(output("B", 0xFFFF, 7));
        unit.extend(output("A", 4002, 12346)); // repeats: last wins, first position keeps
        let f = frame(0x02, &unit);
        let rows = decode(&f).unwrap();
        assert_eq!(rows.operator_id(), "MA01H3BQ2");
        let t: Vec<_> = rows.telemetry.iter().map(|t| t.connector_id).collect();
        assert_eq!(t, ["A", "B"]);
        assert_eq!(rows.telemetry[0].output.voltage_v, Some(400.2));
        assert_eq!(rows.telemetry[0].output.energy_kwh, Some(12.346));
        assert_eq!(rows.telemetry[0].output.power_kw, None);
        assert_eq!(rows.telemetry[0].output.connector_temp_c, Some(35));
        assert_eq!(rows.telemetry[0].demand, Demand::default());
        let b = rows.telemetry[1];
        assert_eq!(
            (b.output.voltage_v, b.demand.vin),
            (None, Some("LSVAU2180N2183294"))
        );
        assert_eq!(b.demand.soc_pct, Some(55));
        assert_eq!(b.demand.bms_voltage_demand_v, Some(410.0));
        assert_eq!(b.demand.bms_current_demand_a, None);
    }

    #[test]
    fn orders_take_the_energy_and_vin_of_their_connector() {
        let mut unit = output("A", 4001, 12345);
        unit.extend(demand("A", b"LSVAU2180N2183294"));
        unit.push(0x04);
        unit.extend(cid("A"));
        unit.extend(b"MA01H3BQ2000000000000000001");
        unit.push(2);
        unit.extend([25, 3, 1, 9, 30, 0]);
        for m in [950u32, 425, 0xFFFF_FFFF] {
            unit.extend(m.to_be_bytes());
        }
        let f = frame(0x03, &unit);
        let rows = decode(&f).unwrap();
        let s = rows.sessions[0];
        assert_eq!(
            (s.state, s.energy_kwh, s.vin),
            (2, Some(12.345), Some("LSVAU2180N2183294"))
        );
        assert_eq!(
            (s.elec_money, s.service_money, s.total_money),
            (Some(9.5), Some(4.25), None)
        );
        assert_eq!(s.start_time.raw, [25, 3, 1, 9, 30, 0]);
    }

    #[test]
    fn statuses_and_faults() {
        let mut unit = vec![0x01];
        unit.extend(cid("A"));
        unit.extend([3, 50, 10]);
        unit.push(0x05);
        unit.extend([b' '; C]); // padding only: the pile
        unit.extend([2, 0, 0, 0, 7, 0xFF, 0, 0, 1]);
        let f = frame(0x02, &unit);
        let rows = decode(&f).unwrap();
        assert_eq!(rows.statuses[0].status, 3);
        assert_eq!(rows.faults[0].connector_id, "");
        assert_eq!(rows.faults[0].codes, [7, 0xFF00_0001]);
    }

    #[test]
    fn what_the_walk_does_not_place_goes_structured() {
        let mut bad_status = vec![0x01];
        bad_status.extend(cid("A"));
        bad_status.extend([7, 50, 10]); // 7: no T/CEC 102 status
        assert!(decode(&frame(0x02, &bad_status)).is_none());
        assert!(decode(&frame(0x02, &[0x06])).is_none()); // unknown type
        assert!(decode(&frame(0x02, &output("A", 1, 1)[..20])).is_none()); // overrun
        assert!(decode(&frame(0x02, &demand("A", b"lsvau2180n2183294"))).is_none());
        assert!(decode(&frame(0x01, &[])).is_none()); // login
        let mut f = frame(0x02, &[]);
        f[4] = b'a'; // OperatorID in lower case
        let last = f.len() - 1;
        f[last] = bcc(&f, 2, last);
        assert!(decode(&f).is_none());
        assert!(decode(&frame(0x02, &[])).is_some());
        for n in 0..f.len() {
            let _ = decode(&f[..n]); // no panic on any prefix
        }
    }
}
