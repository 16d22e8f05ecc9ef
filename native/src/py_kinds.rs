//! Python bindings of the charger and battery-pack profiles (`charger`, `battery`): one call per
//! batch of Kafka values, parsing with the GIL released, then the rows of `contract.charger` /
//! `contract.battery` with the values the Python fast paths gave them (the NamedTuples and the
//! slots of the frame dataclasses allocated and filled directly: py_alloc). A frame the native walk
//! does not place is `None` in the result: the Python wrappers (ingest/decoders/charger/fast.py,
//! battery/fast.py) hand it to the structured decoder.

use std::collections::HashMap;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDateTime, PyList, PyString, PyTzInfo};
use pyo3::{intern, IntoPyObjectExt};

use crate::battery::{self, Identity, PackRows};
use crate::charger::{self, ChargerRows};
use crate::py_alloc::{RowClass, SlotsClass};
use crate::time::FrameTime;

/// Adds the profile functions to the `nev_native` module (one line in py.rs).
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(decode_charger_batch, m)?)?;
    m.add_function(wrap_pyfunction!(decode_charger, m)?)?;
    m.add_function(wrap_pyfunction!(decode_pack_batch, m)?)?;
    m.add_function(wrap_pyfunction!(decode_pack, m)?)?;
    Ok(())
}

/// The Python classes and constants the rows are made of, imported once.
struct Symbols {
    china_tz: Py<PyTzInfo>,
    utc: Py<PyTzInfo>,
    source_frame: Py<PyString>,
    progress: Py<PyString>,
    charger_rows: SlotsClass,
    telemetry_row: RowClass,
    session_row: RowClass,
    status_row: RowClass,
    fault_row: RowClass,
    pack_frame_rows: SlotsClass,
    pack_telemetry_row: RowClass,
    pack_alarm_row: RowClass,
}

/// `ChargerRows`' slots, in the order `charger_rows` gives their values.
const CHARGER_SLOTS: [&str; 11] = [
    "operator_id",
    "charger_id",
    "command",
    "ts_ms",
    "response",
    "encrypted",
    "connectors",
    "statuses",
    "faults",
    "telemetry",
    "sessions",
];

/// `PackFrameRows`' slots, in the order `pack_rows` gives their values.
const PACK_SLOTS: [&str; 11] = [
    "edition",
    "command",
    "pack_code",
    "ts_ms",
    "encrypted",
    "partial",
    "telemetry",
    "alarm",
    "session",
    "response",
    "tail_offset",
];

static SYMBOLS: PyOnceLock<Symbols> = PyOnceLock::new();

fn symbols(py: Python<'_>) -> PyResult<&Symbols> {
    SYMBOLS.get_or_try_init(py, || {
        let chargers = py.import("contract.charger")?;
        let packs = py.import("contract.battery")?;
        let charger = |name: &str| RowClass::new(chargers.getattr(name)?);
        let pack = |name: &str| RowClass::new(packs.getattr(name)?);
        let china_tz = py.import("contract.clock")?.getattr("CHINA_TZ")?;
        let utc = py.import("datetime")?.getattr("UTC")?;
        Ok(Symbols {
            china_tz: china_tz.cast_into::<PyTzInfo>()?.unbind(),
            utc: utc.cast_into::<PyTzInfo>()?.unbind(),
            source_frame: chargers
                .getattr("SOURCE_FRAME")?
                .cast_into::<PyString>()?
                .unbind(),
            progress: PyString::intern(py, "progress").unbind(),
            charger_rows: SlotsClass::new(chargers.getattr("ChargerRows")?, &CHARGER_SLOTS)?,
            telemetry_row: charger("ChargerTelemetryRow")?,
            session_row: charger("ChargingSessionRow")?,
            status_row: charger("ConnectorStatusRow")?,
            fault_row: charger("ChargerFaultRow")?,
            pack_frame_rows: SlotsClass::new(packs.getattr("PackFrameRows")?, &PACK_SLOTS)?,
            pack_telemetry_row: pack("PackTelemetryRow")?,
            pack_alarm_row: pack("PackAlarmRow")?,
        })
    })
}

/// See `py::direct_layouts`.
pub(crate) fn direct_layouts(py: Python<'_>) -> PyResult<Vec<(String, bool)>> {
    let sym = symbols(py)?;
    Ok(vec![
        sym.charger_rows.direct(py),
        sym.telemetry_row.direct(py),
        sym.session_row.direct(py),
        sym.status_row.direct(py),
        sym.fault_row.direct(py),
        sym.pack_frame_rows.direct(py),
        sym.pack_telemetry_row.direct(py),
        sym.pack_alarm_row.direct(py),
    ])
}

/// Python objects made once per call: frame times (datetime + epoch ms, by their 6 bytes),
/// receive times (by ms) and identifiers (by text). Frames of one batch share most of them.
struct Cache<'py, 'a> {
    py: Python<'py>,
    sym: &'py Symbols,
    times: HashMap<[u8; 6], (Bound<'py, PyAny>, Bound<'py, PyAny>)>,
    received: HashMap<i64, Bound<'py, PyAny>>,
    texts: HashMap<&'a str, Bound<'py, PyAny>>,
}

impl<'py, 'a> Cache<'py, 'a> {
    fn new(py: Python<'py>) -> PyResult<Self> {
        Ok(Self {
            py,
            sym: symbols(py)?,
            times: HashMap::new(),
            received: HashMap::new(),
            texts: HashMap::new(),
        })
    }

    /// The aware +08:00 datetime of a frame time and its epoch ms (an int).
    fn time(&mut self, t: &FrameTime) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        if let Some(hit) = self.times.get(&t.raw) {
            return Ok(hit.clone());
        }
        let [yy, mo, dd, hh, mi, ss] = t.raw;
        let tz = self.sym.china_tz.bind(self.py);
        let year = 2000 + i32::from(yy);
        let dt = PyDateTime::new(self.py, year, mo, dd, hh, mi, ss, 0, Some(tz))?.into_any();
        let value = (dt, t.epoch_ms.into_bound_py_any(self.py)?);
        self.times.insert(t.raw, value.clone());
        Ok(value)
    }

    /// `datetime.fromtimestamp(ms / 1000, UTC)`, as the vehicle path makes `received_at`.
    fn received(&mut self, ms: i64) -> PyResult<Bound<'py, PyAny>> {
        if let Some(hit) = self.received.get(&ms) {
            return Ok(hit.clone());
        }
        // i64 ms -> f64 seconds is Python's `ms / 1000` (both correctly rounded).
        let utc = self.sym.utc.bind(self.py);
        let dt = PyDateTime::from_timestamp(self.py, ms as f64 / 1000.0, Some(utc))?.into_any();
        self.received.insert(ms, dt.clone());
        Ok(dt)
    }

    fn text(&mut self, s: &'a str) -> Bound<'py, PyAny> {
        let py = self.py;
        self.texts
            .entry(s)
            .or_insert_with(|| PyString::new(py, s).into_any())
            .clone()
    }

    /// A NamedTuple row of ``cls`` (py_alloc).
    fn row(&self, cls: &RowClass, values: Vec<Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyAny>> {
        cls.make(self.py, values)
    }
}

fn any<'py, T: IntoPyObject<'py>>(py: Python<'py>, v: T) -> PyResult<Bound<'py, PyAny>> {
    v.into_bound_py_any(py)
}

/// The values as bytes objects (a bytearray / memoryview is copied once), kept alive by the
/// caller while their slices are parsed without the GIL.
fn as_bytes<'py>(values: Vec<Bound<'py, PyAny>>) -> PyResult<Vec<Bound<'py, PyBytes>>> {
    values
        .into_iter()
        .map(|v| match v.cast_into::<PyBytes>() {
            Ok(b) => Ok(b),
            Err(e) => {
                let v = e.into_inner();
                let py = v.py();
                let copy = py.import("builtins")?.getattr("bytes")?.call1((v,))?;
                Ok(copy.cast_into::<PyBytes>()?)
            }
        })
        .collect()
}

fn check_lengths(frames: usize, received: usize) -> PyResult<()> {
    if frames != received {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "received_ms has {received} values for {frames} frames: pass one receive time per frame"
        )));
    }
    Ok(())
}

/// Charger frames to `ChargerRows`, `None` where the structured decoder must judge.
#[pyfunction]
fn decode_charger_batch<'py>(
    py: Python<'py>,
    values: Vec<Bound<'py, PyAny>>,
    received_ms: Vec<i64>,
) -> PyResult<Bound<'py, PyList>> {
    check_lengths(values.len(), received_ms.len())?;
    let owned = as_bytes(values)?;
    let slices: Vec<&[u8]> = owned.iter().map(|b| b.as_bytes()).collect();
    let decoded: Vec<Option<ChargerRows<'_>>> =
        py.detach(|| slices.iter().map(|b| charger::decode(b)).collect());
    let mut cache = Cache::new(py)?;
    let out = PyList::empty(py);
    for (rows, &ms) in decoded.iter().zip(&received_ms) {
        match rows {
            Some(rows) => {
                let received_at = cache.received(ms)?;
                out.append(charger_rows(&mut cache, rows, &received_at)?)?;
            }
            None => out.append(py.None())?,
        }
    }
    Ok(out)
}

/// One charger frame to `ChargerRows` (`received_at` as given), or `None`.
#[pyfunction]
fn decode_charger<'py>(
    py: Python<'py>,
    frame: &[u8],
    received_at: Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let Some(rows) = charger::decode(frame) else {
        return Ok(None);
    };
    let mut cache = Cache::new(py)?;
    charger_rows(&mut cache, &rows, &received_at).map(Some)
}

fn charger_rows<'py, 'a>(
    c: &mut Cache<'py, 'a>,
    rows: &ChargerRows<'a>,
    received_at: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = c.py;
    let sym = c.sym;
    let source = sym.source_frame.bind(py).clone().into_any();
    let op = c.text(
        rows.charger_id
            .get(..charger::OPERATOR_ID_SIZE)
            .unwrap_or(""),
    );
    let charger_id = c.text(rows.charger_id);
    let (ts, ts_ms) = c.time(&rows.time)?;
    let statuses = PyList::empty(py);
    for s in &rows.statuses {
        let values = vec![
            op.clone(),
            c.text(s.connector_id),
            ts.clone(),
            any(py, s.status)?,
            any(py, s.park_status)?,
            any(py, s.lock_status)?,
            source.clone(),
        ];
        statuses.append(c.row(&sym.status_row, values)?)?;
    }
    let faults = PyList::empty(py);
    for f in &rows.faults {
        let values = vec![
            op.clone(),
            c.text(f.connector_id),
            ts.clone(),
            charger_id.clone(),
            PyList::new(py, &f.codes)?.into_any(),
            source.clone(),
        ];
        faults.append(c.row(&sym.fault_row, values)?)?;
    }
    let telemetry = PyList::empty(py);
    for t in &rows.telemetry {
        let (o, d) = (&t.output, &t.demand);
        let vin = match d.vin {
            Some(v) => c.text(v),
            None => py.None().into_bound(py),
        };
        let values = vec![
            op.clone(),
            c.text(t.connector_id),
            ts.clone(),
            received_at.clone(),
            charger_id.clone(),
            any(py, o.voltage_v)?,
            any(py, o.current_a)?,
            any(py, o.power_kw)?,
            any(py, o.energy_kwh)?,
            any(py, o.connector_temp_c)?,
            vin,
            any(py, d.soc_pct)?,
            any(py, d.bms_voltage_demand_v)?,
            any(py, d.bms_current_demand_a)?,
            source.clone(),
        ];
        telemetry.append(c.row(&sym.telemetry_row, values)?)?;
    }
    let sessions = PyList::empty(py);
    for s in &rows.sessions {
        let vin = match s.vin {
            Some(v) => c.text(v),
            None => py.None().into_bound(py),
        };
        let values = vec![
            op.clone(),
            c.text(s.connector_id),
            ts.clone(),
            c.text(s.start_charge_seq),
            sym.progress.bind(py).clone().into_any(),
            any(py, s.state)?,
            c.time(&s.start_time)?.0,
            py.None().into_bound(py),
            any(py, s.energy_kwh)?,
            any(py, s.elec_money)?,
            any(py, s.service_money)?,
            any(py, s.total_money)?,
            py.None().into_bound(py),
            vin,
            source.clone(),
        ];
        sessions.append(c.row(&sym.session_row, values)?)?;
    }
    let values = vec![
        op,
        charger_id,
        any(py, rows.command)?,
        any(py, ts_ms)?,
        any(py, 0xFE_u8)?,
        any(py, false)?,
        PyList::empty(py).into_any(),
        statuses.into_any(),
        faults.into_any(),
        telemetry.into_any(),
        sessions.into_any(),
    ];
    sym.charger_rows.make(py, values)
}

/// Pack frames to `PackFrameRows` (`None` where the structured decoder must judge) and the
/// indexes of the frames whose walk stopped early: for those the caller asks the structured
/// decoder whether the frame is partial (setting `partial` / `tail_offset`) or rejected.
#[pyfunction]
fn decode_pack_batch<'py>(
    py: Python<'py>,
    values: Vec<Bound<'py, PyAny>>,
    received_ms: Vec<i64>,
) -> PyResult<(Bound<'py, PyList>, Vec<usize>)> {
    check_lengths(values.len(), received_ms.len())?;
    let owned = as_bytes(values)?;
    let slices: Vec<&[u8]> = owned.iter().map(|b| b.as_bytes()).collect();
    let decoded: Vec<Option<PackRows<'_>>> = py.detach(|| {
        slices
            .iter()
            .map(|b| battery::decode(b, Identity::Check))
            .collect()
    });
    let mut cache = Cache::new(py)?;
    let out = PyList::empty(py);
    let mut stopped = Vec::new();
    for (k, (rows, &ms)) in decoded.iter().zip(&received_ms).enumerate() {
        match rows {
            Some(rows) => {
                if rows.stopped {
                    stopped.push(k);
                }
                let received_at = cache.received(ms)?;
                out.append(pack_rows(&mut cache, rows, &received_at)?)?;
            }
            None => out.append(py.None())?,
        }
    }
    Ok((out, stopped))
}

/// One pack frame to `(PackFrameRows, stopped)`, or `None`. `trusted`: the structured decoder
/// has accepted the header ID and pack code, so they are not checked again.
#[pyfunction]
#[pyo3(signature = (frame, received_at, trusted = false))]
fn decode_pack<'py>(
    py: Python<'py>,
    frame: &[u8],
    received_at: Bound<'py, PyAny>,
    trusted: bool,
) -> PyResult<Option<(Bound<'py, PyAny>, bool)>> {
    let identity = if trusted {
        Identity::Trusted
    } else {
        Identity::Check
    };
    let Some(rows) = battery::decode(frame, identity) else {
        return Ok(None);
    };
    let mut cache = Cache::new(py)?;
    Ok(Some((
        pack_rows(&mut cache, &rows, &received_at)?,
        rows.stopped,
    )))
}

/// `text.decode_text` of a site ID: NUL / space stripped both sides, ASCII, else GB 18030
/// with replacement; `None` when empty (fast.py's `decode_text(...) or None`).
fn site_text<'py>(py: Python<'py>, raw: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let pad = |b: &u8| *b == 0 || *b == b' ';
    let start = raw.iter().position(|b| !pad(b)).unwrap_or(raw.len());
    let stop = raw.iter().rposition(|b| !pad(b)).map_or(start, |k| k + 1);
    let text = &raw[start..stop];
    if text.is_empty() {
        return Ok(py.None().into_bound(py));
    }
    let nul = text.contains(&0);
    if text.is_ascii() && !nul {
        // ASCII is UTF-8.
        return Ok(PyString::new(py, std::str::from_utf8(text).unwrap_or_default()).into_any());
    }
    let decoded =
        PyBytes::new(py, text).call_method1(intern!(py, "decode"), ("gb18030", "replace"))?;
    if !nul {
        return Ok(decoded);
    }
    // A NUL inside (a C string's terminator and what followed it): U+FFFD like any corrupt
    // byte, as `ingest.decoders.text.decode_text` does; PostgreSQL refuses NUL in text.
    decoded.call_method1(intern!(py, "replace"), ("\0", "\u{FFFD}"))
}

fn pack_rows<'py, 'a>(
    c: &mut Cache<'py, 'a>,
    rows: &PackRows<'a>,
    received_at: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = c.py;
    let sym = c.sym;
    let code = c.text(rows.pack_code);
    let (ts, ts_ms) = c.time(&rows.time)?;
    let s = &rows.state;
    let (site_id, slot) = match &rows.site {
        Some(site) => (site_text(py, site.site_id)?, any(py, site.slot)?),
        None => (py.None().into_bound(py), py.None().into_bound(py)),
    };
    let cells = rows.cells.unwrap_or_default();
    let probes = rows.probes.unwrap_or_default();
    let (level, flags, faults) = rows.alarm_summary();
    let values = vec![
        code.clone(),
        ts.clone(),
        received_at.clone(),
        any(py, rows.edition)?,
        any(py, rows.command)?,
        any(py, s.lifecycle_stage)?,
        any(py, s.work_state)?,
        any(py, s.soc_pct)?,
        any(py, s.soh_pct)?,
        any(py, s.cycle_count)?,
        any(py, s.voltage_v)?,
        any(py, s.current_a)?,
        any(py, s.insulation_kohm)?,
        site_id,
        slot,
        any(py, cells.count)?,
        PyBytes::new(py, cells.raw).into_any(),
        any(py, cells.min)?,
        any(py, cells.max)?,
        any(py, probes.count)?,
        PyBytes::new(py, probes.raw).into_any(),
        any(py, probes.min)?,
        any(py, probes.max)?,
        any(py, level)?,
        any(py, flags)?,
        any(py, faults)?,
    ];
    let telemetry = c.row(&sym.pack_telemetry_row, values)?;
    let alarm = match &rows.alarm {
        Some(a) if rows.has_alarm_row() => {
            let codes = a.codes.as_deref().unwrap_or_default();
            let values = vec![
                code.clone(),
                ts.clone(),
                any(py, a.max_level)?,
                any(py, a.flags)?,
                PyList::new(py, codes)?.into_any(),
            ];
            c.row(&sym.pack_alarm_row, values)?
        }
        _ => py.None().into_bound(py),
    };
    let values = vec![
        any(py, rows.edition)?,
        any(py, rows.command)?,
        code,
        any(py, ts_ms)?,
        any(py, false)?,
        any(py, false)?,
        telemetry,
        alarm,
        py.None().into_bound(py),
        any(py, 0xFE_u8)?,
        py.None().into_bound(py),
    ];
    sym.pack_frame_rows.make(py, values)
}
