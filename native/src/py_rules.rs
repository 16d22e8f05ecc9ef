//! `nev_native.RuleRunner`: the rule engine's per-frame hot loop (`alerts/fastpath.py`'s
//! generated `run`) over the conditions of `rules.rs`, one native call per frame.
//!
//! Built once per (plan, scope, edition) from a compact spec (`alerts/kinds_native.py`), the
//! runner is itself the `Runner` callable, `run(apply, ent, vals, t, vin)`: it reads
//! `ent.slots` (an `array('d')`, through the buffer protocol, written in place) and
//! `ent.active`, judges rule after rule, and calls `apply(ent, cr, c, vals, t, vin)` exactly
//! where the generated loop does (a HOLD, or a CLEAR of a rule that is active or pending),
//! then reads `ent.active` and the slots again: `apply` changes them, and later rules
//! (composites) read them. A HOLD first writes the rule's Python scratch cell, so
//! `cr.value(vals)` answers what the Python closure would have left there.

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyFloat, PyInt, PyList, PyTuple};

use crate::rules::{Cond, Fail, Frame, Guard, Kind, Op, Val, CLEAR, HOLD};

/// Adds `RuleRunner` to the `nev_native` module (one line in py.rs).
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RuleRunner>()?;
    Ok(())
}

/// An int within +-2^53 converts to f64 exactly: compared as f64 it is what Python's exact
/// int/float comparison answers.
const EXACT: i64 = 1 << 53;

static ROUND: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

struct NRule {
    cond: Cond,
    bit: u64,
    pend: Option<usize>,
    cr: Py<PyAny>,
    scratch: Option<Py<PyList>>,
}

/// One spec item: (kind code, bit, pending slot or -1, CRule, scratch list or None,
/// guards as (position, op code, value), the kind's ints, the kind's floats).
type Spec<'py> = (
    i64,
    u64,
    i64,
    Bound<'py, PyAny>,
    Option<Bound<'py, PyList>>,
    Vec<(usize, i64, f64)>,
    Vec<i64>,
    Vec<f64>,
);

#[pyclass(frozen, module = "nev_native")]
pub struct RuleRunner {
    rules: Vec<NRule>,
    /// The state slots and extracted values the rules need at least.
    nslots: usize,
    nfields: usize,
}

fn bad(msg: String) -> PyErr {
    PyValueError::new_err(format!("RuleRunner spec: {msg}"))
}

fn op(code: i64) -> PyResult<Op> {
    Op::from_code(code).ok_or_else(|| bad(format!("unknown op code {code}")))
}

fn idx(x: i64) -> PyResult<usize> {
    usize::try_from(x).map_err(|_| bad(format!("negative position {x}")))
}

fn slot(x: i64) -> Option<usize> {
    usize::try_from(x).ok()
}

fn kind(code: i64, ints: &[i64], fl: &[f64]) -> PyResult<Kind> {
    let want = |ni: usize, nf: usize| {
        if ints.len() < ni || fl.len() != nf {
            Err(bad(format!(
                "kind {code} takes {ni} ints and {nf} floats, got {} and {}",
                ints.len(),
                fl.len()
            )))
        } else {
            Ok(())
        }
    };
    Ok(match code {
        0 => {
            want(3, 3)?;
            Kind::Threshold {
                i: idx(ints[0])?,
                above: ints[1] != 0,
                strict: ints[2] != 0,
                thr: fl[0],
                clr: fl[1],
                hyst: fl[2],
            }
        }
        1 => {
            want(2, 1)?;
            Kind::Equal {
                i: idx(ints[0])?,
                op: op(ints[1])?,
                thr: fl[0],
            }
        }
        2 => {
            want(2, 3)?;
            Kind::Insulation {
                i_r: idx(ints[0])?,
                i_u: idx(ints[1])?,
                thr: fl[0],
                clr: fl[1],
                min_v: fl[2],
            }
        }
        3 => {
            want(7, 0)?;
            Kind::FlagLevel {
                i_ed: idx(ints[0])?,
                i_f: idx(ints[1])?,
                i_l: idx(ints[2])?,
                mask25: ints[3],
                mask16: ints[4],
                lvl_min: (ints[5] != 0).then_some(ints[6] as f64),
            }
        }
        4 => {
            want(6, 0)?;
            Kind::FlagEdge {
                i_ed: idx(ints[0])?,
                i_f: idx(ints[1])?,
                base: idx(ints[2])?,
                mask25: ints[3],
                mask16: ints[4],
                on: ints[5] != 0,
            }
        }
        5 => {
            want(2, 4)?;
            Kind::Rate {
                i: idx(ints[0])?,
                b: idx(ints[1])?,
                sign: fl[0],
                rate: fl[1],
                sustain_ms: fl[2],
                gap_ms: fl[3],
            }
        }
        6 => {
            want(5, 2)?;
            Kind::Step {
                i: idx(ints[0])?,
                b: idx(ints[1])?,
                down: ints[2] != 0,
                up: ints[3] != 0,
                relative: ints[4] != 0,
                fires_over: fl[0],
                gap_ms: fl[1],
            }
        }
        7 => {
            want(5, 4)?;
            Kind::Windowed {
                i: idx(ints[0])?,
                b: idx(ints[1])?,
                down: ints[2] != 0,
                relative: ints[3] != 0,
                cap: idx(ints[4])?,
                fires_over: fl[0],
                win_ms: fl[1],
                gap_ms: fl[2],
                width_ms: fl[3],
            }
        }
        8 => {
            // need_all, then (bit, last-held slot or -1) per sub-rule
            want(1, 1)?;
            if ints.len() % 2 != 1 {
                return Err(bad(
                    "a composite's ints are need_all, then bit/slot pairs".into()
                ));
            }
            let pairs = ints[1..]
                .chunks(2)
                .map(|p| (p[0] as u64, slot(p[1])))
                .collect();
            Kind::Composite {
                pairs,
                win_ms: fl[0],
                need_all: ints[0] != 0,
            }
        }
        9 => {
            want(4, 4)?;
            Kind::Ratio {
                i_num: idx(ints[0])?,
                i_per: idx(ints[1])?,
                b: idx(ints[2])?,
                op: op(ints[3])?,
                scale: fl[0],
                limit: fl[1],
                min_per: fl[2],
                gap_ms: fl[3],
            }
        }
        10 => {
            want(2, 1)?;
            Kind::Flip {
                i: idx(ints[0])?,
                b: idx(ints[1])?,
                win_ms: fl[0],
            }
        }
        _ => return Err(bad(format!("unknown kind code {code}"))),
    })
}

/// The frame's values (a tuple, its length checked once per call) and Python's `round`.
struct PyFrame<'a, 'py> {
    vals: &'a Bound<'py, PyTuple>,
    round: &'a Bound<'py, PyAny>,
}

impl Frame for PyFrame<'_, '_> {
    type Error = PyErr;

    #[inline]
    fn get(&mut self, i: usize) -> PyResult<Val> {
        let item = self.vals.get_borrowed_item(i)?;
        if item.is_none() {
            return Ok(Val::Null);
        }
        if let Ok(x) = item.cast::<PyFloat>() {
            return Ok(Val::Float(x.value()));
        }
        if let Ok(n) = item.cast::<PyInt>() {
            // bool is an int: True is 1
            // The message shows the value as Rust formats it, not its repr(): an int subclass's
            // __repr__ is Python code, and the rule's slots slice is live here.
            let shown = match n.extract::<i64>() {
                Ok(v) if (-EXACT..=EXACT).contains(&v) => return Ok(Val::Int(v)),
                Ok(v) => v.to_string(),
                Err(_) => "beyond 64 bits".to_owned(),
            };
            return Err(PyTypeError::new_err(format!(
                "rule value #{i} is the int {shown}, beyond +-2**53: the native rules compare \
                 ints as doubles, exact only within that; scale the field down in its \
                 extractor (alerts/fields.py), or force the Python runner"
            )));
        }
        // The type's name only, never the value's repr(): this runs while the rule's slots
        // slice is live, and a value's __repr__ is Python code that could write them.
        Err(PyTypeError::new_err(format!(
            "rule value #{i} is of type {}, not None, int or float: a rule reads numbers only \
             (alerts/fields.py builds them)",
            item.get_type().name()?,
        )))
    }

    fn round3(&mut self, x: f64) -> PyResult<f64> {
        self.round.call1((x, 3))?.extract()
    }

    fn fail(&mut self, why: Fail) -> PyErr {
        match why {
            Fail::FlagsNotInt => PyTypeError::new_err(
                "a flag rule read general_flags as a float: its bits are an int (alerts/fields.py)",
            ),
            Fail::FlagsNotFinite => PyValueError::new_err(
                "a flag edge rule read general_flags as a float that is no finite int64",
            ),
        }
    }
}

/// `e`, tagged with the rule whose condition raised it (`nev_rule`: alerts/failure.py). An
/// error that takes no attribute goes as it is: the rule is then unknown.
fn blame(py: Python<'_>, e: PyErr, rule: &NRule) -> PyErr {
    let _ = e
        .value(py)
        .setattr(intern!(py, "nev_rule"), rule.cr.bind(py));
    e
}

fn read_active(ent: &Bound<'_, PyAny>) -> PyResult<u64> {
    ent.getattr(intern!(ent.py(), "active"))?
        .extract::<u64>()
        .map_err(|_| {
            PyTypeError::new_err(
                "ent.active is no int within 0..2**64: the native rule runner serves plans of at \
                 most 64 rules (alerts.kinds_native)",
            )
        })
}

/// The entity's state array, writable doubles, at least `nslots` of them; None for a plan
/// without state (an empty array's buffer may have no aligned pointer at all).
fn read_slots(ent: &Bound<'_, PyAny>, nslots: usize) -> PyResult<Option<PyBuffer<f64>>> {
    if nslots == 0 {
        return Ok(None);
    }
    let obj = ent.getattr(intern!(ent.py(), "slots"))?;
    let buf = PyBuffer::<f64>::get(&obj)?;
    if buf.readonly() || !buf.is_c_contiguous() || buf.item_count() < nslots {
        return Err(PyTypeError::new_err(format!(
            "ent.slots must be a writable array('d') of at least {nslots} slots (the plan's \
             template), got {} of {}",
            obj.get_type().name()?,
            buf.item_count()
        )));
    }
    Ok(Some(buf))
}

/// The frame time as the closures see it: `t - pt` of an int and a float is the int converted.
fn time_of(t: &Bound<'_, PyAny>) -> PyResult<f64> {
    if let Ok(x) = t.cast::<PyFloat>() {
        return Ok(x.value());
    }
    match t.extract::<i64>() {
        Ok(v) if (-EXACT..=EXACT).contains(&v) => Ok(v as f64),
        _ => Err(PyTypeError::new_err(format!(
            "a frame time must be an int within +-2**53 (epoch ms) or a float, got {:.60}",
            t.repr()?.to_string()
        ))),
    }
}

#[pymethods]
impl RuleRunner {
    /// `spec`: one item per rule in evaluation order (see `Spec`); `nslots`: the plan's state
    /// slots; `nfields`: the values its extractor gives.
    #[new]
    fn new(spec: Vec<Spec<'_>>, nslots: usize, nfields: usize) -> PyResult<Self> {
        let mut rules = Vec::with_capacity(spec.len());
        for (code, bit, pend, cr, scratch, guards, ints, floats) in spec {
            let guards = guards
                .into_iter()
                .map(|(i, code, value)| {
                    Ok(Guard {
                        i,
                        op: op(code)?,
                        value,
                    })
                })
                .collect::<PyResult<Vec<_>>>()?;
            let cond = Cond {
                kind: kind(code, &ints, &floats)?,
                guards,
            };
            let pend = slot(pend);
            let top_slot = cond.kind.max_slot().max(pend);
            let top_field = cond
                .kind
                .max_field()
                .max(cond.guards.iter().map(|g| g.i).max());
            if top_slot.is_some_and(|s| s >= nslots) || top_field.is_some_and(|f| f >= nfields) {
                return Err(bad(format!(
                    "a rule reads slot {top_slot:?} / value {top_field:?}, beyond the plan's \
                     {nslots} slots / {nfields} values"
                )));
            }
            rules.push(NRule {
                cond,
                bit,
                pend,
                cr: cr.unbind(),
                scratch: scratch.map(Bound::unbind),
            });
        }
        Ok(RuleRunner {
            rules,
            nslots,
            nfields,
        })
    }

    /// `run(apply, ent, vals, t, vin)`: every rule over one in-order frame.
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        apply: &Bound<'py, PyAny>,
        ent: &Bound<'py, PyAny>,
        vals: &Bound<'py, PyTuple>,
        t: &Bound<'py, PyAny>,
        vin: &Bound<'py, PyAny>,
    ) -> PyResult<()> {
        if self.rules.is_empty() {
            return Ok(());
        }
        if vals.len() < self.nfields {
            return Err(PyValueError::new_err(format!(
                "{} values for a plan that reads {}: vals must come from the plan's extractor",
                vals.len(),
                self.nfields
            )));
        }
        let round = ROUND.get_or_try_init(py, || {
            PyResult::Ok(py.import("builtins")?.getattr("round")?.unbind())
        })?;
        let mut frame = PyFrame {
            vals,
            round: round.bind(py),
        };
        let tf = time_of(t)?;
        let mut active = read_active(ent)?;
        let mut buf = read_slots(ent, self.nslots)?;
        for rule in &self.rules {
            let (verdict, busy) = {
                // SAFETY: a writable, C-contiguous buffer of item_count doubles, exported (so
                // not resized) while `buf` lives; no Python code runs that could write it while
                // this slice lives (only `round`, on floats; an error names a value's type,
                // never calls its __repr__).
                let st: &mut [f64] = match &buf {
                    Some(buf) => unsafe {
                        std::slice::from_raw_parts_mut(
                            buf.buf_ptr().cast::<f64>(),
                            buf.item_count(),
                        )
                    },
                    None => &mut [],
                };
                let verdict = rule.cond.eval(&mut frame, st, tf, active);
                let busy = active & rule.bit != 0 || rule.pend.is_some_and(|p| !st[p].is_nan());
                (verdict, busy)
            };
            // Outside the slice's scope: the engine's safety net reads which rule raised from
            // the error (alerts/failure.py), on the error path only.
            let verdict = verdict.map_err(|e| blame(py, e, rule))?;
            let c = verdict.c;
            if c == HOLD || (c == CLEAR && busy) {
                if c == HOLD {
                    if let (Some(list), Some(x)) = (&rule.scratch, verdict.scratch) {
                        list.bind(py).set_item(0, x)?;
                    }
                }
                drop(buf); // no export while Python code runs
                apply.call1((ent, rule.cr.bind(py), c, vals, t, vin))?;
                active = read_active(ent)?;
                buf = read_slots(ent, self.nslots)?;
            }
        }
        Ok(())
    }

    /// The number of rules (for tests and the plan's repr).
    fn __len__(&self) -> usize {
        self.rules.len()
    }
}
