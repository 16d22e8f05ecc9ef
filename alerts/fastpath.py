"""One generated function per (rule set, scope, edition): the engine's per-frame loop in Python.

The reference the native loop (nev_native.RuleRunner, alerts.kinds_native) is tested against,
and the loop of a plan the native one cannot serve (more than 64 rules of a kind, no built
extension). Most rules, on most frames, do not hold and have nothing to undo. For the rules
whose verdict depends on the current frame alone (threshold, spread, insulation, flag level,
composite) the generated code tests "could this hold?" inline (a comparison or two on the
extracted values) and calls into the engine only when it could, or when the rule is active or
pending. Rules with history (rate, drop/jump, flag edges, guarded rules) must see every frame: their
condition closure is called directly. The generated test for each kind mirrors exactly the
``HOLD`` branch of its closure in ``alerts.kinds``; the closure still decides (the engine
calls it), so the inline test only has to be a superset, never a subset, of ``HOLD``.

Constants are the rule file's validated numbers, rendered with ``repr(float)`` (the loader
refuses non-finite ones; ``_f`` still renders them as expressions Python evaluates to the same
float, so a rule set built by other means compiles to what its closures do); slot and field
positions are ints: no text from a rule file reaches the generated source.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from alerts import failure
from alerts.kinds import FLAGS_2016_MASK, INSULATION_MIN_OHM_PER_V

__all__ = ["Runner", "compile_runner"]

# run(engine_apply, ent, vals, t, vin): the rules of one plan over one frame.
Runner = Callable[[Any, Any, tuple[Any, ...], int, str], None]


def _f(x: Any) -> str:
    v = float(x)
    if math.isfinite(v):
        return repr(v)
    # repr gives inf / nan: names the generated code does not have (NameError on the first
    # frame). 1e999 is a float literal that overflows to inf; inf - inf is nan.
    return "(1e999 - 1e999)" if v != v else "1e999" if v > 0 else "(-1e999)"


def _maybe_holds(
    cr: Any, k: int, index: Callable[[str], int], comp: dict[str, Any], mask_2016: int
) -> str | None:
    """An inline expression true whenever the rule can hold on this frame, or None."""
    r = cr.rule
    p = r.params
    if r.guards:
        return None
    if r.kind in ("threshold", "spread"):
        op = p.get("op", ">=")
        return f"((x{k} := vals[{index(p['field'])}]) is not None and x{k} {op} {_f(p['value'])})"
    if r.kind == "insulation":
        thr = p.get("min_ohm_per_v", INSULATION_MIN_OHM_PER_V[p.get("circuit", "dc")])
        i_r, i_u = index("insulation_kohm"), index("total_voltage_v")
        return (
            f"((r{k} := vals[{i_r}]) is not None and (u{k} := vals[{i_u}]) is not None"
            f" and u{k} >= {_f(p.get('min_voltage_v', 60.0))} and r{k} * 1000.0 < {_f(thr)} * u{k})"
        )
    if r.kind == "flag" and p.get("edge", "level") == "level":
        parts = []
        mask = sum(1 << b for b in p.get("bits", ()))
        if mask:
            m16 = mask & mask_2016
            parts.append(
                f"((f{k} := vals[{index('general_flags')}]) is not None and "
                f"f{k} & ({mask} if vals[{index('edition')}] == 2025 else {m16}))"
            )
        if p.get("min_level") is not None:
            i_l = index("max_alarm_level")
            parts.append(f"((l{k} := vals[{i_l}]) is not None and l{k} >= {int(p['min_level'])})")
        return "(" + " or ".join(parts) + ")"
    if r.kind == "composite":
        win = _f(p.get("window_s", 0.0) * 1000.0)
        subs = []
        for sid in p.get("all", p.get("any", [])):
            sub = comp[sid]
            # as alerts.kinds._composite: the last-held slot counts only within a window
            windowed = sub.lt >= 0 and p.get("window_s", 0.0) > 0
            lt = f" or t - slots[{sub.lt}] <= {win}" if windowed else ""
            subs.append(f"(active & {sub.bit}{lt})")
        return "(" + (" and " if "all" in p else " or ").join(subs) + ")"
    return None


def compile_runner(
    rules: Sequence[Any],
    index: Callable[[str], int],
    comp: dict[str, Any],
    flags_2016_mask: int = FLAGS_2016_MASK,
) -> Runner:
    """The hot loop for ``rules`` (``CRule``s in evaluation order); ``flags_2016_mask``: the
    flag bits a 2016-edition frame of their entity kind defines."""
    lines = [
        "def run(apply, ent, vals, t, vin):",
        "    slots = ent.slots",
        "    active = ent.active",
    ]
    # Source line -> the rule judged there: which rule raised (alerts.failure), from the
    # traceback, without a per-rule cost in the loop.
    at_line: dict[int, Any] = {}
    env: dict[str, Any] = {failure.LINES: at_line}
    for k, cr in enumerate(rules):
        env[f"C{k}"] = cr
        env[f"K{k}"] = cr.cond
        first = len(lines) + 1
        busy = f"active & {cr.bit}" + (
            f" or slots[{cr.pend}] == slots[{cr.pend}]" if cr.pend >= 0 else ""
        )
        test = _maybe_holds(cr, k, index, comp, flags_2016_mask)
        lines.append(f"    # {cr.id} ({cr.rule.kind})")
        if test is None:
            lines += [
                f"    c = K{k}(vals, slots, t, active)",
                f"    if c == 1 or (c == 0 and ({busy})):",
                f"        apply(ent, C{k}, c, vals, t, vin)",
                "        active = ent.active",
            ]
        else:
            lines += [
                f"    if {test} or {busy}:",
                f"        apply(ent, C{k}, K{k}(vals, slots, t, active), vals, t, vin)",
                "        active = ent.active",
            ]
        at_line.update(dict.fromkeys(range(first, len(lines) + 1), cr))
    if not rules:
        lines.append("    return None")
    src = "\n".join(lines) + "\n"
    exec(compile(src, failure.GENERATED, "exec"), env)  # noqa: S102 - see the module docstring
    run: Runner = env["run"]
    return run
