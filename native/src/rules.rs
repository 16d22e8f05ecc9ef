//! The rule engine's per-frame conditions (`alerts/kinds.py`, `alerts/kinds_session.py`) in
//! Rust: one verdict per rule and frame, over the frame's extracted values and the entity's
//! state slots. Pure: no Python; the binding (`py_rules.rs`, feature `python`) reads the values
//! and calls Python's `round` through [`Frame`].
//!
//! Every kind is the Python closure of the same name, line for line: the same float
//! operations in the same order (so the same roundings), NaN as "unknown" with Python's
//! comparison semantics (every comparison with NaN is false, `!=` true), the same slot writes.
//! The Python closures stay the reference (the late path, the differential test
//! tests/unit/test_rules_native.py): change both or neither.

/// The verdicts of `alerts.kinds`.
pub const HOLD: i8 = 1;
pub const CLEAR: i8 = 0;
pub const NEUTRAL: i8 = -1;

/// One extracted value as Python holds it: `None`, an `int` (bool included) or a `float`.
/// The reader gives `Int` only within +-2^53, where it converts to f64 exactly, so comparing
/// it as f64 is what Python's exact int/float comparison answers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Val {
    Null,
    Int(i64),
    Float(f64),
}

impl Val {
    pub fn num(self) -> Option<f64> {
        match self {
            Val::Null => None,
            Val::Int(i) => Some(i as f64),
            Val::Float(x) => Some(x),
        }
    }
}

/// What Python would raise where the Rust arithmetic would go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fail {
    /// `float & int`: a flag level rule over a float `general_flags`.
    FlagsNotInt,
    /// A flag edge rule over a float `general_flags` that is not finite (`int(nan)` raises) or
    /// beyond +-2^63 (where Python's int would still take its low bits: no decoder gives one).
    FlagsNotFinite,
}

/// The frame being judged: its values by extracted position, and Python's `round(x, 3)`.
pub trait Frame {
    type Error;
    fn get(&mut self, i: usize) -> Result<Val, Self::Error>;
    fn round3(&mut self, x: f64) -> Result<f64, Self::Error>;
    fn fail(&mut self, why: Fail) -> Self::Error;
}

/// `alerts.kinds.OPS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
    Ne,
}

impl Op {
    pub fn from_code(code: i64) -> Option<Op> {
        Some(match code {
            0 => Op::Ge,
            1 => Op::Gt,
            2 => Op::Le,
            3 => Op::Lt,
            4 => Op::Eq,
            5 => Op::Ne,
            _ => return None,
        })
    }

    #[inline]
    fn test(self, x: f64, y: f64) -> bool {
        match self {
            Op::Ge => x >= y,
            Op::Gt => x > y,
            Op::Le => x <= y,
            Op::Lt => x < y,
            Op::Eq => x == y,
            Op::Ne => x != y,
        }
    }
}

/// A rule kind with its constants, as `alerts.kinds.compile_condition` computes them.
#[derive(Clone, Debug)]
pub enum Kind {
    /// `_threshold` with `>=` / `>` (`above`) or `<=` / `<`; `clr` = thr -/+ hysteresis.
    Threshold {
        i: usize,
        above: bool,
        strict: bool,
        thr: f64,
        clr: f64,
        hyst: f64,
    },
    /// `_threshold` with `==` / `!=`.
    Equal {
        i: usize,
        op: Op,
        thr: f64,
    },
    Insulation {
        i_r: usize,
        i_u: usize,
        thr: f64,
        clr: f64,
        min_v: f64,
    },
    FlagLevel {
        i_ed: usize,
        i_f: usize,
        i_l: usize,
        mask25: i64,
        mask16: i64,
        lvl_min: Option<f64>,
    },
    FlagEdge {
        i_ed: usize,
        i_f: usize,
        base: usize,
        mask25: i64,
        mask16: i64,
        on: bool,
    },
    Rate {
        i: usize,
        b: usize,
        sign: f64,
        rate: f64,
        sustain_ms: f64,
        gap_ms: f64,
    },
    /// `_step`'s consecutive form (`window_s == 0`).
    Step {
        i: usize,
        b: usize,
        down: bool,
        up: bool,
        relative: bool,
        fires_over: f64,
        gap_ms: f64,
    },
    /// `_windowed`.
    Windowed {
        i: usize,
        b: usize,
        down: bool,
        relative: bool,
        fires_over: f64,
        win_ms: f64,
        gap_ms: f64,
        width_ms: f64,
        cap: usize,
    },
    /// `_composite`: (bit, last-held slot) per sub-rule, the slot None unless windowed.
    Composite {
        pairs: Vec<(u64, Option<usize>)>,
        win_ms: f64,
        need_all: bool,
    },
    Ratio {
        i_num: usize,
        i_per: usize,
        b: usize,
        scale: f64,
        limit: f64,
        /// `>=` `>` `<=` `<` (the loader's): `>` and `<` strict, as a threshold's.
        op: Op,
        min_per: f64,
        gap_ms: f64,
    },
    Flip {
        i: usize,
        b: usize,
        win_ms: f64,
    },
}

/// A guard of `_guarded`: `field op value`, else NEUTRAL.
#[derive(Clone, Copy, Debug)]
pub struct Guard {
    pub i: usize,
    pub op: Op,
    pub value: f64,
}

/// One rule's condition: its kind and guards.
#[derive(Clone, Debug)]
pub struct Cond {
    pub kind: Kind,
    pub guards: Vec<Guard>,
}

/// The verdict and, when Python's closure wrote its scratch cell on that path, the value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Verdict {
    pub c: i8,
    pub scratch: Option<f64>,
}

const NAN: f64 = f64::NAN;

#[inline]
fn v(c: i8) -> Verdict {
    Verdict { c, scratch: None }
}

/// Python's `float // float` (CPython `float_floor_div`, `_float_div_mod`): not `floor(a / b)`,
/// which can differ by one where `a / b` rounds up to a whole number.
pub fn py_floordiv(vx: f64, wx: f64) -> f64 {
    let m = vx % wx; // C fmod
    let mut div = (vx - m) / wx;
    if m != 0.0 && ((wx < 0.0) != (m < 0.0)) {
        div -= 1.0;
    }
    if div != 0.0 {
        let mut floordiv = div.floor();
        if div - floordiv > 0.5 {
            floordiv += 1.0;
        }
        floordiv
    } else {
        0.0f64.copysign(vx / wx)
    }
}

impl Cond {
    /// The rule's verdict on the frame at `t` (ms), mutating `slots` as the closure does.
    /// `slots` must hold every slot the rule names (the binding checks the length once).
    pub fn eval<F: Frame>(
        &self,
        f: &mut F,
        slots: &mut [f64],
        t: f64,
        active: u64,
    ) -> Result<Verdict, F::Error> {
        for g in &self.guards {
            match f.get(g.i)?.num() {
                Some(x) if g.op.test(x, g.value) => {}
                _ => return Ok(v(NEUTRAL)),
            }
        }
        eval_kind(&self.kind, f, slots, t, active)
    }
}

fn eval_kind<F: Frame>(
    kind: &Kind,
    f: &mut F,
    st: &mut [f64],
    t: f64,
    active: u64,
) -> Result<Verdict, F::Error> {
    match *kind {
        Kind::Threshold {
            i,
            above,
            strict,
            thr,
            clr,
            hyst,
        } => {
            let Some(x) = f.get(i)?.num() else {
                return Ok(v(NEUTRAL));
            };
            let (holds, beyond) = if above {
                (x > thr || (x == thr && !strict), x < clr)
            } else {
                (x < thr || (x == thr && !strict), x > clr)
            };
            Ok(v(if holds {
                HOLD
            } else if beyond || hyst == 0.0 {
                CLEAR
            } else {
                NEUTRAL
            }))
        }
        Kind::Equal { i, op, thr } => Ok(v(match f.get(i)?.num() {
            None => NEUTRAL,
            Some(x) if op.test(x, thr) => HOLD,
            Some(_) => CLEAR,
        })),
        Kind::Insulation {
            i_r,
            i_u,
            thr,
            clr,
            min_v,
        } => {
            let r = f.get(i_r)?.num();
            let u = f.get(i_u)?.num();
            let (Some(r), Some(u)) = (r, u) else {
                return Ok(v(NEUTRAL));
            };
            // At or below 0 V too, whatever min_voltage_v says: no division by zero.
            if u < min_v || u <= 0.0 {
                return Ok(v(NEUTRAL));
            }
            let x = r * 1000.0 / u;
            let c = if x < thr {
                HOLD
            } else if x >= clr {
                CLEAR
            } else {
                NEUTRAL
            };
            Ok(Verdict {
                c,
                scratch: Some(x),
            })
        }
        Kind::FlagLevel {
            i_ed,
            i_f,
            i_l,
            mask25,
            mask16,
            lvl_min,
        } => {
            let fv = f.get(i_f)?;
            let lvl = f.get(i_l)?.num();
            if mask25 != 0 && fv != Val::Null {
                let Val::Int(bits) = fv else {
                    return Err(f.fail(Fail::FlagsNotInt));
                };
                let mask = if f.get(i_ed)?.num() == Some(2025.0) {
                    mask25
                } else {
                    mask16
                };
                if bits & mask != 0 {
                    return Ok(v(HOLD));
                }
            }
            if let (Some(m), Some(l)) = (lvl_min, lvl) {
                if l >= m {
                    return Ok(v(HOLD));
                }
            }
            // Clear only when every part of the condition is known (alerts.kinds._flag).
            if (mask25 == 0 || fv != Val::Null) && (lvl_min.is_none() || lvl.is_some()) {
                return Ok(v(CLEAR));
            }
            Ok(v(NEUTRAL))
        }
        Kind::FlagEdge {
            i_ed,
            i_f,
            base,
            mask25,
            mask16,
            on,
        } => {
            let bits = match f.get(i_f)? {
                Val::Null => return Ok(v(NEUTRAL)),
                Val::Int(b) => b,
                // int(float): truncation; Python raises on NaN and infinities.
                Val::Float(x) if x.is_finite() && x.abs() < 9.2e18 => x.trunc() as i64,
                Val::Float(_) => return Err(f.fail(Fail::FlagsNotFinite)),
            };
            let mask = if f.get(i_ed)?.num() == Some(2025.0) {
                mask25
            } else {
                mask16
            };
            let cur = bits & mask;
            let prev = st[base];
            st[base] = cur as f64;
            if prev.is_nan() {
                return Ok(v(NEUTRAL)); // first frame seen: no edge can be told
            }
            let prev = prev as i64;
            let changed = if on { cur & !prev } else { prev & !cur };
            Ok(v(if changed != 0 { HOLD } else { CLEAR }))
        }
        Kind::Rate {
            i,
            b,
            sign,
            rate,
            sustain_ms,
            gap_ms,
        } => {
            let Some(x) = f.get(i)?.num() else {
                return Ok(v(NEUTRAL));
            };
            let pt = st[b + 2];
            if !pt.is_nan() {
                let dt = t - pt;
                if 0.0 < dt && dt <= gap_ms {
                    if (x - st[b + 3]) * sign * 1000.0 >= rate * dt {
                        if st[b].is_nan() {
                            st[b] = pt;
                            st[b + 1] = st[b + 3];
                        }
                    } else {
                        st[b] = NAN;
                    }
                } else if dt == 0.0 {
                    return Ok(v(NEUTRAL)); // the previous frame's millisecond: cannot tell
                } else {
                    st[b] = NAN;
                }
            }
            st[b + 2] = t;
            st[b + 3] = x;
            let start = st[b];
            if start.is_nan() {
                return Ok(v(if pt.is_nan() { NEUTRAL } else { CLEAR }));
            }
            if t - start > sustain_ms {
                let r = f.round3((x - st[b + 1]) * 1000.0 / (t - start))?;
                return Ok(Verdict {
                    c: HOLD,
                    scratch: Some(r),
                });
            }
            Ok(v(NEUTRAL))
        }
        Kind::Step {
            i,
            b,
            down,
            up,
            relative,
            fires_over,
            gap_ms,
        } => {
            let Some(x) = f.get(i)?.num() else {
                return Ok(v(NEUTRAL));
            };
            let pt = st[b];
            let pv = st[b + 1];
            st[b] = t;
            st[b + 1] = x;
            if pt.is_nan() || !(0.0 < t - pt && t - pt <= gap_ms) {
                return Ok(v(NEUTRAL));
            }
            let mut d = if down || !(up || x >= pv) {
                pv - x
            } else {
                x - pv
            };
            if relative {
                d = if pv > 0.0 { d * 100.0 / pv } else { 0.0 };
            }
            step_verdict(f, d, fires_over)
        }
        Kind::Windowed {
            i,
            b,
            down,
            relative,
            fires_over,
            win_ms,
            gap_ms,
            width_ms,
            cap,
        } => {
            let Some(x) = f.get(i)?.num() else {
                return Ok(v(NEUTRAL));
            };
            windowed(
                f, st, t, x, b, down, relative, fires_over, win_ms, gap_ms, width_ms, cap,
            )
        }
        Kind::Composite {
            ref pairs,
            win_ms,
            need_all,
        } => {
            for &(bit, lt) in pairs {
                let ok = active & bit != 0 || lt.is_some_and(|lt| t - st[lt] <= win_ms);
                if ok != need_all {
                    return Ok(v(if ok { HOLD } else { CLEAR }));
                }
            }
            Ok(v(if need_all { HOLD } else { CLEAR }))
        }
        Kind::Ratio {
            i_num,
            i_per,
            b,
            scale,
            limit,
            op,
            min_per,
            gap_ms,
        } => {
            let n = f.get(i_num)?.num();
            let d = f.get(i_per)?.num();
            let (Some(n), Some(d)) = (n, d) else {
                return Ok(v(NEUTRAL));
            };
            let pt = st[b + 3];
            if pt.is_nan() || !(0.0 < t - pt && t - pt <= gap_ms) || n < st[b + 4] {
                if t == pt {
                    return Ok(v(NEUTRAL)); // the previous frame's millisecond
                }
                st[b + 3] = t;
                st[b + 4] = n;
                let had_run = !st[b].is_nan();
                st[b] = t;
                st[b + 1] = n;
                st[b + 2] = d;
                return Ok(v(if had_run { CLEAR } else { NEUTRAL }));
            }
            st[b + 3] = t;
            st[b + 4] = n;
            let dd = d - st[b + 2];
            if dd < min_per || dd <= 0.0 {
                return Ok(v(NEUTRAL)); // dd > 0 past here, whatever min_per says
            }
            let x = f.round3(scale * (n - st[b + 1]) / dd)?;
            Ok(Verdict {
                c: if op.test(x, limit) { HOLD } else { CLEAR },
                scratch: Some(x),
            })
        }
        Kind::Flip { i, b, win_ms } => {
            let Some(x) = f.get(i)?.num() else {
                return Ok(v(NEUTRAL));
            };
            let cur = st[b];
            if cur.is_nan() {
                st[b] = x;
                st[b + 1] = t;
                return Ok(v(NEUTRAL));
            }
            if x == cur {
                st[b + 1] = t;
                return Ok(v(if t - st[b + 3] <= win_ms {
                    NEUTRAL
                } else {
                    CLEAR
                }));
            }
            let back = x == st[b + 2] && t - st[b + 3] <= win_ms;
            let scratch = if back {
                Some(f.round3((t - st[b + 3]) / 1000.0)?)
            } else {
                None
            };
            let last = st[b + 1];
            st[b + 2] = cur;
            st[b + 3] = last;
            st[b] = x;
            st[b + 1] = t;
            Ok(Verdict {
                c: if back { HOLD } else { NEUTRAL },
                scratch,
            })
        }
    }
}

fn step_verdict<F: Frame>(f: &mut F, d: f64, fires_over: f64) -> Result<Verdict, F::Error> {
    if d > fires_over {
        let r = f.round3(d)?;
        return Ok(Verdict {
            c: HOLD,
            scratch: Some(r),
        });
    }
    Ok(v(CLEAR))
}

/// `alerts.kinds._windowed`: the monotonic deque of (time, value) entries in the slots, one
/// per time bucket of `width_ms` (slots: previous frame time, entry count, then the entries).
#[allow(clippy::too_many_arguments)]
fn windowed<F: Frame>(
    f: &mut F,
    st: &mut [f64],
    t: f64,
    x: f64,
    b: usize,
    down: bool,
    relative: bool,
    fires_over: f64,
    win_ms: f64,
    gap_ms: f64,
    width_ms: f64,
    cap: usize,
) -> Result<Verdict, F::Error> {
    let q = b + 2;
    let sign = if down { 1.0 } else { -1.0 };
    let pt = st[b];
    st[b] = t;
    let c = st[b + 1];
    let mut n = if c.is_nan() || t - pt > gap_ms {
        0
    } else {
        // At most cap entries fit: a count beyond it (a corrupted state array) must not
        // index past the slots, which would panic.
        (c as usize).min(cap)
    };
    let mut k = 0;
    while k < n && t - st[q + 2 * k] > win_ms {
        k += 1; // expired
    }
    if k > 0 {
        st.copy_within(q + 2 * k..q + 2 * n, q);
        n -= k;
    }
    let mut verdict = v(NEUTRAL);
    if n > 0 {
        let rv = st[q + 1];
        let mut d = if down { rv - x } else { x - rv };
        if relative {
            d = if rv > 0.0 { d * 100.0 / rv } else { 0.0 };
        }
        verdict = step_verdict(f, d, fires_over)?;
    }
    let kx = sign * x;
    while n > 0 && sign * st[q + 2 * n - 1] <= kx {
        n -= 1; // no longer the extreme of anything
    }
    if n > 0 && py_floordiv(st[q + 2 * n - 2], width_ms) == py_floordiv(t, width_ms) {
        st[q + 2 * n - 2] = t;
    } else if n < cap {
        st[q + 2 * n] = t;
        st[q + 2 * n + 1] = x;
        n += 1;
    }
    st[b + 1] = n as f64;
    Ok(verdict)
}

impl Kind {
    /// The highest slot index the kind touches, if any (the binding checks the state array).
    pub fn max_slot(&self) -> Option<usize> {
        match *self {
            Kind::Threshold { .. }
            | Kind::Equal { .. }
            | Kind::Insulation { .. }
            | Kind::FlagLevel { .. } => None,
            Kind::FlagEdge { base, .. } => Some(base),
            Kind::Rate { b, .. } => Some(b + 3),
            Kind::Step { b, .. } => Some(b + 1),
            Kind::Windowed { b, cap, .. } => Some(b + 1 + 2 * cap),
            Kind::Composite { ref pairs, .. } => pairs.iter().filter_map(|p| p.1).max(),
            Kind::Ratio { b, .. } => Some(b + 4),
            Kind::Flip { b, .. } => Some(b + 3),
        }
    }

    /// The highest position in the extracted values the kind reads.
    pub fn max_field(&self) -> Option<usize> {
        match *self {
            Kind::Threshold { i, .. }
            | Kind::Equal { i, .. }
            | Kind::Rate { i, .. }
            | Kind::Step { i, .. }
            | Kind::Windowed { i, .. }
            | Kind::Flip { i, .. } => Some(i),
            Kind::Insulation { i_r, i_u, .. } => Some(i_r.max(i_u)),
            Kind::FlagLevel { i_ed, i_f, i_l, .. } => Some(i_ed.max(i_f).max(i_l)),
            Kind::FlagEdge { i_ed, i_f, .. } => Some(i_ed.max(i_f)),
            Kind::Composite { .. } => None,
            Kind::Ratio { i_num, i_per, .. } => Some(i_num.max(i_per)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values by position; round3 as decimal rounding is close enough for these tests.
    struct Vals(Vec<Val>);

    impl Frame for Vals {
        type Error = Fail;
        fn get(&mut self, i: usize) -> Result<Val, Fail> {
            Ok(self.0[i])
        }
        fn round3(&mut self, x: f64) -> Result<f64, Fail> {
            Ok((x * 1000.0).round() / 1000.0)
        }
        fn fail(&mut self, why: Fail) -> Fail {
            why
        }
    }

    fn run(c: &Cond, st: &mut [f64], t: f64, x: Option<f64>) -> Verdict {
        let val = x.map_or(Val::Null, Val::Float);
        c.eval(&mut Vals(vec![val]), st, t, 0).unwrap()
    }

    fn rate(sustain_ms: f64) -> Cond {
        Cond {
            kind: Kind::Rate {
                i: 0,
                b: 0,
                sign: 1.0,
                rate: 1.0,
                sustain_ms,
                gap_ms: 60_000.0,
            },
            guards: vec![],
        }
    }

    #[test]
    fn rate_holds_once_sustained_and_breaks_on_a_gap() {
        let c = rate(2000.0);
        let mut st = [NAN; 4];
        assert_eq!(run(&c, &mut st, 0.0, Some(10.0)).c, NEUTRAL); // nothing before
        assert_eq!(run(&c, &mut st, 1000.0, Some(11.0)).c, NEUTRAL); // run of 1 s
        assert_eq!(run(&c, &mut st, 1000.0, Some(50.0)).c, NEUTRAL); // same ms: untouched
        assert_eq!(st[3], 11.0);
        assert_eq!(run(&c, &mut st, 2000.0, Some(12.0)).c, NEUTRAL); // 2 s: not over
        let held = run(&c, &mut st, 3000.0, Some(13.0));
        assert_eq!((held.c, held.scratch), (HOLD, Some(1.0)));
        assert_eq!(run(&c, &mut st, 4000.0, Some(13.5)).c, CLEAR); // too slow: broken
        assert!(st[0].is_nan());
        assert_eq!(run(&c, &mut st, 100_000.0, Some(200.0)).c, CLEAR); // gap: broken
        assert_eq!(run(&c, &mut st, 100_500.0, None).c, NEUTRAL);
    }

    fn windowed_drop(win_s: f64, width_s: f64, cap: usize) -> Cond {
        Cond {
            kind: Kind::Windowed {
                i: 0,
                b: 0,
                down: true,
                relative: false,
                fires_over: 1.0 + 1e-9,
                win_ms: win_s * 1000.0,
                gap_ms: 60_000.0,
                width_ms: width_s * 1000.0,
                cap,
            },
            guards: vec![],
        }
    }

    #[test]
    fn windowed_drop_compares_with_the_window_maximum() {
        let c = windowed_drop(10.0, 1.0, 13);
        let mut st = vec![NAN; 2 + 2 * 13];
        assert_eq!(run(&c, &mut st, 0.0, Some(5.0)).c, NEUTRAL);
        assert_eq!(run(&c, &mut st, 1000.0, Some(4.5)).c, CLEAR);
        assert_eq!(st[1], 2.0); // 5.0 at 0 s, 4.5 at 1 s
        let held = run(&c, &mut st, 2000.0, Some(3.5));
        assert_eq!((held.c, held.scratch), (HOLD, Some(1.5)));
        // 5.0 expires after 10 s: 4.5 (1 s) is the reference until 11 s.
        assert_eq!(run(&c, &mut st, 10_500.0, Some(3.4)).c, HOLD);
        assert_eq!(run(&c, &mut st, 11_500.0, Some(3.3)).c, CLEAR);
        // A gap over max_gap_s empties it.
        assert_eq!(run(&c, &mut st, 80_000.0, Some(1.0)).c, NEUTRAL);
        assert_eq!(st[1], 1.0);
    }

    #[test]
    fn windowed_buckets_merge_frames_of_one_bucket() {
        let c = windowed_drop(60.0, 3.0, 23);
        let mut st = vec![NAN; 2 + 2 * 23];
        run(&c, &mut st, 0.0, Some(9.0));
        run(&c, &mut st, 1000.0, Some(8.0)); // same 3 s bucket, less extreme: moves the time
        assert_eq!((st[1], st[2], st[3]), (1.0, 1000.0, 9.0));
        run(&c, &mut st, 3000.0, Some(8.0)); // next bucket: an entry of its own
        assert_eq!(st[1], 2.0);
    }

    #[test]
    fn insulation_at_0_v_cannot_tell_even_with_min_voltage_0() {
        let c = Cond {
            kind: Kind::Insulation {
                i_r: 0,
                i_u: 1,
                thr: 100.0,
                clr: 100.0,
                min_v: 0.0,
            },
            guards: vec![],
        };
        let judge = |r: f64, u: f64| {
            c.eval(
                &mut Vals(vec![Val::Float(r), Val::Float(u)]),
                &mut [],
                0.0,
                0,
            )
            .unwrap()
        };
        assert_eq!(judge(10.0, 0.0), v(NEUTRAL));
        assert_eq!(judge(10.0, -0.0), v(NEUTRAL));
        assert_eq!(judge(0.0, 0.0), v(NEUTRAL));
        assert_eq!(judge(10.0, 400.0).c, HOLD); // 25 Ω/V
    }

    /// `scale × Δvalue[0] / Δvalue[1] op limit`; `min_per` may be 0 here (the loader refuses it).
    fn ratio(op: Op, limit: f64, min_per: f64) -> Cond {
        Cond {
            kind: Kind::Ratio {
                i_num: 0,
                i_per: 1,
                b: 0,
                scale: 1.0,
                limit,
                op,
                min_per,
                gap_ms: 60_000.0,
            },
            guards: vec![],
        }
    }

    fn run_ratio(c: &Cond, st: &mut [f64], t: f64, n: f64, d: f64) -> Verdict {
        c.eval(&mut Vals(vec![Val::Float(n), Val::Float(d)]), st, t, 0)
            .unwrap()
    }

    #[test]
    fn ratio_without_a_rise_of_per_cannot_tell_even_with_min_per_0() {
        let c = ratio(Op::Ge, 1.0, 0.0);
        let mut st = [NAN; 5];
        let mut judge = |t: f64, n: f64, d: f64| run_ratio(&c, &mut st, t, n, d);
        assert_eq!(judge(0.0, 10.0, 50.0).c, NEUTRAL); // the run starts
        assert_eq!(judge(1000.0, 12.0, 50.0), v(NEUTRAL)); // per unchanged: no ratio
        assert_eq!(judge(2000.0, 14.0, 49.0), v(NEUTRAL)); // per fell
        assert_eq!(judge(3000.0, 16.0, 52.0).c, HOLD); // 6 / 2
    }

    #[test]
    fn ratio_frame_in_the_previous_frames_millisecond_changes_nothing() {
        let c = ratio(Op::Ge, 1.0, 0.0);
        let mut st = [NAN; 5];
        let judge = |st: &mut [f64], t: f64, n: f64, d: f64| run_ratio(&c, st, t, n, d);
        assert_eq!(judge(&mut st, 1000.0, 10.0, 50.0).c, NEUTRAL); // the run starts
        let before = st;
        // Same millisecond, and a lower num that would otherwise restart the run.
        assert_eq!(judge(&mut st, 1000.0, 5.0, 60.0), v(NEUTRAL));
        assert_eq!(st.map(f64::to_bits), before.map(f64::to_bits));
    }

    #[test]
    fn windowed_corrupted_count_is_clamped_not_a_panic() {
        let c = windowed_drop(10.0, 1.0, 3);
        let mut st = vec![NAN; 2 + 2 * 3];
        run(&c, &mut st, 0.0, Some(5.0));
        st[1] = 1e9; // a count no state the runner writes holds
        run(&c, &mut st, 1000.0, Some(4.0));
        assert!(st[1] <= 3.0);
    }

    #[test]
    fn ratio_strict_ops_do_not_hold_at_the_limit() {
        for (op, at_limit) in [
            (Op::Ge, HOLD),
            (Op::Gt, CLEAR),
            (Op::Le, HOLD),
            (Op::Lt, CLEAR),
        ] {
            let c = ratio(op, 5.0, 1.0);
            let mut st = [NAN; 5];
            let mut judge = |t: f64, n: f64, d: f64| run_ratio(&c, &mut st, t, n, d);
            assert_eq!(judge(0.0, 100.0, 50.0).c, NEUTRAL);
            assert_eq!(judge(1000.0, 105.0, 51.0).c, at_limit, "{op:?}"); // 5 / 1
        }
    }

    #[test]
    fn floordiv_is_pythons() {
        assert_eq!(py_floordiv(7.0, 2.0), 3.0);
        assert_eq!(py_floordiv(-7.0, 2.0), -4.0);
        assert_eq!(py_floordiv(0.0, 1000.0), 0.0);
        assert!(py_floordiv(-0.0, 1000.0).is_sign_negative());
        // floor(a / b) would say 10.0: a / b rounds up to 10 here, Python says 9.0.
        assert_eq!(py_floordiv(1.0, 0.1), 9.0);
    }
}
