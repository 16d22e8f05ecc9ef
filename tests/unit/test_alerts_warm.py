"""``RuleEngine.warm``: the short replay of the last rule window after a partition moves. A new
owner that warms with the frames the previous owner stored raises exactly what one engine
running through the handover raises, when it raises it; warming alone raises nothing."""

from __future__ import annotations

from typing import Any

import pytest

from alerts import AlertChange, RuleEngine, RuleSet
from alerts.frames import build_frame
from contract.rows import FrameRows

pytestmark = pytest.mark.unit

VIN = "LTEST000000000001"
T0 = 1_782_835_200_000
RULES = """
[[rule]]
id = "heating"
kind = "rate"
severity = "critical"
field = "max_temp_c"
rate_per_s = 1.0
sustain_s = 30
max_gap_s = 15

[[rule]]
id = "cell_drop"
kind = "drop"
severity = "critical"
field = "min_cell_voltage_v"
pct = 25
window_s = 35
max_gap_s = 35

[[rule]]
id = "hot_for_a_minute"
kind = "threshold"
severity = "major"
field = "max_temp_c"
value = 45
hysteresis = 2
for_s = 60
"""


def fr(at_s: float, temp: int, volts: float) -> FrameRows:
    return build_frame(VIN, T0 + int(at_s * 1000), max_temp_c=temp, min_cell_voltage_v=volts)


def summary(changes: list[AlertChange]) -> list[tuple[Any, ...]]:
    return [
        (c.type, c.alert.rule_id, *((t - T0) / 1000 for t in c.alert.trigger_ms)) for c in changes
    ]


def run(before: list[FrameRows], after: list[FrameRows], *, warm: bool) -> list[Any]:
    """The previous owner evaluates ``before`` (and stores it); a new engine takes over,
    warmed with those stored frames or not, and evaluates ``after``."""
    old = RuleEngine(RuleSet.from_toml(RULES), update_every_s=3600)
    assert old.evaluate(before, partition=3) == []  # nothing held long enough yet
    new = RuleEngine(RuleSet.from_toml(RULES), update_every_s=3600)
    if warm:
        new.warm(before, partition=3)
    return summary(new.evaluate(after, partition=3))


# Frames every 10 s: 40 °C until 20 s, then +2 °C/s (a rate run from 20 s, more than 30 s long
# at 60 s; hot, >= 45 °C, from 30 s, a minute long at 90 s); the cell voltage falls 3.6 V ->
# 2.6 V (27.8 %) between 50 s and 60 s. Nothing raises before the move, after the 50 s frame.
FRAMES = [fr(10.0 * i, 40 + 20 * max(0, i - 2), 3.6 if i < 6 else 2.6) for i in range(12)]
BEFORE, AFTER = FRAMES[:6], FRAMES[6:]  # the partition moves after the frame at 50 s


def test_warmed_new_owner_raises_what_an_uninterrupted_run_raises() -> None:
    whole = RuleEngine(RuleSet.from_toml(RULES), update_every_s=3600)
    assert summary(whole.evaluate(BEFORE, partition=3)) == []
    uninterrupted = summary(whole.evaluate(AFTER, partition=3))
    # Each window spans the move: the rate run (20 s -> 60 s), the drop (the 3.6 V highest of
    # the last 35 s, then 2.6 V at 60 s), the minute of heat (30 s -> 90 s).
    assert uninterrupted == [
        ("raised", "heating", 60.0),
        ("raised", "cell_drop", 60.0),
        ("cleared", "cell_drop", 60.0),  # at 70 s: no further fall
        ("raised", "hot_for_a_minute", 30.0, 90.0),
    ]
    assert run(BEFORE, AFTER, warm=True) == uninterrupted


def test_without_the_replay_windowed_rules_re_warm_blind() -> None:
    # What the replay fixes: the drop compares with nothing, the duration starts again.
    blind = run(BEFORE, AFTER, warm=False)
    assert blind == [("raised", "heating", 100.0)]  # 40 s late: a run counted from 60 s


def test_warming_raises_updates_and_clears_nothing() -> None:
    e = RuleEngine(RuleSet.from_toml(RULES), update_every_s=0)
    e.warm(FRAMES, partition=3)  # every condition holds at some point of these frames
    assert e.open_alerts() == []
    assert e.evaluate([], partition=3) == []
    assert e.stats.evaluated == 0  # replayed frames are not counted as evaluated again
    # The frames replayed are "already evaluated": a redelivery of one of them is late.
    assert e.evaluate([FRAMES[-1]], partition=3) == []
    assert e.stats.duplicate == 1
