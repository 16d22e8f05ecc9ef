"""The rule engine's safety net (alerts/failure.py): a frame whose judging raises costs that
frame's verdicts for its entity, never the batch, in order, late and in a replay, with the
native runner and the generated Python loop alike."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from alerts import RuleEngine, RuleSet
from alerts.failure import UNKNOWN, caught
from alerts.frames import build_frame
from alerts.plan import LiveAlert, Plan
from alerts.publish import to_message
from contract.rows import FrameRows

pytestmark = pytest.mark.unit

VIN = "LTEST000000000001"
OTHER = "LTEST000000000002"
T0 = 1_782_835_200_000
# A threshold judged first, then a history rule on the same field.
RULES = """
[[rule]]
id = "hot"
kind = "threshold"
severity = "major"
field = "max_temp_c"
value = 60
hysteresis = 5

[[rule]]
id = "heating"
kind = "rate"
severity = "critical"
field = "max_temp_c"
rate_per_s = 1.0
sustain_s = 3
"""
# A decoder defect's value: the rules compare numbers, and comparing this raises in both
# runners (the native one: "rule value #0 is of type str"; Python: "'>=' not supported").
BAD: Any = "61.5"


def fr(at_s: float, temp: Any, *, vin: str = VIN) -> FrameRows:
    return build_frame(vin, T0 + int(at_s * 1000), max_temp_c=temp)


def engine(native: bool) -> RuleEngine:
    e = RuleEngine(RuleSet.from_toml(RULES), native_rules=native, update_every_s=0)
    if native:
        # The runner really is the native one (nev_native built), not the Python fallback.
        e.evaluate([fr(-100, 20, vin="LWARM000000000000")])
        assert type(e._entities["LWARM000000000000"].plans.run16).__name__ == "RuleRunner"
    return e


def kinds(changes: list[Any]) -> list[tuple[str, str, str]]:
    return [(c.type, c.alert.entity_id, c.alert.rule_id) for c in changes]


@pytest.mark.parametrize("native", [True, False], ids=["native", "python"])
def test_a_raising_frame_costs_its_verdicts_only(native: bool) -> None:
    e = engine(native)
    changes = e.evaluate([fr(0, 61), fr(10, 70, vin=OTHER), fr(10, BAD)])
    # The other frames were judged: the alerts of both entities raised.
    assert kinds(changes) == [("raised", VIN, "hot"), ("raised", OTHER, "hot")]
    failures = e.take_failures()
    assert [(f.rule_id, f.count, f.entity_id, f.error_type) for f in failures] == [
        ("hot", 1, VIN, "TypeError")
    ]
    assert e.take_failures() == []  # taken
    # The watermark went past the failed frame: its redelivery is a duplicate, not judged.
    dup = e.stats.duplicate
    assert e.evaluate([fr(10, BAD)]) == []
    assert e.stats.duplicate == dup + 1 and e.take_failures() == []
    # The state is consistent: later frames are judged as ever (the alert updates, clears).
    assert [c.type for c in e.evaluate([fr(20, 66)])] == ["updated"]
    cleared = e.evaluate([fr(30, 50)])
    assert [c.type for c in cleared] == ["cleared"]
    assert (cleared[0].alert.peak, cleared[0].alert.frame_count) == (66.0, 2)


@pytest.mark.parametrize("native", [True, False], ids=["native", "python"])
def test_a_late_frame_that_raises_is_counted_and_skipped(native: bool) -> None:
    e = engine(native)
    e.evaluate([fr(0, 20), fr(20, 20)])
    late = e.stats.late
    assert e.evaluate([fr(10, BAD), fr(30, 61)]) and e.stats.late == late + 1
    assert [(f.rule_id, f.count) for f in e.take_failures()] == [("hot", 1)]


@pytest.mark.parametrize("native", [True, False], ids=["native", "python"])
def test_a_replay_over_a_raising_frame_rebuilds_the_rest(native: bool) -> None:
    # alerts/replay.py warms a new owner with the recent frames: a frame that raised in the
    # live run raises again here, and must not end the assignment in a crash loop.
    e = engine(native)
    e.warm([fr(0, 61), fr(10, BAD), fr(20, 62)], partition=0)
    assert [(f.rule_id, f.count) for f in e.take_failures()] == [("hot", 1)]
    # Warmed: the duration-free threshold raises on the first live frame that holds.
    assert kinds(e.evaluate([fr(30, 63)], partition=0)) == [("raised", VIN, "hot")]


def test_an_error_before_any_rule_is_the_unknown_rule() -> None:
    e = RuleEngine(RuleSet.from_toml(RULES))
    bad = fr(0, 61)
    # A frame whose vehicle block is no VehicleRow: the extractor raises, before any rule.
    broken = FrameRows(
        edition=bad.edition,
        command=bad.command,
        vin=VIN,
        ts_ms=bad.ts_ms,
        vehicle=object(),  # type: ignore[arg-type]
    )
    assert kinds(e.evaluate([broken, fr(10, 61, vin=OTHER)])) == [("raised", OTHER, "hot")]
    assert [f.rule_id for f in e.take_failures()] == [UNKNOWN]


def test_interrupts_are_not_caught() -> None:
    assert caught(ValueError()) and caught(ZeroDivisionError())
    assert not caught(KeyboardInterrupt()) and not caught(SystemExit())
    assert not caught(MemoryError())


def test_a_lifecycle_step_that_raises_leaves_its_alert_as_it_was() -> None:
    # No half-applied change: an alert's update compares the value before it changes anything,
    # so a value that cannot be compared (a value function's bug) leaves the alert unchanged.
    cr = Plan.compile(RuleSet.from_toml(RULES)).by_id["hot"]
    a = LiveAlert(cr, VIN, T0, 61.0, (T0,), False, 0)
    with pytest.raises(TypeError):
        a.see(T0 + 10_000, BAD, in_order=True)
    assert (a.count, a.last_ms, a.last_value, a.peak) == (1, T0, 61.0, 61.0)


# An open alert that clears after 3 frames below, next to a stateless rule on another field.
COUNTDOWN = """
[[rule]]
id = "low_soc"
kind = "threshold"
severity = "warning"
field = "soc_pct"
op = "<"
value = 20

[[rule]]
id = "hot"
kind = "threshold"
severity = "major"
field = "max_temp_c"
value = 60
clear_for_frames = 3
"""


def counting_down(native: bool) -> RuleEngine:
    """An engine whose ``hot`` alert is open, 2 of its 3 clearing frames seen (at 10 s, 20 s)."""
    e = RuleEngine(RuleSet.from_toml(COUNTDOWN), native_rules=native, update_every_s=0)
    changes = e.evaluate([fr(0, 70), fr(10, 50), fr(20, 50)])
    assert kinds(changes) == [("raised", VIN, "hot")]
    return e


@pytest.mark.parametrize("native", [True, False], ids=["native", "python"])
@pytest.mark.parametrize("late", [True, False], ids=["late", "in_order"])
def test_a_failure_keeps_the_lifecycle_countdown(native: bool, late: bool) -> None:
    # A frame whose judging raised counts for nothing: neither a late reissue (which never
    # counts towards a clear) nor an in-order frame restarts the open alert's clear countdown.
    e = counting_down(native)
    bad = build_frame(VIN, T0 + (15_000 if late else 25_000), max_temp_c=BAD, soc_pct=50)
    e.evaluate([bad])
    assert [(f.rule_id, f.count) for f in e.take_failures()] == [("hot", 1)]
    # The third frame below clears it, as if the failed frame were absent.
    assert kinds(e.evaluate([fr(30, 50)])) == [("cleared", VIN, "hot")]


@pytest.mark.parametrize("native", [True, False], ids=["native", "python"])
def test_a_hold_that_fails_keeps_the_clear_countdown(native: bool) -> None:
    # The open alert's step fails on a holding frame (its value is no number): the frame is
    # absent for the rule, so it does not restart the countdown of 3 frames below either.
    e = RuleEngine(RuleSet.from_toml(COUNTDOWN), native_rules=native, update_every_s=0)
    assert kinds(e.evaluate([fr(0, 70), fr(10, 50)])) == [("raised", VIN, "hot")]
    hot = e._plan.by_id["hot"]
    number = hot.value
    hot.value = lambda vals: BAD
    assert e.evaluate([fr(20, 70)]) == []
    assert [(f.rule_id, f.count) for f in e.take_failures()] == [("hot", 1)]
    hot.value = number
    assert e.evaluate([fr(30, 50)]) == []
    # The third frame below (10 s, 30 s, 40 s) clears it.
    assert kinds(e.evaluate([fr(40, 50)])) == [("cleared", VIN, "hot")]


DROP = """
[[rule]]
id = "temp_drop"
kind = "drop"
severity = "major"
field = "max_temp_c"
delta = 10
max_gap_s = 60
"""


@pytest.mark.parametrize("native", [True, False], ids=["native", "python"])
def test_a_failure_restarts_the_failing_rules_condition_state(native: bool) -> None:
    # The Python drop condition writes the frame's time before its value, and the value is
    # what raises: without the reset, the next frame would compare a fresh time with a stale
    # value (70 -> 50 within the gap: a drop). Afresh, there is nothing to compare it with.
    e = RuleEngine(RuleSet.from_toml(DROP), native_rules=native, update_every_s=0)
    assert e.evaluate([fr(0, 70), fr(10, BAD)]) == []
    assert [(f.rule_id, f.count) for f in e.take_failures()] == [("temp_drop", 1)]
    assert e.evaluate([fr(20, 50)]) == []
    # The state is sound again: the next drop is compared and raises.
    assert kinds(e.evaluate([fr(30, 30)])) == [("raised", VIN, "temp_drop")]


class Flaky(RuleEngine):
    """A stand-in for a defect at one point of an alert's lifecycle step: ``_raise`` (opening
    an alert) or ``_touch`` (marking it changed) raises while ``fail`` is set."""

    fail_raise = False
    fail_touch = False

    def _raise(self, *args: Any, **kwargs: Any) -> None:
        if self.fail_raise:
            raise RuntimeError("raise failed")
        super()._raise(*args, **kwargs)

    def _touch(self, a: LiveAlert) -> LiveAlert:
        if self.fail_touch:
            raise RuntimeError("touch failed")
        return super()._touch(a)


PENDING = """
[[rule]]
id = "hot"
kind = "threshold"
severity = "major"
field = "max_temp_c"
value = 60
"""


@pytest.mark.parametrize("native", [True, False], ids=["native", "python"])
@pytest.mark.parametrize("duration", ["for_frames = 2", "for_s = 10"])
def test_a_raise_that_fails_keeps_the_pending_duration(native: bool, duration: str) -> None:
    # The step applies whole or not at all: the frame that completed the duration failed to
    # open the alert, so the duration is still met, and the next holding frame raises (with
    # the trigger times of the run), as if the failed frame were absent.
    e = Flaky(RuleSet.from_toml(PENDING + duration), native_rules=native, update_every_s=0)
    assert e.evaluate([fr(0, 70)]) == []
    e.fail_raise = True
    assert e.evaluate([fr(10, 70)]) == []
    assert [(f.rule_id, f.count) for f in e.take_failures()] == [("hot", 1)]
    e.fail_raise = False
    changes = e.evaluate([fr(20, 70)])
    assert kinds(changes) == [("raised", VIN, "hot")]
    first = T0 if duration.startswith("for_s") else T0 + 20_000
    assert changes[0].alert.trigger_ms[0] == first


@pytest.mark.parametrize("native", [True, False], ids=["native", "python"])
def test_a_raise_that_fails_leaves_no_composite_window(native: bool) -> None:
    # A windowed composite counts a member with for_frames once the duration is met and the
    # member raised, not while pending: the member's raise failed, so it never held, and the
    # frame below it, within the window, raises no composite.
    rules = (
        PENDING
        + "for_frames = 2\n"
        + (
            '[[rule]]\nid = "any_hot"\nkind = "composite"\nseverity = "major"\n'
            'any = ["hot"]\nwindow_s = 35\n'
        )
    )
    e = Flaky(RuleSet.from_toml(rules), native_rules=native, update_every_s=0)
    assert e.evaluate([fr(0, 70)]) == []
    e.fail_raise = True
    assert e.evaluate([fr(10, 70)]) == []
    assert [(f.rule_id, f.count) for f in e.take_failures()] == [("hot", 1)]
    e.fail_raise = False
    assert e.evaluate([fr(20, 50)]) == []
    # Once the member raises, so does the composite.
    assert e.evaluate([fr(30, 70)]) == []
    assert kinds(e.evaluate([fr(40, 70)])) == [("raised", VIN, "hot"), ("raised", VIN, "any_hot")]


@pytest.mark.parametrize("native", [True, False], ids=["native", "python"])
def test_a_raise_whose_touch_fails_opens_no_alert(native: bool) -> None:
    # Marking the new alert changed raises: it is not left open but never saved (an alert
    # open in the engine that no store or consumer knows of); the next holding frame raises.
    e = Flaky(RuleSet.from_toml(PENDING), native_rules=native, update_every_s=0)
    e.fail_touch = True
    assert e.evaluate([fr(0, 70)]) == []
    assert [(f.rule_id, f.count) for f in e.take_failures()] == [("hot", 1)]
    e.fail_touch = False
    assert e.open_alerts() == []
    assert kinds(e.evaluate([fr(10, 70)])) == [("raised", VIN, "hot")]


@pytest.mark.parametrize("native", [True, False], ids=["native", "python"])
def test_a_clear_that_fails_keeps_the_alert_open(native: bool) -> None:
    # The third frame below would clear the alert; marking it changed raises: the alert stays
    # open (not popped and lost, never saved as cleared) and its countdown as it was, so the
    # next frame below clears it.
    e = Flaky(RuleSet.from_toml(COUNTDOWN), native_rules=native, update_every_s=0)
    assert kinds(e.evaluate([fr(0, 70), fr(10, 50), fr(20, 50)])) == [("raised", VIN, "hot")]
    e.fail_touch = True
    assert e.evaluate([fr(30, 50)]) == []
    assert [(f.rule_id, f.count) for f in e.take_failures()] == [("hot", 1)]
    e.fail_touch = False
    assert [a.rule_id for a in e.open_alerts()] == ["hot"]
    assert kinds(e.evaluate([fr(40, 50)])) == [("cleared", VIN, "hot")]


@pytest.mark.parametrize("native", [True, False], ids=["native", "python"])
def test_a_value_that_is_no_number_is_a_rule_error(native: bool) -> None:
    # A value function's defect: a string would make an alert row the batch's write refuses
    # (asyncpg: "must be real number, not str"), on every restart. The raise is refused,
    # counted against the rule, and the next frame with a number raises.
    e = RuleEngine(RuleSet.from_toml(RULES), native_rules=native, update_every_s=0)
    hot = e._plan.by_id["hot"]
    number = hot.value
    hot.value = lambda vals: BAD
    assert e.evaluate([fr(0, 70)]) == []
    [failure] = e.take_failures()
    assert failure.rule_id == "hot" and "'61.5' is of type str, not a number" in failure.error
    hot.value = number
    changes = e.evaluate([fr(10, 70)])
    assert kinds(changes) == [("raised", VIN, "hot")]
    assert changes[0].alert.peak == 70


def test_an_alert_opened_without_a_value_refuses_one_that_is_no_number() -> None:
    # Nothing to compare with (no peak yet): the type is checked, the alert left as it was.
    cr = Plan.compile(RuleSet.from_toml(RULES)).by_id["hot"]
    a = LiveAlert(cr, VIN, T0, None, (T0,), False, 0)
    with pytest.raises(TypeError, match="not a number"):
        a.see(T0 + 10_000, BAD, in_order=True)
    assert (a.count, a.last_ms, a.last_value, a.peak) == (1, T0, None, None)


@pytest.mark.parametrize("native", [True, False], ids=["native", "python"])
def test_an_open_alert_refuses_a_value_that_is_no_number(native: bool) -> None:
    # A Decimal compares with the float peak: unchecked, it became the peak and last value of
    # an "updated" change that alerts.publish cannot serialise (orjson: "Type is not JSON
    # serializable: decimal.Decimal"). A rule error instead, and the alert as it was.
    e = RuleEngine(RuleSet.from_toml(RULES), native_rules=native, update_every_s=0)
    assert kinds(e.evaluate([fr(0, 70)])) == [("raised", VIN, "hot")]
    hot = e._plan.by_id["hot"]
    number = hot.value
    dec: Any = Decimal("80")
    hot.value = lambda vals: dec
    changes = e.evaluate([fr(10, 80)])
    for c in changes:
        to_message(c)
    assert changes == []
    [failure] = e.take_failures()
    assert failure.rule_id == "hot" and "is of type Decimal, not a number" in failure.error
    hot.value = number
    changes = e.evaluate([fr(20, 75)])
    assert kinds(changes) == [("updated", VIN, "hot")]
    assert (changes[0].alert.peak, changes[0].alert.last_value) == (75, 75)
