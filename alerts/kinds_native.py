"""The engine's per-frame hot loop in native code: ``nev_native.RuleRunner`` (native/src/rules.rs,
native/src/py_rules.rs), built from a compact spec of a plan's compiled rules.

The runner is a ``Runner`` (alerts.fastpath) like the generated Python loop and calls the
engine's ``apply`` exactly where that loop does; each kind's condition is the Rust twin of its
closure in ``alerts.kinds`` / ``alerts.kinds_session``, which stay the reference semantics (the
late path calls them; tests/unit/test_rules_native.py runs both runners side by side). The spec
below takes a drop / jump's and an insulation rule's constants from the functions their
closures take them from (``step_params``, ``insulation_params``), and computes the other kinds'
as ``compile_condition`` does, from the same parameters.

The generated Python loop serves a plan instead when the native one cannot: ``nev_native``
not built, a kind of entity with more than 64 rules (``ent.active`` is read as a u64), or a
rule built by other means than the loader with a number the native side cannot take exactly
(an int guard value or flag level beyond 2**53, a flag bit beyond 62).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from alerts.fastpath import Runner, compile_runner
from alerts.kinds import insulation_params, step_params, window_buckets

try:
    import nev_native
except ImportError:  # pragma: no cover - a checkout without the built extension
    nev_native = None  # type: ignore[assignment]

# None: no extension, or one built before the runner existed (./dev setup rebuilds it).
_RULE_RUNNER: Any = getattr(nev_native, "RuleRunner", None)

__all__ = ["MAX_NATIVE_RULES", "runner_for"]

# ent.active is a Python int of one bit per rule of the entity kind; the runner reads a u64.
MAX_NATIVE_RULES: Final = 64
# The op codes of rules.rs (Op::from_code).
_OPS: Final = {">=": 0, ">": 1, "<=": 2, "<": 3, "==": 4, "!=": 5}


class _NotNative(Exception):
    """A rule the native runner cannot take exactly: the plan keeps the Python loop."""


def runner_for(
    rules: Sequence[Any],
    index: Callable[[str], int],
    comp: dict[str, Any],
    flags_2016_mask: int,
    *,
    native: bool,
    nslots: int,
    nfields: int,
    plan_rules: int,
) -> Runner:
    """The native runner for ``rules`` (``CRule``s in evaluation order) when ``native`` and it
    can serve them (see the module docstring), else ``alerts.fastpath.compile_runner``'s.
    ``plan_rules``: the rules of the entity kind (the bits of ``ent.active``)."""
    # No rules: the generated ``return None`` is cheaper to call than the native runner.
    if rules and native and _RULE_RUNNER is not None and plan_rules <= MAX_NATIVE_RULES:
        try:
            spec = [_spec(cr, index, comp, flags_2016_mask) for cr in rules]
        except _NotNative:
            pass
        else:
            run: Runner = _RULE_RUNNER(spec, nslots, nfields)
            return run
    return compile_runner(rules, index, comp, flags_2016_mask)


def _exact(x: Any) -> float:
    # The loader gives numbers; a rule built through the public types may hold anything (a
    # string guard value, an int beyond a double's range): the Python loop takes it then (its
    # closure raises per frame if it cannot compare: the engine's safety net), never an error
    # out of the plan's construction.
    try:
        v = float(x)
    except (TypeError, ValueError, OverflowError):
        raise _NotNative(f"{x!r} is not a number") from None
    if v != x:  # an int beyond 2**53: the closure compares it exactly, a double cannot
        raise _NotNative(f"{x!r} is not exactly a double")
    return v


def _spec(
    cr: Any, index: Callable[[str], int], comp: dict[str, Any], mask_2016: int
) -> tuple[Any, ...]:
    r = cr.rule
    guards = [(index(g.field), _OPS[g.op], _exact(g.value)) for g in r.guards]
    code, ints, floats = _kind(cr, index, comp, mask_2016)
    return (code, cr.bit, cr.pend, cr, cr.scratch, guards, ints, floats)


def _kind(
    cr: Any, index: Callable[[str], int], comp: dict[str, Any], mask_2016: int
) -> tuple[int, list[int], list[float]]:
    """(kind code of rules.rs, its ints, its floats): the constants of alerts.kinds."""
    r, b = cr.rule, cr.base
    p = r.params
    if r.kind in ("threshold", "spread"):
        op = str(p.get("op", ">="))
        i = index(str(p["field"]))
        thr, hyst = float(p["value"]), float(p.get("hysteresis", 0.0))
        if op in (">=", ">"):
            return 0, [i, 1, int(op == ">")], [thr, thr - hyst, hyst]
        if op in ("<=", "<"):
            return 0, [i, 0, int(op == "<")], [thr, thr + hyst, hyst]
        return 1, [i, _OPS[op]], [thr]
    if r.kind == "insulation":
        return 2, [index("insulation_kohm"), index("total_voltage_v")], [*insulation_params(r)]
    if r.kind == "flag":
        mask25 = sum(1 << int(bit) for bit in p.get("bits", ()))
        if mask25 >= 1 << 63:
            raise _NotNative("a flag bit beyond 62")
        mask16 = mask25 & mask_2016
        fields = [index("edition"), index("general_flags")]
        edge = str(p.get("edge", "level"))
        if edge == "level":
            lvl = p.get("min_level")
            lvl_min = 0 if lvl is None else int(_exact(int(lvl)))
            has = int(lvl is not None)
            return 3, [*fields, index("max_alarm_level"), mask25, mask16, has, lvl_min], []
        return 4, [*fields, b, mask25, mask16, int(edge == "on")], []
    if r.kind == "rate":
        sign = -1.0 if p.get("direction", "rise") == "fall" else 1.0
        return (
            5,
            [index(str(p["field"])), b],
            [
                sign,
                float(p["rate_per_s"]),
                float(p.get("sustain_s", 0.0)) * 1000.0,
                float(p.get("max_gap_s", 60.0)) * 1000.0,
            ],
        )
    if r.kind in ("drop", "jump"):
        return _step(r, index(str(p["field"])), b)
    if r.kind == "composite":
        win_ms = float(p.get("window_s", 0.0)) * 1000.0
        ints = [int("all" in p)]
        for sid in p.get("all", p.get("any", [])):
            sub = comp[sid]
            ints += [sub.bit, sub.lt if win_ms > 0.0 else -1]
        return 8, ints, [win_ms]
    if r.kind == "ratio":
        return (
            9,
            [
                index(str(p["field"])),
                index(str(p["per"])),
                b,
                _OPS[str(p.get("op", ">="))],
            ],
            [
                float(p.get("scale", 1.0)),
                float(p["value"]),
                float(p["min_per"]),
                float(p.get("max_gap_s", 60.0)) * 1000.0,
            ],
        )
    if r.kind == "flip":
        return 10, [index(str(p["field"])), b], [float(p["window_s"]) * 1000.0]
    raise _NotNative(f"kind {r.kind!r}")  # pragma: no cover - the loader knows no other


def _step(r: Any, i: int, b: int) -> tuple[int, list[int], list[float]]:
    s = step_params(r)
    down, relative = int(s.down), int(s.relative)
    if s.win_ms <= 0.0:
        return 6, [i, b, down, int(s.up), relative], [s.fires_over, s.gap_ms]
    width, cap = window_buckets(s.win_ms / 1000.0)
    return 7, [i, b, down, relative, cap], [s.fires_over, s.win_ms, s.gap_ms, width * 1000.0]
