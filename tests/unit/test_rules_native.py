"""The native rule runner (nev_native.RuleRunner, alerts.kinds_native) against the generated
Python loop (alerts.fastpath over the closures of alerts.kinds): two RuleEngines, one each, fed
the same frames must give the same AlertChanges in the same order and leave every entity with
the same state slots (bitwise; NaN equal to NaN), active mask and watermark after every batch.

Random rule sets over every kind and option and random frame streams (Hypothesis), the default
rule set over the loadtest's generated day and over the golden vectors, and charger pushes that
share a millisecond (the kinds' ``dt == 0`` paths)."""

from __future__ import annotations

import itertools
import math
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from alerts import RuleEngine, RuleSet
from alerts.frames import build_frame
from alerts.model import Guard
from alerts.plan import Entity
from devtools.sim.bench_frames import frames_of_kind
from devtools.sim.scenarios import normal_day, thermal_runaway
from ingest.decoders.battery import decode_pack_rows
from ingest.decoders.charger import decode_charger_rows
from ingest.decoders.errors import FrameError
from ingest.decoders.fast import decode_rows
from tests.unit.alerts_entities_support import charge_status_push, charger, status_push
from tests.unit.vectors_support import load_vectors

pytestmark = pytest.mark.unit

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
T0 = 1_782_835_200_000
VINS = ("LTEST000000000001", "LTEST000000000002", "LTEST000000000003")
# Fields the random rules read and the random frames carry; a few values each, so that
# thresholds are met exactly, values repeat (flips) and equal ones follow each other.
FIELDS = ("max_temp_c", "soc_pct", "total_voltage_v", "min_cell_voltage_v", "vehicle_state")
NUMBERS = (0, 1, 2, 2.5, 3, 5, 10, 30, 60, 100, 400)
VALUES = st.one_of(
    st.none(),
    st.sampled_from(NUMBERS),
    st.integers(-3, 120),
    st.sampled_from((0.1, 3.3, 59.5, 60.0, 401.7)),
)
STEPS = (0, 0, 1, 1, 2, 5, 10, 25, -1, -2, -5, -25, 0.5, -0.1)
OPS = (">=", ">", "<=", "<", "==", "!=")
BITS = (0, 1, 2, 18, 19, 23, 31)


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + " }"
    return repr(v)


num = st.sampled_from(NUMBERS)
small = st.sampled_from((0, 0.25, 0.5, 1, 2, 5))
pos = st.sampled_from((0.5, 1, 2, 3, 5, 10, 30, 60))
field = st.sampled_from(FIELDS)
gap = st.sampled_from((1, 5, 30, 60, 600))


@st.composite
def kind_params(draw: st.DrawFn, earlier: Sequence[str]) -> dict[str, Any]:
    kinds = ["threshold", "spread", "insulation", "flag", "rate", "drop", "jump", "ratio", "flip"]
    kind = draw(st.sampled_from(kinds + (["composite"] * 2 if earlier else [])))
    p: dict[str, Any] = {"kind": kind}
    if kind == "threshold":
        p |= {"field": draw(field), "op": draw(st.sampled_from(OPS)), "value": draw(num)}
        if p["op"] not in ("==", "!=") and draw(st.booleans()):
            p["hysteresis"] = draw(pos)
    elif kind == "spread":
        p |= {"array": draw(st.sampled_from(("cell_voltage", "probe_temp"))), "across": "vehicle"}
        p["value"] = draw(pos)
        if draw(st.booleans()):
            p["hysteresis"] = draw(pos)
    elif kind == "insulation":
        p["circuit"] = draw(st.sampled_from(("dc", "ac")))
        if draw(st.booleans()):
            p["min_ohm_per_v"] = draw(st.sampled_from((50, 100, 500, 2000)))
        # 0: the streams' 0 V frames reach the rule (no division by zero: neutral)
        p["min_voltage_v"] = draw(st.sampled_from((0, 0.5, 10, 60, 60)))
        if draw(st.booleans()):
            p["hysteresis_ohm_per_v"] = draw(st.sampled_from((10, 100, 1000)))
    elif kind == "flag":
        edge = draw(st.sampled_from(("level", "level", "on", "off")))
        bits = draw(st.lists(st.sampled_from(BITS), max_size=3, unique=True))
        if edge != "level" or not bits or draw(st.booleans()):
            bits = bits or [draw(st.sampled_from(BITS))]
        p["bits"] = bits
        if edge == "level" and draw(st.booleans()):
            p["min_level"] = draw(st.integers(1, 4))
        p["edge"] = edge
    elif kind == "rate":
        p |= {"field": draw(field), "direction": draw(st.sampled_from(("rise", "fall")))}
        p |= {"rate_per_s": draw(st.sampled_from((0.001, 0.1, 0.5, 1, 5)))}
        p |= {"sustain_s": draw(st.sampled_from((0, 1, 3, 10))), "max_gap_s": draw(gap)}
    elif kind in ("drop", "jump"):
        p["field"] = draw(field)
        p["pct" if draw(st.booleans()) else "delta"] = draw(st.sampled_from((1, 5, 25, 50)))
        window = draw(st.sampled_from((0, 0, 1, 5, 25, 26, 100)))
        if kind == "jump":
            p["direction"] = draw(
                st.sampled_from(("up", "down") if window else ("either", "up", "down"))
            )
        p |= {"window_s": window, "max_gap_s": draw(gap)}
    elif kind == "composite":
        subs = draw(st.lists(st.sampled_from(earlier), min_size=1, max_size=3, unique=True))
        p[draw(st.sampled_from(("all", "any")))] = subs
        p["window_s"] = draw(st.sampled_from((0, 0, 5, 30, 120)))
    elif kind == "ratio":
        p |= {"field": draw(field), "per": draw(field), "value": draw(small)}
        p |= {"scale": draw(st.sampled_from((1, 0.5, 100))), "op": draw(st.sampled_from(OPS[:4]))}
        p |= {"min_per": draw(st.sampled_from((0.5, 1, 2, 5))), "max_gap_s": draw(gap)}
    else:  # flip
        p |= {"field": draw(field), "window_s": draw(st.sampled_from((1, 10, 60, 600)))}
    return p


@st.composite
def rule_sets(draw: st.DrawFn) -> RuleSet:
    blocks: list[str] = []
    ids: list[str] = []
    for k in range(draw(st.integers(1, 7))):
        rid = f"r{k}"
        p = {"id": rid, "severity": "major", **draw(kind_params(ids))}
        p["alert"] = draw(st.sampled_from((True, True, False)))
        for a, b in (("for_s", "for_frames"), ("clear_for_s", "clear_for_frames")):
            which = draw(st.sampled_from((None, None, a, b)))
            if which is not None:
                p[which] = draw(st.sampled_from((1, 2, 3, 15)))
        if draw(st.integers(0, 3)) == 0:
            p["editions"] = [draw(st.sampled_from((2016, 2025)))]
        guards = draw(st.lists(st.tuples(field, st.sampled_from(OPS), num), max_size=2))
        guards = guards if draw(st.integers(0, 2)) == 0 else []
        if guards:
            p["when"] = [{"field": f, "op": o, "value": v} for f, o, v in guards]
        blocks.append("[[rule]]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in p.items()))
        ids.append(rid)
    return RuleSet.from_toml("\n".join(blocks))


@st.composite
def streams(draw: st.DrawFn) -> list[list[Any]]:
    """Frames of several vehicles in batches: equal, tiny and long gaps, late and duplicate
    frames (the clock also steps back), reissues, both editions, sentinels."""
    frames = []
    t = T0
    last: dict[tuple[str, str], Any] = {}
    for _ in range(draw(st.integers(1, 60))):
        t += draw(
            st.sampled_from((-20_000, -1, 0, 1, 999, 1_000, 1_000, 1_500, 5_000, 10_000, 90_000))
        )
        vin = draw(st.sampled_from(VINS))
        values: dict[str, Any] = {}
        for f in FIELDS:
            # Mostly a walk from the vehicle's last value (runs, ratios that reach min_per
            # exactly, drops of exactly the limit), else anything
            prev = last.get((vin, f))
            if prev is not None and draw(st.integers(0, 3)):
                values[f] = prev + draw(st.sampled_from(STEPS))
            else:
                values[f] = draw(VALUES)
            last[vin, f] = values[f]
        values["insulation_kohm"] = draw(st.sampled_from((None, 0, 5, 30, 200, 1000)))
        values["general_flags"] = draw(
            st.one_of(
                st.none(), st.sampled_from((0, 1, 3, 1 << 19, 1 << 23, 1 << 31, (1 << 19) | 2))
            )
        )
        values["max_alarm_level"] = draw(st.sampled_from((None, 0, 1, 2, 3, 4)))
        values["min_temp_c"] = draw(VALUES)
        values["max_cell_voltage_v"] = draw(st.sampled_from((None, 3.6, 3.65, 4.2)))
        frames.append(
            build_frame(
                vin,
                t,
                edition=draw(st.sampled_from((2016, 2025))),
                command=draw(st.sampled_from((0x02, 0x02, 0x03))),
                **values,
            )
        )
    cuts = sorted(draw(st.lists(st.integers(0, len(frames)), max_size=3)))
    edges = [0, *cuts, len(frames)]
    return [frames[a:b] for a, b in itertools.pairwise(edges)]


def engines(rules: RuleSet, kind: str = "vehicle") -> tuple[RuleEngine, RuleEngine]:
    return (
        RuleEngine(rules, entity_kind=kind),
        RuleEngine(rules, entity_kind=kind, native_rules=False),
    )


def _bits(x: float) -> bytes:
    return b"nan" if math.isnan(x) else struct.pack("<d", x)


def state(engine: RuleEngine) -> dict[str, tuple[Any, ...]]:
    ents: dict[str, Entity] = engine._entities
    return {eid: (ent.active, ent.wm, [_bits(x) for x in ent.slots]) for eid, ent in ents.items()}


def runner_names(engine: RuleEngine) -> set[str]:
    """The types of the runners of the engine's plans that have rules (an empty plan keeps the
    generated ``return None``, cheaper to call)."""
    out = set()
    for p in engine._plan_cache.values():
        out |= {
            type(run).__name__
            for run, steps in ((p.run16, p.steps16), (p.run25, p.steps25))
            if steps
        }
    return out


def agree(
    rules: RuleSet, batches: Iterable[Sequence[Any]], kind: str = "vehicle", *, warm: bool = False
) -> int:
    """Both engines over ``batches``; returns the alert changes seen."""
    native, python = engines(rules, kind)
    seen = 0
    for k, batch in enumerate(batches):
        # Neither may raise: these are device frames, and whatever the rule file says a
        # device's frame must not fail its batch (and the worker with it).
        if warm and k == 0:
            native.warm(batch)
            python.warm(batch)
            changes = []
        else:
            changes = native.evaluate(batch)
            assert changes == python.evaluate(batch)
        # The engine's safety net would take an error: it must have taken none.
        assert native.take_failures() == python.take_failures() == []
        assert state(native) == state(python)
        seen += len(changes)
    if runner_names(python):
        assert runner_names(native) == {"RuleRunner"}
        assert "RuleRunner" not in runner_names(python)
    return seen


@SETTINGS
@given(rule_sets(), streams(), st.booleans())
def test_random_rules_and_frames_agree(
    rules: RuleSet, batches: list[list[Any]], warm: bool
) -> None:
    event("alert changes" if agree(rules, batches, warm=warm) else "no alert change")


CHARGER_FIELDS = ("connector_status", "voltage_v", "energy_kwh", "soc_pct")


@st.composite
def charger_rules(draw: st.DrawFn) -> RuleSet:
    blocks = []
    for k in range(draw(st.integers(1, 4))):
        f = draw(st.sampled_from(CHARGER_FIELDS))
        kind = draw(st.sampled_from(("rate", "ratio", "ratio", "flip", "drop", "threshold")))
        p: dict[str, Any] = {"id": f"c{k}", "entity": "charger", "severity": "major", "kind": kind}
        if kind == "rate":
            p |= {
                "field": f,
                "rate_per_s": draw(st.sampled_from((0.001, 1))),
                "sustain_s": draw(st.sampled_from((0, 2))),
            }
        elif kind == "ratio":
            p |= {"field": "energy_kwh", "per": "soc_pct", "value": draw(small)}
            p |= {
                "min_per": draw(st.sampled_from((0.5, 1, 2, 3))),
                "op": draw(st.sampled_from(OPS[:4])),
            }
        elif kind == "flip":
            p |= {"field": f, "window_s": draw(st.sampled_from((1, 30)))}
        elif kind == "drop":
            p |= {
                "field": f,
                "delta": draw(st.sampled_from((1, 5))),
                "window_s": draw(st.sampled_from((0, 5))),
            }
        else:
            p |= {"field": f, "op": draw(st.sampled_from(OPS)), "value": draw(num)}
        blocks.append("[[rule]]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in p.items()))
    return RuleSet.from_toml("\n".join(blocks))


@st.composite
def charger_streams(draw: st.DrawFn) -> list[list[Any]]:
    """A connector's frames and T/CEC status pushes, several of one millisecond."""
    frames = []
    s = 0.0
    energy, soc = 10.0, 50
    for _ in range(draw(st.integers(1, 25))):
        # a session's energy and SOC rise (ratio), at times a new session starts lower
        energy = draw(st.sampled_from((energy, energy + 0.5, energy + 2.0, 1.0)))
        soc = draw(st.sampled_from((soc, soc + 1, soc + 2, 20)))
        s += draw(st.sampled_from((0.000_001, 0.000_002, 1, 1, 3, -2, 90)))
        if draw(st.booleans()):
            frames.append(status_push(s, draw(st.sampled_from((1, 2, 3, 255)))))
        else:
            frames.append(
                charger(
                    round(s),
                    status=draw(st.sampled_from((None, 2, 3, 255))),
                    voltage=draw(st.sampled_from((None, 400.0, 380.5))),
                    energy=energy if draw(st.integers(0, 5)) else None,
                    soc=soc if draw(st.integers(0, 5)) else None,
                )
            )
    return [frames]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(charger_rules(), charger_streams())
def test_charger_pushes_of_one_millisecond_agree(rules: RuleSet, batches: list[list[Any]]) -> None:
    event("alert changes" if agree(rules, batches, "charger") else "no alert change")


def test_default_rules_on_the_loadtest_day_agree() -> None:
    # bench_alerts' normal day (reissues, duplicates, sentinels), then a thermal runaway: alerts
    frames = [*normal_day(12, seed=3), *thermal_runaway()]
    batches = [frames[i : i + 5_000] for i in range(0, len(frames), 5_000)]
    assert agree(RuleSet.default(), batches) > 0


@pytest.mark.parametrize("kind", ["vehicle", "charger", "battery"])
def test_default_rules_on_the_pipeline_benchmark_frames_agree(kind: str) -> None:
    decode: Any = {
        "vehicle": decode_rows,
        "charger": decode_charger_rows,
        "battery": decode_pack_rows,
    }
    frames = [decode[kind](f) for _, f in frames_of_kind(kind, 40, 12, start_ms=T0)]
    agree(RuleSet.default(), [frames[: len(frames) // 2], frames[len(frames) // 2 :]], kind)


def test_default_rules_on_the_golden_vectors_agree() -> None:
    frames = []
    for v in load_vectors():
        try:
            frames.append(decode_rows(bytes.fromhex(v["hex"])))
        except FrameError:
            continue
    assert agree(RuleSet.default(), [frames]) > 0


def test_the_default_rules_of_every_kind_run_natively() -> None:
    for kind in ("vehicle", "charger", "battery"):
        e = RuleEngine(RuleSet.default(), entity_kind=kind)
        plans = e._plan.plans_for("X", lambda _: None)
        assert type(plans.run16).__name__ == type(plans.run25).__name__ == "RuleRunner"


def soc_below_k_rules(n: int) -> RuleSet:
    """n vehicle rules in order: t<k> holds while soc_pct < k, for k in 0..n-1."""
    return RuleSet.from_toml(
        "".join(
            f'[[rule]]\nid = "t{k}"\nseverity = "major"\nkind = "threshold"\nfield = "soc_pct"\n'
            f'op = "<"\nvalue = {k}\n'
            for k in range(n)
        )
    )


def test_a_kind_of_exactly_64_rules_runs_natively_with_bit_63() -> None:
    native, python = engines(soc_below_k_rules(64))
    # soc falls to 0 (every rule, t63 first) and rises again (t63 clears last)
    socs = [*range(70, -1, -7), *range(0, 71, 7)]
    frames = [build_frame(VINS[0], T0 + k * 1000, soc_pct=x) for k, x in enumerate(socs)]
    changes = native.evaluate(frames)
    assert changes == python.evaluate(frames)
    assert runner_names(native) == {"RuleRunner"}
    assert [c.type for c in changes if c.alert.rule_id == "t63"] == ["raised", "cleared"]
    assert state(native) == state(python)


def test_a_kind_of_more_than_64_rules_keeps_the_python_loop() -> None:
    native, python = engines(soc_below_k_rules(65))
    frames = [build_frame(VINS[0], T0 + k * 1000, soc_pct=70 - k) for k in range(10)]
    assert native.evaluate(frames) == python.evaluate(frames)
    assert runner_names(native) == {"function"}


def test_a_value_beyond_what_a_double_holds_exactly_raises() -> None:
    native, _ = engines(RuleSet.from_toml(
        '[[rule]]\nid = "t"\nseverity = "major"\nkind = "threshold"\nfield = "odometer_km"\n'
        "value = 10\n"
    ))  # fmt: skip
    # The engine's safety net takes the error (alerts/failure.py): the frame is skipped.
    assert native.evaluate([build_frame(VINS[0], T0, odometer_km=2**53 + 1)]) == []
    (failed,) = native.take_failures()
    assert failed.rule_id == "t" and re.search(r"TypeError: .*beyond \+-2\*\*53", failed.error)


def test_a_charge_status_push_with_an_int_beyond_2_53_agrees() -> None:
    # A T/CEC push's numbers are JSON ints when written without a point; beyond 2**53 one
    # reached the runners as an int: the native one refused it (the frame skipped, an error
    # counted on every push), the Python one compared it exactly and raised the alert.
    rules = RuleSet.from_toml(
        '[[rule]]\nid = "e"\nentity = "charger"\nseverity = "major"\nkind = "threshold"\n'
        'field = "energy_kwh"\nvalue = 500\n'
        '[[rule]]\nid = "v"\nentity = "charger"\nseverity = "major"\nkind = "threshold"\n'
        'field = "voltage_v"\nop = "<"\nvalue = 0\n'
        '[[rule]]\nid = "r"\nentity = "charger"\nseverity = "major"\nkind = "rate"\n'
        'field = "energy_kwh"\nrate_per_s = 1\n'
    )
    beyond = 2**53 + 1
    pushes = [
        charge_status_push(0, TotalPower=25),
        charge_status_push(1, TotalPower=beyond, VoltageA=-beyond),
        charge_status_push(2, TotalPower=2**53, CurrentA=-beyond),
        charge_status_push(3, TotalPower=2**64 - 1, VoltageA=2**63),
    ]
    assert agree(rules, [pushes], "charger") > 0
    assert agree(rules, [[p] for p in pushes], "charger") > 0


def test_a_ratio_frame_in_the_previous_frames_millisecond_agrees() -> None:
    # Two status pushes µs apart in order: the second is in the first's millisecond (ratio's
    # t == pt path), its lower status would otherwise restart the run
    rules = RuleSet.from_toml(
        '[[rule]]\nid = "c"\nentity = "charger"\nseverity = "major"\nkind = "ratio"\n'
        'field = "connector_status"\nper = "connector_status"\nvalue = 1\nmin_per = 1\n'
    )
    pushes = [status_push(1.0, 3), status_push(1.000_001, 2), status_push(3.0, 4)]
    agree(rules, [pushes], "charger")
    agree(rules, [[p] for p in pushes], "charger")


class _Hostile:
    def __repr__(self) -> str:
        raise RuntimeError("__repr__ ran while the slots were borrowed")


class _HostileInt(int):
    def __repr__(self) -> str:
        raise RuntimeError("__repr__ ran while the slots were borrowed")


@pytest.mark.parametrize(
    ("value", "message"),
    [(_Hostile(), "of type _Hostile"), (_HostileInt(2**53 + 1), "the int 9007199254740993")],
    ids=["object", "int"],  # not their repr
)
def test_a_non_number_error_runs_no_python_code_of_the_value(value: Any, message: str) -> None:
    # The error is made while the rule's slots are a live &mut slice: a __repr__ there could
    # write them; the message names the type (or the int as Rust prints it) instead
    native, _ = engines(RuleSet.from_toml(
        '[[rule]]\nid = "t"\nseverity = "major"\nkind = "threshold"\nfield = "soc_pct"\n'
        'op = "<"\nvalue = 10\n'
    ))  # fmt: skip
    assert native.evaluate([build_frame(VINS[0], T0, soc_pct=value)]) == []
    (failed,) = native.take_failures()  # the engine's safety net took it (alerts/failure.py)
    assert failed.error_type == "TypeError" and message in failed.error


@pytest.mark.parametrize(
    ("value", "failed"), [("abc", ["t"]), (10**400, [])], ids=["a_string", "beyond_a_double"]
)
def test_a_guard_no_double_can_hold_keeps_the_python_loop(value: object, failed: list[str]) -> None:
    # A rule built through the public types (not the loader) with such a guard value: the plan
    # falls back to the Python loop (alerts.kinds_native), as for an int beyond 2**53, rather
    # than raising out of the plan's construction on the entity's first frame. The string's
    # comparison then raises per frame: a rule error of ``t`` (the safety net), not "unknown".
    loaded = RuleSet.from_toml(
        '[[rule]]\nid = "t"\nseverity = "major"\nkind = "threshold"\nfield = "odometer_km"\n'
        "value = 10\n"
    ).rules[0]
    rules = RuleSet((replace(loaded, guards=(Guard("soc_pct", ">=", value),)),))  # type: ignore[arg-type]
    native = RuleEngine(rules, update_every_s=0)
    native.evaluate([build_frame(VINS[0], T0, odometer_km=20, soc_pct=50)])
    assert runner_names(native) == {"function"}
    assert [f.rule_id for f in native.take_failures()] == failed
