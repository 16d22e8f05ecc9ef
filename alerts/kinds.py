"""Rule kinds compiled to conditions: small closures over one entity's state slots.

A condition is called once per in-order frame with the frame's extracted values, the entity's
state array (``array('d')``, NaN = unknown), the frame time (epoch ms) and the entity's bit mask
of active rules. It answers one of three verdicts:

- ``HOLD``: the rule's condition holds on this frame (may fire, or keeps an alert open);
- ``CLEAR``: it positively does not hold (may clear, after hysteresis/debounce);
- ``NEUTRAL``: cannot tell (a sentinel ``None``, a value inside the hysteresis band, a
  failed guard): neither fires nor clears, and the duration counters are left as they are.

Only kinds that need history use slots (rate, drop/jump, flag edges); every slot is a float so
one entity's whole state is one compact array. ``value()`` returns the number the alert
reports (peak/last value) for the frame just judged; it reads a per-rule scratch cell that
``cond`` filled, so history-based kinds need not recompute.
"""

from __future__ import annotations

import math
from collections.abc import Callable, MutableSequence, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple

from alerts.fields import Value
from alerts.kinds_session import OPS, RATIO_SLOTS, flip, ratio
from alerts.model import Rule

__all__ = [
    "CLEAR",
    "HOLD",
    "NEUTRAL",
    "OPS",
    "Compiled",
    "Condition",
    "ValueFn",
    "compile_condition",
    "kind_fields",
]

HOLD: Final = 1
CLEAR: Final = 0
NEUTRAL: Final = -1
NAN: Final = math.nan

Vals = tuple[Value, ...]
Condition = Callable[[Vals, MutableSequence[float], float, int], int]
ValueFn = Callable[[Vals], float | None]
# Bits 19-31 are "reserved" in the 2016 edition (Table 18): a 2016 terminal setting one says
# nothing about, e.g., a thermal event (2025 bit 23), so flag rules ignore them on 2016 frames.
FLAGS_2016_MASK: Final = (1 << 19) - 1
# A windowed drop/jump remembers the extreme of each time bucket of its window that can still
# hold it (alerts.kinds._windowed): buckets of 1 s, exact with whole-second frame times, for a
# window of up to WINDOW_EXACT_S; wider buckets for a longer window, so that at most
# MAX_WINDOW_ENTRIES are kept, which keeps the default rules' state per device under 1 KB
# (issue 6). A bucket's extreme counts until the bucket's last frame leaves the window: a value
# is never dropped early (no drop missed) and counts at most a bucket's width too long.
MAX_WINDOW_ENTRIES: Final = 28
WINDOW_EXACT_S: Final = MAX_WINDOW_ENTRIES - 3


def window_buckets(window_s: float) -> tuple[int, int]:
    """(bucket width in seconds, entries kept) of a windowed drop/jump of ``window_s``: every
    bucket a window can touch (``window_s`` / width + 2) and one more."""
    width = max(1, math.ceil(window_s / WINDOW_EXACT_S))
    return width, int(window_s // width) + 3


# GB 38031 / GB 18384 minimum insulation resistance per volt of working voltage.
INSULATION_MIN_OHM_PER_V: Final = {"dc": 100.0, "ac": 500.0}


@dataclass(frozen=True, slots=True)
class Compiled:
    cond: Condition
    value: ValueFn
    nslots: int  # state slots the kind uses, from the base it was given
    peak_is_max: bool  # peak = max of values (else min: "below" rules like insulation)
    # The cell ``value()`` reads for the kinds that report from it: the native runner
    # (alerts.kinds_native) writes it on a HOLD, as the closure does.
    scratch: list[float]


def kind_fields(rule: Rule) -> list[str]:
    """The fields a rule reads, for the rule set's extractor (guards included)."""
    p = rule.params
    out: list[str] = [g.field for g in rule.guards]
    if rule.kind in ("threshold", "spread", "rate", "drop", "jump", "ratio", "flip"):
        out.append(str(p["field"]))  # the loader resolves a spread's array to its field
        if rule.kind == "ratio":
            out.append(str(p["per"]))
    elif rule.kind == "insulation":
        out += ["insulation_kohm", "total_voltage_v"]
    elif rule.kind == "flag":
        out += ["edition", "general_flags", "max_alarm_level"]
    return out


def compile_condition(
    rule: Rule,
    index: Callable[[str], int],
    base: int,
    subs: Sequence[tuple[int, int]] = (),
    flags_2016_mask: int = FLAGS_2016_MASK,
) -> Compiled:
    """Compile ``rule`` (validated by the loader). ``index`` maps a field to its position in
    the extracted tuple; ``base`` is the rule's first state slot; ``subs`` are the (bit,
    last-true slot or -1) of a composite's sub-rules, in declaration order;
    ``flags_2016_mask`` the flag bits a 2016-edition frame of this entity kind defines."""
    p = rule.params
    scratch = [NAN]

    def from_scratch(vals: Vals) -> float | None:
        return scratch[0]

    if rule.kind in ("threshold", "spread"):
        op = str(p.get("op", ">="))
        cond, value, is_max = _threshold(
            index(str(p["field"])), op, float(p["value"]), float(p.get("hysteresis", 0.0))
        )
        out = Compiled(cond, value, 0, is_max, scratch)
    elif rule.kind == "insulation":
        out = Compiled(_insulation(rule, index, scratch), from_scratch, 0, False, scratch)
    elif rule.kind == "flag":
        cond, nslots = _flag(rule, index, base, flags_2016_mask)
        out = Compiled(cond, _level_value(index("max_alarm_level")), nslots, True, scratch)
    elif rule.kind == "rate":
        # A fall reports a negative rate: the steepest fall, the worst, is the minimum.
        rises = p.get("direction", "rise") != "fall"
        out = Compiled(
            _rate(rule, index(str(p["field"])), base, scratch), from_scratch, 4, rises, scratch
        )
    elif rule.kind in ("drop", "jump"):
        cond, nslots = _step(rule, index(str(p["field"])), base, scratch)
        out = Compiled(cond, from_scratch, nslots, True, scratch)
    elif rule.kind == "composite":
        out = Compiled(_composite(rule, subs), lambda vals: None, 0, True, scratch)
    elif rule.kind == "ratio":
        cond = ratio(rule, index(str(p["field"])), index(str(p["per"])), base, scratch)
        # A "below" ratio (< / <=) is worst at its minimum.
        above = str(p.get("op", ">=")) in (">=", ">")
        out = Compiled(cond, from_scratch, RATIO_SLOTS, above, scratch)
    elif rule.kind == "flip":
        flipped = flip(rule, index(str(p["field"])), base, scratch)
        out = Compiled(flipped, from_scratch, 4, False, scratch)
    else:  # pragma: no cover - the loader rejects unknown kinds
        raise ValueError(f"unknown kind {rule.kind!r}")
    if rule.guards:
        guarded = _guarded(out.cond, rule, index)
        out = Compiled(guarded, out.value, out.nslots, out.peak_is_max, scratch)
    return out


def _threshold(i: int, op: str, thr: float, hyst: float) -> tuple[Condition, ValueFn, bool]:
    """Fire on ``x op thr``; clear once ``x`` is ``hyst`` beyond ``thr`` on the other side."""

    def value(vals: Vals) -> float | None:
        x = vals[i]
        return None if x is None else float(x)

    if op in (">=", ">"):
        clr = thr - hyst
        strict = op == ">"

        def above(vals: Vals, slots: MutableSequence[float], t: float, active: int) -> int:
            x = vals[i]
            if x is None:
                return NEUTRAL
            if x > thr or (x == thr and not strict):
                return HOLD
            return CLEAR if x < clr or (hyst == 0.0) else NEUTRAL

        return above, value, True
    if op in ("<=", "<"):
        clr = thr + hyst
        strict = op == "<"

        def below(vals: Vals, slots: MutableSequence[float], t: float, active: int) -> int:
            x = vals[i]
            if x is None:
                return NEUTRAL
            if x < thr or (x == thr and not strict):
                return HOLD
            return CLEAR if x > clr or (hyst == 0.0) else NEUTRAL

        return below, value, False
    fn = OPS[op]

    def equal(vals: Vals, slots: MutableSequence[float], t: float, active: int) -> int:
        x = vals[i]
        if x is None:
            return NEUTRAL
        return HOLD if fn(x, thr) else CLEAR

    return equal, value, True


def insulation_params(rule: Rule) -> tuple[float, float, float]:
    """An insulation rule's (threshold Ω/V, clear at Ω/V, minimum voltage), for its closure
    and for the native runner (alerts.kinds_native)."""
    p = rule.params
    circuit = str(p.get("circuit", "dc"))
    thr = float(p.get("min_ohm_per_v", INSULATION_MIN_OHM_PER_V[circuit]))
    clr = thr + float(p.get("hysteresis_ohm_per_v", 0.0))
    return thr, clr, float(p.get("min_voltage_v", 60.0))


def _insulation(rule: Rule, index: Callable[[str], int], scratch: list[float]) -> Condition:
    # Below the class-B boundary (60 V DC, GB 18384) the high-voltage system is off or
    # precharging: Ω/V is meaningless there, so such frames neither fire nor clear. So is it
    # at or below 0 V whatever min_voltage_v says (the loader takes 0): a device's 0 V frame
    # must not divide by zero, which would fail the batch, and the worker with it.
    thr, clr, min_v = insulation_params(rule)
    i_r = index("insulation_kohm")
    i_u = index("total_voltage_v")

    def cond(vals: Vals, slots: MutableSequence[float], t: float, active: int) -> int:
        r = vals[i_r]
        u = vals[i_u]
        if r is None or u is None or u < min_v or u <= 0.0:
            return NEUTRAL
        x = r * 1000.0 / u
        scratch[0] = x
        if x < thr:
            return HOLD
        return CLEAR if x >= clr else NEUTRAL

    return cond


def _level_value(i_level: int) -> ValueFn:
    def value(vals: Vals) -> float | None:
        lvl = vals[i_level]
        return None if lvl is None else float(lvl)

    return value


def _flag(
    rule: Rule, index: Callable[[str], int], base: int, mask_2016: int
) -> tuple[Condition, int]:
    p = rule.params
    bits = [int(b) for b in p.get("bits", ())]
    mask25 = sum(1 << b for b in bits)
    mask16 = mask25 & mask_2016
    min_level = p.get("min_level")
    lvl_min = None if min_level is None else int(min_level)
    edge = str(p.get("edge", "level"))
    i_ed, i_f, i_l = index("edition"), index("general_flags"), index("max_alarm_level")

    if edge == "level":

        def level(vals: Vals, slots: MutableSequence[float], t: float, active: int) -> int:
            f = vals[i_f]
            lvl = vals[i_l]
            if mask25 and f is not None and f & (mask25 if vals[i_ed] == 2025 else mask16):  # type: ignore[operator]
                return HOLD
            if lvl_min is not None and lvl is not None and lvl >= lvl_min:
                return HOLD
            # Clear only when every part of the condition is known: a sentinel level next to
            # clean flags may hide exactly the alarm this rule is about.
            if (not mask25 or f is not None) and (lvl_min is None or lvl is not None):
                return CLEAR
            return NEUTRAL

        return level, 0

    turning_on = edge == "on"

    def edged(vals: Vals, slots: MutableSequence[float], t: float, active: int) -> int:
        f = vals[i_f]
        if f is None:
            return NEUTRAL
        cur = int(f) & (mask25 if vals[i_ed] == 2025 else mask16)
        prev = slots[base]
        slots[base] = cur
        if prev != prev:  # first frame seen: no edge can be told
            return NEUTRAL
        changed = (cur & ~int(prev)) if turning_on else (int(prev) & ~cur)
        return HOLD if changed else CLEAR

    return edged, 1


def _rate(rule: Rule, i: int, b: int, scratch: list[float]) -> Condition:
    """Rate of change sustained over a run of frames (slots: run start t/v, previous t/v).

    Every interval between consecutive frames of the run must change at >= ``rate_per_s``;
    the rule holds once the run spans strictly more than ``sustain_s`` (GB 38031's "for more
    than 3 s"). An interval longer than ``max_gap_s`` breaks the run: no rate is inferred
    across a gap in the data. A run still too short, or a first sample with nothing before
    it, is ``NEUTRAL``: it neither confirms nor denies a rise (so a restart cannot clear a
    live alert just because its history is gone).
    """
    p = rule.params
    sign = -1.0 if p.get("direction", "rise") == "fall" else 1.0
    rate = float(p["rate_per_s"])
    sustain_ms = float(p.get("sustain_s", 0.0)) * 1000.0
    gap_ms = float(p.get("max_gap_s", 60.0)) * 1000.0

    def cond(vals: Vals, slots: MutableSequence[float], t: float, active: int) -> int:
        x = vals[i]
        if x is None:
            return NEUTRAL
        st = slots
        pt = st[b + 2]
        if pt == pt:
            dt = t - pt
            if 0.0 < dt <= gap_ms:
                if (x - st[b + 3]) * sign * 1000.0 >= rate * dt:
                    if st[b] != st[b]:
                        st[b] = pt
                        st[b + 1] = st[b + 3]
                else:
                    st[b] = NAN
            elif dt == 0.0:
                # A frame in order in the previous one's millisecond (T/CEC status pushes are
                # Seq µs apart: alerts.subjects) has no rate against it: cannot tell, and the
                # run and the previous sample stay as they were. Tested after the interval
                # check failed (a gap), so frames 1 ms or more apart cost what they did.
                return NEUTRAL
            else:
                st[b] = NAN
        st[b + 2] = t
        st[b + 3] = x
        start = st[b]
        if start != start:
            # No run: it broke (CLEAR), or there is no earlier sample to judge by (a first
            # frame, a restart without replay): that cannot clear a live alert.
            return CLEAR if pt == pt else NEUTRAL
        if t - start > sustain_ms:
            scratch[0] = round((x - st[b + 1]) * 1000.0 / (t - start), 3)
            return HOLD
        return NEUTRAL  # rising fast enough, not yet for long enough: undecided

    return cond


class StepParams(NamedTuple):
    """A drop / jump rule's constants, for its closure (``_step``) and for the native runner
    (alerts.kinds_native)."""

    down: bool
    up: bool
    relative: bool  # pct, not delta: the change in % of the reference
    fires_over: float
    gap_ms: float
    win_ms: float


def step_params(rule: Rule) -> StepParams:
    p = rule.params
    direction = "down" if rule.kind == "drop" else str(p.get("direction", "either"))
    pct = p.get("pct")
    limit = float(pct if pct is not None else p["delta"])
    # GB 38031 (a) says a drop *exceeding* 25 %: a drop fires strictly above its limit, a jump at
    # or above it. The 1e-9 absorbs float noise both ways (3.6 V -> 2.7 V is 25 %, not
    # 24.999999999999993 %): exactly 25 % is no drop alert, and exactly the jump limit is one.
    fires_over = limit + 1e-9 if rule.kind == "drop" else limit - 1e-9
    return StepParams(
        down=direction == "down",
        up=direction == "up",
        relative=pct is not None,
        fires_over=fires_over,
        gap_ms=float(p.get("max_gap_s", 60.0)) * 1000.0,
        win_ms=float(p.get("window_s", 0.0)) * 1000.0,
    )


def _step(rule: Rule, i: int, b: int, scratch: list[float]) -> tuple[Condition, int]:
    """Drop / jump between consecutive frames, or against the extreme of a short window.

    ``window_s == 0``: compare with the previous frame (slots: previous t/v). Otherwise
    compare with the highest (drop) / lowest (rise) value of the last ``window_s`` seconds
    (``_windowed``). The magnitude is in % of the reference when ``pct`` is set, else
    absolute. Frames further apart than ``max_gap_s`` are not compared: "cannot tell".
    """
    down, up, relative, fires_over, gap_ms, win_ms = step_params(rule)
    if win_ms <= 0.0:

        def consecutive(vals: Vals, slots: MutableSequence[float], t: float, active: int) -> int:
            x = vals[i]
            if x is None:
                return NEUTRAL
            st = slots
            pt = st[b]
            pv = st[b + 1]
            st[b] = t
            st[b + 1] = x
            if pt != pt or not 0.0 < t - pt <= gap_ms:
                return NEUTRAL  # nothing comparable before: cannot tell
            d = pv - x if down else x - pv if up or x >= pv else pv - x
            if relative:
                d = d * 100.0 / pv if pv > 0.0 else 0.0
            if d > fires_over:
                scratch[0] = round(d, 3)
                return HOLD
            return CLEAR

        return consecutive, 2

    width, cap = window_buckets(win_ms / 1000.0)
    cond = _windowed(i, b, down, relative, fires_over, win_ms, gap_ms, width * 1000.0, cap, scratch)
    return cond, 2 + 2 * cap


def _windowed(
    i: int,
    b: int,
    down: bool,
    relative: bool,
    fires_over: float,
    win_ms: float,
    gap_ms: float,
    width_ms: float,
    cap: int,
    scratch: list[float],
) -> Condition:
    """A drop (jump up) against the highest (lowest) value of the last ``win_ms``.

    A monotonic deque of (time, value) in the slots: each entry is the most extreme value from
    its time on, so the front is the window's extreme and, when it expires, the next entry is
    the extreme of what is left. One entry per time bucket of ``width_ms``: a frame less
    extreme than the entry of its own bucket only moves that entry's time to its own, so the
    entry's value counts until the bucket's last frame expires (at most ``width_ms`` longer
    than its own frame: never stacked, as buckets are fixed). With 1 s buckets and whole-second
    frame times nothing is merged: exact. A window touches at most ``win_ms`` / ``width_ms`` +
    2 buckets, so ``cap`` (``window_buckets``) is never reached. A gap over ``gap_ms`` empties
    it: nothing before is comparable. Slots: previous frame time, entry count (NaN = 0), then
    the entries' t, v.
    """
    q = b + 2  # the first entry
    sign = 1.0 if down else -1.0  # entries compare as sign * value: the extreme is the largest

    # Each kind's evaluator opens alike (read the value, NEUTRAL when unknown): the Evaluate
    # protocol, not shared logic.
    def windowed(vals: Vals, slots: MutableSequence[float], t: float, active: int) -> int:
        x = vals[i]
        if x is None:
            return NEUTRAL
        x = float(x)
        st = slots
        pt = st[b]
        st[b] = t
        c = st[b + 1]
        # A gap over max_gap_s empties the window, as the consecutive form cannot tell across one.
        n = 0 if c != c or t - pt > gap_ms else int(c)
        k = 0
        while k < n and t - st[q + 2 * k] > win_ms:
            k += 1  # expired
        if k:
            st[q : q + 2 * (n - k)] = st[q + 2 * k : q + 2 * n]
            n -= k
        verdict = NEUTRAL  # no reference inside the window: cannot tell
        if n:
            rv = st[q + 1]
            d = rv - x if down else x - rv
            if relative:
                d = d * 100.0 / rv if rv > 0.0 else 0.0
            verdict = CLEAR
            if d > fires_over:
                scratch[0] = round(d, 3)
                verdict = HOLD
        kx = sign * x
        while n and sign * st[q + 2 * n - 1] <= kx:
            n -= 1  # no longer the extreme of anything: x is newer and as extreme
        if n and st[q + 2 * n - 2] // width_ms == t // width_ms:
            st[q + 2 * n - 2] = t  # its bucket's more extreme value, kept while the bucket is
        elif n < cap:  # (always: see the docstring)
            st[q + 2 * n] = t
            st[q + 2 * n + 1] = x
            n += 1
        st[b + 1] = n
        return verdict

    return windowed


def _composite(rule: Rule, subs: Sequence[tuple[int, int]]) -> Condition:
    """``all``/``any`` of sub-rules, each counted if active now or within ``window_s``."""
    win_ms = float(rule.params.get("window_s", 0.0)) * 1000.0
    need_all = "all" in rule.params
    # Without a window only "active now" counts: a sub-rule's last-held slot (there for another,
    # windowed composite) would also count a frame on which it held but was still pending.
    pairs = tuple(subs) if win_ms > 0.0 else tuple((bit, -1) for bit, _ in subs)

    def cond(vals: Vals, slots: MutableSequence[float], t: float, active: int) -> int:
        for bit, lt in pairs:
            ok = bool(active & bit) or (lt >= 0 and t - slots[lt] <= win_ms)
            if ok != need_all:
                return HOLD if ok else CLEAR
        return HOLD if need_all else CLEAR

    return cond


def _guarded(inner: Condition, rule: Rule, index: Callable[[str], int]) -> Condition:
    checks = tuple((index(g.field), OPS[g.op], g.value) for g in rule.guards)

    def cond(vals: Vals, slots: MutableSequence[float], t: float, active: int) -> int:
        for i, fn, ref in checks:
            x = vals[i]
            if x is None or not fn(x, ref):
                return NEUTRAL
        return inner(vals, slots, t, active)

    return cond
