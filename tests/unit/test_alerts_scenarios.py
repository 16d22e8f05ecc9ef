"""Generated scenarios through the default rule set: a thermal runaway raises the GB 38031
alert exactly once; a normal drive-and-charge day of 1,000 vehicles raises nothing."""

from __future__ import annotations

import random
from collections import Counter
from itertools import islice

import pytest

from alerts import AlertChange, RuleEngine, RuleSet
from contract.rows import FrameRows
from devtools.sim.scenarios import normal_day, thermal_runaway

pytestmark = pytest.mark.unit

TR = "gb38031_thermal_runaway"


def in_batches(engine: RuleEngine, frames: list[FrameRows], seed: int) -> list[AlertChange]:
    rng = random.Random(seed)
    out: list[AlertChange] = []
    it = iter(frames)
    while batch := list(islice(it, rng.randint(1, 9))):
        out += engine.evaluate(batch)
    return out


def first_time(frames: list[FrameRows], ok: object) -> int:
    return min(f.ts_ms for f in frames if f.ts_ms is not None and ok(f))  # type: ignore[operator]


@pytest.mark.parametrize("edition", [2016, 2025])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_thermal_runaway_raises_the_gb38031_alert_exactly_once(edition: int, seed: int) -> None:
    frames = thermal_runaway(edition=edition, seed=seed)
    engine = RuleEngine(RuleSet.default())
    changes = in_batches(engine, frames, seed)
    # The engine's safety net skips a frame that raises, in silence: every frame was judged.
    assert engine.take_failures() == []
    raised = [c.alert for c in changes if c.type == "raised" and c.alert.rule_id == TR]
    assert len(raised) == 1
    assert not [c for c in changes if c.type == "cleared" and c.alert.rule_id == TR]
    # It fires on the first frame where GB 38031's conditions hold: temperature at the
    # maximum operating temperature (60 °C here) after a rise of >= 1 °C/s for > 3 s.
    hot = first_time(frames, lambda f: (f.vehicle.max_temp_c or 0) >= 60)
    assert raised[0].opened_ms == hot
    assert raised[0].severity == "critical"
    if edition == 2025:  # and the vehicle's own thermal-event flag becomes an alert too
        assert [c.alert.rule_id for c in changes if c.type == "raised"].count("thermal_event") == 1


def test_a_slow_warm_up_is_not_a_thermal_runaway() -> None:
    frames = thermal_runaway(heat_rate=0.5)
    engine = RuleEngine(RuleSet.default())
    changes = engine.evaluate(frames)
    assert engine.take_failures() == []
    assert TR not in {c.alert.rule_id for c in changes}
    assert "max_temp_high" in {c.alert.rule_id for c in changes}  # hot, but not a runaway


def test_a_normal_day_of_1000_vehicles_raises_nothing() -> None:
    engine = RuleEngine(RuleSet.default())
    changes: list[AlertChange] = []
    batch: list[FrameRows] = []
    frames = 0
    for fr in normal_day(1000, seed=11):
        batch.append(fr)
        if len(batch) == 5000:
            changes += engine.evaluate(batch)
            frames += len(batch)
            batch = []
    changes += engine.evaluate(batch)
    frames += len(batch)
    assert Counter(c.alert.rule_id for c in changes) == Counter()
    assert engine.take_failures() == []  # nothing raised because nothing was skipped
    # the day really was exercised: ~1M frames, with reissues, duplicates and sentinels
    assert frames > 500_000 and len(engine) == 1000
    assert engine.stats.late > 1000 and engine.stats.duplicate > 1000
