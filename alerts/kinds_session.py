"""Two rule kinds with per-entity history made for chargers and packs (alerts.kinds holds the
others and dispatches to these; same condition protocol, same verdicts).

- ``ratio``: the change of one field over the change of another across a run of frames, e.g.
  a charging session's energy over its SOC rise: the capacity the vehicle's pack would need
  to have. A run is one session: it restarts when ``field`` goes down (a new session's
  counter) or after a gap longer than ``max_gap_s``.
- ``flip``: a value that changes and then changes back to the previous one within
  ``window_s``, e.g. a pack's place: site A, site B, site A again within minutes is one pack
  code reported by two places at once, faster than a pack can physically move.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, MutableSequence
from typing import Any, Final

from alerts.model import Rule

__all__ = ["OPS", "RATIO_SLOTS", "flip", "ratio"]

# The verdicts of alerts.kinds (which imports this module, so they are restated, not imported).
HOLD: Final = 1
CLEAR: Final = 0
NEUTRAL: Final = -1
NAN: Final = math.nan
RATIO_SLOTS: Final = 5
# The comparisons of rules: a threshold's op, a guard's (alerts.kinds, the loader).
OPS: Final[dict[str, Callable[[float, float], bool]]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}
# A ratio's ops (the loader's): ">" and "<" strict, as a threshold's.
_RATIO_OPS: Final = {op: OPS[op] for op in (">=", ">", "<=", "<")}


def ratio(rule: Rule, i_num: int, i_per: int, b: int, scratch: list[float]) -> Any:
    """Holds when ``scale * Δfield / Δper op value`` over the run, once ``Δper`` reached
    ``min_per`` (smaller changes are dominated by the reporting resolution: SOC comes in 1 %
    steps). Slots: the run's start time, numerator and denominator (the reference), the
    previous frame's time and numerator (gaps and restarts)."""
    p = rule.params
    scale = float(p.get("scale", 1.0))
    limit = float(p["value"])
    op = _RATIO_OPS[str(p.get("op", ">="))]
    min_per = float(p["min_per"])
    gap_ms = float(p.get("max_gap_s", 60.0)) * 1000.0

    def cond(vals: Any, slots: MutableSequence[float], t: float, active: int) -> int:
        n = vals[i_num]
        d = vals[i_per]
        if n is None or d is None:
            return NEUTRAL
        st = slots
        pt = st[b + 3]
        if pt != pt or not 0.0 < t - pt <= gap_ms or n < st[b + 4]:
            if t == pt:
                # In the previous frame's millisecond (T/CEC status pushes are Seq µs apart:
                # alerts.subjects): 0 ms says nothing of a session, cannot tell; the run and
                # the previous frame stay as they were. Tested on the restart path only, so
                # frames 1 ms or more apart cost what they did.
                return NEUTRAL
            st[b + 3] = t
            st[b + 4] = n
            had_run = st[b] == st[b]
            st[b], st[b + 1], st[b + 2] = t, n, d
            # A new session: whatever the last one implied is over (nothing before: unknown).
            return CLEAR if had_run else NEUTRAL
        st[b + 3] = t
        st[b + 4] = n
        dd = d - st[b + 2]
        # The loader's min_per > 0 keeps dd > 0 past here; a rule built by other means must not
        # divide by zero on a device's frame either.
        if dd < min_per or dd <= 0.0:
            return NEUTRAL  # too little change yet to judge
        x = round(scale * (n - st[b + 1]) / dd, 3)
        scratch[0] = x
        return HOLD if op(x, limit) else CLEAR

    return cond


def flip(rule: Rule, i: int, b: int, scratch: list[float]) -> Any:
    """Holds on a frame whose value is the one before the current one, seen there within
    ``window_s``; clears once the entity stayed at one value for ``window_s`` since it was
    last seen elsewhere. The value reported is the seconds since it was last at that value
    (the peak is the minimum: the fastest impossible move). Slots: current value, its last
    time, previous value, its last time."""
    win_ms = float(rule.params["window_s"]) * 1000.0

    def cond(vals: Any, slots: MutableSequence[float], t: float, active: int) -> int:
        x = vals[i]
        if x is None:
            return NEUTRAL
        st = slots
        cur = st[b]
        if cur != cur:
            st[b], st[b + 1] = x, t
            return NEUTRAL
        if x == cur:
            st[b + 1] = t
            # NaN (never anywhere else) compares False: settled.
            return NEUTRAL if t - st[b + 3] <= win_ms else CLEAR
        back = x == st[b + 2] and t - st[b + 3] <= win_ms
        if back:
            scratch[0] = round((t - st[b + 3]) / 1000.0, 3)
        st[b + 2], st[b + 3] = cur, st[b + 1]
        st[b], st[b + 1] = x, t
        return HOLD if back else NEUTRAL

    return cond
