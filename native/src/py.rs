//! The Python module `nev_native`: one call per batch of Kafka values.
//!
//! `decode_vehicle_batch(values, received_ms, limits=None)` borrows the values' bytes, decodes
//! and encodes every frame with the GIL released (`vehicle::decode`, `vehicle::encode::encode`;
//! a frame over one of `limits`' row counts is neither encoded nor built), then, with
//! the GIL, builds per frame what the rest of the service reads: a `contract.rows.FrameRows`
//! with every slot set (`copy` = the four tables' COPY tuples) and the row NamedTuples, a
//! `FrameError` instance for a rejected frame, or None for a frame the structured decoder must
//! take (`Outcome::Structured`). The typed API is `ingest.decoders.fast.decode_rows_batch`.

use std::collections::HashMap;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDateTime, PyFloat, PyList, PyString, PyTuple, PyTzInfo};
use pyo3::IntoPyObjectExt;

use crate::envelope::{COMMAND_PACKET, ID_OFFSET, ID_SIZE};
use crate::error::{FrameError, BLOCKS_PER_FRAME, CHARGER_BLOCKS_PER_FRAME, FRAME_REASONS};
use crate::py_alloc::{RowClass, SlotsClass};
use crate::time::FrameTime;
use crate::vehicle::encode::encode;
use crate::vehicle::limits::{over_limit, RowLimits};
use crate::vehicle::{self, Alarm, FrameRows, Motor, Outcome, Pack};

/// What the GIL-free phase made of one frame.
enum Native {
    /// The rows and, per table of `COPY_TABLES`, the range of its tuples in that table's buffer.
    Rows(Box<FrameRows>, [Range<usize>; 4]),
    Structured,
    Error(FrameError),
    /// Over a row limit (`vehicle::limits`): its name and the count; no rows, no tuples.
    OverLimit(&'static str, usize),
}

/// `FrameRows`' slots, in the order `Builder::frame` gives their values.
const FRAME_SLOTS: [&str; 15] = [
    "edition",
    "command",
    "vin",
    "ts_ms",
    "encrypted",
    "partial",
    "vehicle",
    "motors",
    "packs",
    "alarm",
    "session",
    "response",
    "tail_offset",
    "signature_missing",
    "copy",
];

/// The classes and constants the objects are built from, fetched once per interpreter.
struct Api {
    frame_rows: SlotsClass,
    vehicle_row: RowClass,
    motor_row: RowClass,
    pack_row: RowClass,
    alarm_row: RowClass,
    frame_error: Py<PyAny>,
    china_tz: Py<PyTzInfo>,
    utc: Py<PyTzInfo>,
    empty: Py<PyBytes>,
}

static API: PyOnceLock<Api> = PyOnceLock::new();

fn api(py: Python<'_>) -> PyResult<&Api> {
    API.get_or_try_init(py, || {
        let rows = py.import("contract.rows")?;
        let clock = py.import("contract.clock")?;
        let errors = py.import("ingest.decoders.errors")?;
        let datetime = py.import("datetime")?;
        Ok::<_, PyErr>(Api {
            frame_rows: SlotsClass::new(rows.getattr("FrameRows")?, &FRAME_SLOTS)?,
            vehicle_row: RowClass::new(rows.getattr("VehicleRow")?)?,
            motor_row: RowClass::new(rows.getattr("MotorRow")?)?,
            pack_row: RowClass::new(rows.getattr("PackRow")?)?,
            alarm_row: RowClass::new(rows.getattr("AlarmRow")?)?,
            frame_error: errors.getattr("FrameError")?.unbind(),
            china_tz: clock.getattr("CHINA_TZ")?.cast_into::<PyTzInfo>()?.unbind(),
            utc: datetime.getattr("UTC")?.cast_into::<PyTzInfo>()?.unbind(),
            empty: PyBytes::new(py, b"").unbind(),
        })
    })
}

/// Decode and encode every frame: the GIL-free phase. A panic (a bug: the fuzz loop's to find)
/// costs only its frame, which then goes to the structured decoder.
fn decode_all(
    values: &[&[u8]],
    received: &[Option<i64>],
    limits: Option<&RowLimits>,
    out: &mut [Vec<u8>; 4],
) -> Vec<Native> {
    values
        .iter()
        .zip(received)
        .map(|(&buf, &received_ms)| {
            let marks = [out[0].len(), out[1].len(), out[2].len(), out[3].len()];
            let done = catch_unwind(AssertUnwindSafe(|| match vehicle::decode(buf) {
                Outcome::Rows(rows) => {
                    if let Some((name, count)) = limits.and_then(|l| over_limit(&rows, buf, l)) {
                        return Native::OverLimit(name, count);
                    }
                    let vin = buf
                        .get(ID_OFFSET..ID_OFFSET + ID_SIZE)
                        .and_then(|raw| std::str::from_utf8(raw).ok());
                    match vin {
                        Some(vin) => {
                            encode(&rows, buf, vin, received_ms, out);
                            let spans = std::array::from_fn(|k| marks[k]..out[k].len());
                            Native::Rows(rows, spans)
                        }
                        // decode checked the VIN: unreachable, but never trusted
                        None => Native::Structured,
                    }
                }
                Outcome::Structured => Native::Structured,
                Outcome::Error(e) => Native::Error(e),
            }));
            done.unwrap_or_else(|_| {
                for (k, buffer) in out.iter_mut().enumerate() {
                    buffer.truncate(marks[k]);
                }
                Native::Structured
            })
        })
        .collect()
}

// Cache bounds: a consumer sees the same vehicles every few seconds, frame times advance by
// the second, gateways stamp many frames with one millisecond. Each cache is cleared
// wholesale when full (a miss costs well under a microsecond).
const VIN_CACHE_MAX: usize = 1 << 16;
const TIME_CACHE_MAX: usize = 1 << 12;
const RECEIVED_CACHE_MAX: usize = 1 << 12;

/// The VIN strings and datetimes of earlier batches, shared so equal values are one object.
#[derive(Default)]
struct Caches {
    vins: HashMap<[u8; ID_SIZE], Py<PyString>>,
    times: HashMap<[u8; 6], Py<PyAny>>,
    received: HashMap<i64, Py<PyAny>>,
}

/// Taken out for the length of a call and put back after it, so the lock is never held
/// while Python runs: a concurrent call just starts with empty caches.
static CACHES: Mutex<Option<Caches>> = Mutex::new(None);

fn take_caches() -> Caches {
    CACHES
        .lock()
        .map(|mut c| c.take().unwrap_or_default())
        .unwrap_or_default()
}

fn put_caches(mut caches: Caches) {
    if caches.vins.len() > VIN_CACHE_MAX {
        caches.vins.clear();
    }
    if caches.times.len() > TIME_CACHE_MAX {
        caches.times.clear();
    }
    if caches.received.len() > RECEIVED_CACHE_MAX {
        caches.received.clear();
    }
    if let Ok(mut c) = CACHES.lock() {
        *c = Some(caches);
    }
}

struct Builder<'py, 'a> {
    py: Python<'py>,
    api: &'a Api,
    caches: Caches,
    none: Bound<'py, PyAny>,
}

fn opt<'py, T>(py: Python<'py>, v: Option<T>) -> PyResult<Bound<'py, PyAny>>
where
    T: IntoPyObjectExt<'py>,
{
    match v {
        Some(x) => x.into_bound_py_any(py),
        None => Ok(py.None().into_bound(py)),
    }
}

fn float<'py>(py: Python<'py>, v: Option<f64>) -> Bound<'py, PyAny> {
    match v {
        Some(x) => PyFloat::new(py, x).into_any(),
        None => py.None().into_bound(py),
    }
}

fn boolean<'py>(py: Python<'py>, v: bool) -> Bound<'py, PyAny> {
    PyBool::new(py, v).to_owned().into_any()
}

impl<'py> Builder<'py, '_> {
    fn vin(&mut self, buf: &[u8]) -> PyResult<Bound<'py, PyString>> {
        let raw: [u8; ID_SIZE] = buf
            .get(ID_OFFSET..ID_OFFSET + ID_SIZE)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| PyValueError::new_err("a decoded frame is shorter than its header"))?;
        if let Some(s) = self.caches.vins.get(&raw) {
            return Ok(s.bind(self.py).clone());
        }
        let s = PyString::new(self.py, &String::from_utf8_lossy(&raw));
        self.caches.vins.insert(raw, s.clone().unbind());
        Ok(s)
    }

    fn time(&mut self, t: &FrameTime) -> PyResult<Bound<'py, PyAny>> {
        if let Some(d) = self.caches.times.get(&t.raw) {
            return Ok(d.bind(self.py).clone());
        }
        let [_, mo, dd, hh, mi, ss] = t.raw;
        let tz = self.api.china_tz.bind(self.py);
        let d = PyDateTime::new(self.py, t.year(), mo, dd, hh, mi, ss, 0, Some(tz))?.into_any();
        self.caches.times.insert(t.raw, d.clone().unbind());
        Ok(d)
    }

    fn received(&mut self, ms: Option<i64>) -> PyResult<Bound<'py, PyAny>> {
        let Some(ms) = ms else {
            return Ok(self.none.clone());
        };
        if let Some(d) = self.caches.received.get(&ms) {
            return Ok(d.bind(self.py).clone());
        }
        // datetime.fromtimestamp(ms / 1000, UTC), exactly what the Python pipeline did
        let utc = self.api.utc.bind(self.py);
        let d = PyDateTime::from_timestamp(self.py, ms as f64 / 1000.0, Some(utc))?.into_any();
        self.caches.received.insert(ms, d.clone().unbind());
        Ok(d)
    }

    fn named(&self, cls: &RowClass, values: Vec<Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyAny>> {
        cls.make(self.py, values)
    }

    fn frame(
        &mut self,
        buf: &[u8],
        rows: &FrameRows,
        received_ms: Option<i64>,
        copy: Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = self.py;
        let vin = self.vin(buf)?.into_any();
        let ts = self.time(&rows.time)?;
        let received = self.received(received_ms)?;
        let vehicle = self.vehicle_row(rows, &vin, &ts, received)?;
        let motors = PyList::empty(py);
        for m in &rows.motors {
            motors.append(self.motor_row(m, &vin, &ts)?)?;
        }
        let packs = PyList::empty(py);
        for p in &rows.packs {
            packs.append(self.pack_row(p, buf, &vin, &ts)?)?;
        }
        let alarm = match rows.alarm.as_ref().filter(|a| a.has_row()) {
            Some(a) => self.alarm_row(a, &vin, &ts)?,
            None => self.none.clone(),
        };
        // FrameRows' keyword __init__ is slower than filling its slots (py_alloc), in the
        // order of FRAME_SLOTS.
        let values = vec![
            rows.edition.into_bound_py_any(py)?,
            rows.command.into_bound_py_any(py)?,
            vin,
            rows.time.epoch_ms.into_bound_py_any(py)?,
            boolean(py, false),
            boolean(py, rows.partial()),
            vehicle,
            motors.into_any(),
            packs.into_any(),
            alarm,
            self.none.clone(),
            COMMAND_PACKET.into_bound_py_any(py)?,
            rows.tail_offset.into_bound_py_any(py)?,
            boolean(py, rows.signature_missing),
            copy.into_any(),
        ];
        self.api.frame_rows.make(py, values)
    }

    fn vehicle_row(
        &self,
        rows: &FrameRows,
        vin: &Bound<'py, PyAny>,
        ts: &Bound<'py, PyAny>,
        received: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = self.py;
        let v = rows.vehicle.unwrap_or_default();
        let p = rows.position.unwrap_or_default();
        let e = rows.extremes.unwrap_or_default();
        let (level, flags, faults) = match &rows.alarm {
            Some(a) => (
                opt(py, a.max_level)?,
                a.general_flags.into_bound_py_any(py)?,
                a.fault_count(),
            ),
            None => (self.none.clone(), self.none.clone(), 0),
        };
        let values = vec![
            vin.clone(),
            ts.clone(),
            received,
            rows.edition.into_bound_py_any(py)?,
            rows.command.into_bound_py_any(py)?,
            opt(py, v.vehicle_state)?,
            opt(py, v.charging_state)?,
            opt(py, v.run_mode)?,
            float(py, v.speed_kmh),
            float(py, v.odometer_km),
            float(py, v.total_voltage_v),
            float(py, v.total_current_a),
            opt(py, v.soc_pct)?,
            opt(py, v.dcdc_state)?,
            opt(py, v.gear)?,
            opt(py, v.insulation_kohm)?,
            opt(py, v.accel_pedal_pct)?,
            opt(py, v.brake_pedal_pct)?,
            opt(py, p.valid)?,
            float(py, p.longitude),
            float(py, p.latitude),
            float(py, e.max_cell_voltage_v),
            opt(py, e.max_cell_voltage_pack)?,
            opt(py, e.max_cell_voltage_cell)?,
            float(py, e.min_cell_voltage_v),
            opt(py, e.min_cell_voltage_pack)?,
            opt(py, e.min_cell_voltage_cell)?,
            opt(py, e.max_temp_c)?,
            opt(py, e.max_temp_pack)?,
            opt(py, e.max_temp_probe)?,
            opt(py, e.min_temp_c)?,
            opt(py, e.min_temp_pack)?,
            opt(py, e.min_temp_probe)?,
            boolean(py, rows.extremes_derived),
            level,
            flags,
            faults.into_bound_py_any(py)?,
            boolean(py, rows.signature_missing),
        ];
        self.named(&self.api.vehicle_row, values)
    }

    fn motor_row(
        &self,
        m: &Motor,
        vin: &Bound<'py, PyAny>,
        ts: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = self.py;
        let values = vec![
            vin.clone(),
            ts.clone(),
            m.seq.into_bound_py_any(py)?,
            opt(py, m.state)?,
            opt(py, m.controller_temp_c)?,
            opt(py, m.speed_rpm)?,
            float(py, m.torque_nm),
            opt(py, m.temp_c)?,
            float(py, m.controller_voltage_v),
            float(py, m.controller_current_a),
        ];
        self.named(&self.api.motor_row, values)
    }

    fn raw(&self, buf: &[u8], range: &Range<usize>) -> Bound<'py, PyAny> {
        match buf.get(range.clone()) {
            Some(s) if !s.is_empty() => PyBytes::new(self.py, s).into_any(),
            _ => self.api.empty.bind(self.py).clone().into_any(),
        }
    }

    fn pack_row(
        &self,
        p: &Pack,
        buf: &[u8],
        vin: &Bound<'py, PyAny>,
        ts: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = self.py;
        let values = vec![
            vin.clone(),
            ts.clone(),
            p.pack.into_bound_py_any(py)?,
            float(py, p.voltage_v),
            float(py, p.current_a),
            opt(py, p.cell_count)?,
            p.first_cell.into_bound_py_any(py)?,
            self.raw(buf, &p.cells),
            self.raw(buf, &p.probes),
            opt(py, p.cell_min_mv)?,
            opt(py, p.cell_max_mv)?,
            opt(py, p.probe_min_c)?,
            opt(py, p.probe_max_c)?,
        ];
        self.named(&self.api.pack_row, values)
    }

    fn alarm_row(
        &self,
        a: &Alarm,
        vin: &Bound<'py, PyAny>,
        ts: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = self.py;
        let bit_levels = match &a.bit_levels {
            Some(levels) => PyList::new(py, levels)?.into_any(),
            None => self.none.clone(),
        };
        let values = vec![
            vin.clone(),
            ts.clone(),
            opt(py, a.max_level)?,
            a.general_flags.into_bound_py_any(py)?,
            PyList::new(py, &a.ress_faults)?.into_any(),
            PyList::new(py, &a.motor_faults)?.into_any(),
            PyList::new(py, &a.engine_faults)?.into_any(),
            PyList::new(py, &a.other_faults)?.into_any(),
            bit_levels,
        ];
        self.named(&self.api.alarm_row, values)
    }
}

/// Decode a batch of vehicle frames (whole frames, start marker through BCC): per value, in
/// order, a `FrameRows` (with `copy`), a `FrameError` instance (not raised), or None for a
/// frame the structured decoder must take. `received_ms[i]` is the gateway receive time of
/// `values[i]` (epoch ms, UTC; None: unknown).
///
/// `limits`: (motors, pack rows, cells, probes, over): a frame over one of these counts
/// (`vehicle::limits`) is not built; its item is `over(limit name, count)` instead (the
/// pipeline's `FrameError` of that limit). None: no limits.
#[pyfunction]
#[pyo3(signature = (values, received_ms, limits=None))]
fn decode_vehicle_batch<'py>(
    py: Python<'py>,
    values: &Bound<'py, PyAny>,
    received_ms: Vec<Option<i64>>,
    limits: Option<(usize, usize, usize, usize, Bound<'py, PyAny>)>,
) -> PyResult<Bound<'py, PyList>> {
    let api = api(py)?;
    // Holding the bytes objects keeps the borrowed slices alive while the GIL is released.
    let mut held: Vec<Bound<'py, PyBytes>> = Vec::with_capacity(received_ms.len());
    for v in values.try_iter()? {
        let v = v?;
        let b = v.cast_into::<PyBytes>().map_err(|e| {
            PyTypeError::new_err(format!(
                "decode_vehicle_batch takes bytes values, got {}: convert with bytes(value)",
                e.into_inner()
                    .get_type()
                    .name()
                    .map_or("?".into(), |n| n.to_string())
            ))
        })?;
        held.push(b);
    }
    if held.len() != received_ms.len() {
        return Err(PyValueError::new_err(format!(
            "{} values but {} received_ms: pass one receive time per value",
            held.len(),
            received_ms.len()
        )));
    }
    let slices: Vec<&[u8]> = held.iter().map(|b| b.as_bytes()).collect();
    let mut tables: [Vec<u8>; 4] = Default::default();
    // The counts for the GIL-free phase, and the function that makes the error of a frame over
    // one: one Option, so a frame over a limit always has its maker.
    let limits = limits.map(|(motors, pack_rows, cells, probes, over)| {
        let counts = RowLimits {
            motors,
            pack_rows,
            cells,
            probes,
        };
        (counts, over)
    });
    let counts = limits.as_ref().map(|(counts, _)| *counts);
    let decoded = py.detach(|| decode_all(&slices, &received_ms, counts.as_ref(), &mut tables));
    let mut builder = Builder {
        py,
        api,
        caches: take_caches(),
        none: py.None().into_bound(py),
    };
    let out = PyList::empty(py);
    for ((native, buf), &received) in decoded.into_iter().zip(&slices).zip(&received_ms) {
        let item = match native {
            Native::Rows(rows, spans) => {
                let copy: Vec<Bound<'py, PyAny>> = spans
                    .iter()
                    .zip(&tables)
                    .map(|(span, table)| builder.raw(table, span))
                    .collect();
                let copy = PyTuple::new(py, copy)?;
                builder.frame(buf, &rows, received, copy)?
            }
            Native::Structured => builder.none.clone(),
            Native::Error(e) => api
                .frame_error
                .bind(py)
                .call1((e.reason, e.offset, e.detail))?,
            Native::OverLimit(name, count) => {
                let over = limits.as_ref().map(|(_, over)| over);
                let error = over.map(|f| f.call1((name, count))).transpose()?;
                // Anything but a FrameError in a frame's place would pass as no data at all.
                match error {
                    Some(e) if e.is_instance(api.frame_error.bind(py))? => e,
                    _ => {
                        return Err(PyTypeError::new_err(format!(
                            "limits' error maker gave no FrameError for {name} ({count})"
                        )))
                    }
                }
            }
        };
        out.append(item)?;
    }
    put_caches(builder.caches);
    Ok(out)
}

/// Per contract class the decoders build, whether its instances are allocated and filled
/// directly (py_alloc) or through Python calls because its layout did not pass the checks;
/// tests/unit/test_native_layouts.py pins them all to direct.
#[pyfunction]
fn direct_layouts(py: Python<'_>) -> PyResult<Vec<(String, bool)>> {
    let api = api(py)?;
    let mut out = vec![
        api.frame_rows.direct(py),
        api.vehicle_row.direct(py),
        api.motor_row.direct(py),
        api.pack_row.direct(py),
        api.alarm_row.direct(py),
    ];
    out.extend(crate::py_kinds::direct_layouts(py)?);
    Ok(out)
}

#[pymodule]
fn nev_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // Pinned to ingest.decoders.errors.FRAME_REASONS and realtime.BLOCKS_PER_FRAME by
    // tests/unit/test_limits.py.
    m.add("FRAME_REASONS", FRAME_REASONS.to_vec())?;
    m.add("BLOCKS_PER_FRAME", BLOCKS_PER_FRAME)?;
    m.add("CHARGER_BLOCKS_PER_FRAME", CHARGER_BLOCKS_PER_FRAME)?;
    m.add_function(wrap_pyfunction!(decode_vehicle_batch, m)?)?;
    m.add_function(wrap_pyfunction!(direct_layouts, m)?)?;
    m.add_function(wrap_pyfunction!(crate::framer::py::frame_spans, m)?)?;
    crate::py_kinds::register(m)?;
    crate::py_json::register(m)?;
    crate::py_sig::register(m)?;
    crate::py_rules::register(m)?;
    Ok(())
}
