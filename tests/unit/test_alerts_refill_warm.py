"""After a crash with bounded-lag latest_state, the frames the new owner reads again to refill the
pending tuples (``LatestKeeper.take_refill``) also warm its rule engine, and the partition's
stored alerts are restored once that refill is complete (``alert_state.RefillWarm``). The new
owner then raises exactly what an engine running through the crash raises, although the
replay from the database ended at the stale latest_state time."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pytest

from alerts import AlertChange, RuleEngine, RuleSet
from alerts.frames import build_frame
from alerts.model import AlertRecord
from contract.rows import FrameRows
from ingest.pipeline.alert_state import RefillWarm
from ingest.pipeline.latest_keeper import LatestKeeper
from storage.latest_pending import PendingLatest
from storage.offsets import TopicPartition
from tests.unit.alerts_entities_support import CONNECTOR, at, charger, raised
from tests.unit.alerts_entities_support import engine as engine_of
from tests.unit.test_alerts_warm import RULES as WARM_RULES

pytestmark = pytest.mark.unit

VIN = "LTEST000000000001"
T0 = 1_782_835_200_000
TOPIC = "nev.vehicle.raw"
TP: TopicPartition = (TOPIC, 3)
# The windowed rules of tests/unit/test_alerts_warm.py, and one that is open when the worker
# crashes (its stored alert moves the entity's watermark on restore).
RULES = (
    WARM_RULES
    + """
[[rule]]
id = "warm_pack"
kind = "threshold"
severity = "warning"
field = "max_temp_c"
value = 35
"""
)


def fr(at_s: float, temp: int, volts: float) -> FrameRows:
    return build_frame(VIN, T0 + int(at_s * 1000), max_temp_c=temp, min_cell_voltage_v=volts)


# Offset i = the frame at 10 * i s (tests/unit/test_alerts_warm.py): a rate run from 20 s, hot
# from 30 s, the cell voltage falls 27.8 % between 50 s and 60 s; warm_pack opens at 0 s.
FRAMES = [fr(10.0 * i, 40 + 20 * max(0, i - 2), 3.6 if i < 6 else 2.6) for i in range(12)]
CRASH = 6  # the first owner committed offsets 0-5, then was killed
MERGED = 2  # latest_state was last merged with offsets 0-1: latest_from = 2


@dataclass(frozen=True)
class Record:
    """What ``take_refill`` reads of a Kafka record: its offset (and here its frame)."""

    offset: int
    frame: FrameRows


class Decoder:
    """``BatchBuilder.decode_stored``'s part: the records' frames (decoding is not tested)."""

    def decode_stored(self, topic: str, records: Any) -> list[Any]:
        return [r.frame for r in records]


class Writer:
    def __init__(self) -> None:
        self.latest = PendingLatest(60.0)

    async def flush_latest(self, partitions: Any, *, skip_locked: bool = False) -> int:
        return 0


def summary(changes: list[AlertChange]) -> list[tuple[Any, ...]]:
    return [
        (c.type, c.alert.rule_id, *((t - T0) / 1000 for t in c.alert.trigger_ms)) for c in changes
    ]


def engine() -> RuleEngine:
    return RuleEngine(RuleSet.from_toml(RULES), entity_kind="vehicle", update_every_s=3600)


def uninterrupted() -> tuple[list[AlertRecord], list[tuple[Any, ...]]]:
    """The first owner's open alerts at the crash, and what a run without it raises after."""
    whole = engine()
    assert summary(whole.evaluate(FRAMES[:CRASH], partition=3, topic=TOPIC)) == [
        ("raised", "warm_pack", 0.0)
    ]
    stored = whole.open_alerts()
    return stored, summary(whole.evaluate(FRAMES[CRASH:], partition=3, topic=TOPIC))


def new_owner() -> tuple[RuleEngine, LatestKeeper, RefillWarm, list[AlertChange]]:
    """An engine warmed by the database replay, which ends at latest_state.ts (offset 1's
    frame: the last merge), and the keeper of a partition assigned with latest_from = 2."""
    new = engine()
    new.warm(FRAMES[:MERGED], partition=3, topic=TOPIC)
    emitted: list[AlertChange] = []
    warm = RefillWarm({"vehicle": new}, {TOPIC: "vehicle"}, emitted.extend)
    writer = Writer()
    writer.latest.assigned(TP, CRASH, MERGED)
    keeper = LatestKeeper(lambda: [writer], lambda partition: 0, warm.refilled)
    return new, keeper, warm, emitted


def test_refilled_frames_warm_the_engine_before_the_stored_alerts_are_restored() -> None:
    stored, expected = uninterrupted()
    # Each window spans the crash: the rate run (20 s -> 60 s), the drop (3.6 V until 50 s,
    # 2.6 V at 60 s), the minute of heat (30 s -> 90 s); warm_pack stays open (no 2nd raise;
    # an update as its value rises).
    assert expected == [
        ("raised", "heating", 60.0),
        ("raised", "cell_drop", 60.0),
        ("cleared", "cell_drop", 60.0),
        ("updated", "warm_pack", 0.0),
        ("raised", "hot_for_a_minute", 30.0, 90.0),
    ]
    new, keeper, warm, emitted = new_owner()
    assert keeper.refilling(TP)
    assert warm.defer({"vehicle": stored}, keeper.refilling) == {}  # held until refilled
    records = [Record(i, f) for i, f in enumerate(FRAMES)]
    decoder = Decoder()
    # The consumer reads from latest_from; the refill comes in two polls. One overlapping
    # frame (offset 1, replayed from the database too) is a duplicate, ignored.
    assert keeper.take_refill(TP, records[1:4], decoder) == []
    assert new.open_alerts() == []  # not restored while the refill goes on
    rest = keeper.take_refill(TP, records[4:8], decoder)
    assert [r.offset for r in rest] == [6, 7]
    assert not keeper.refilling(TP)
    assert [a.rule_id for a in new.open_alerts()] == ["warm_pack"]  # restored now
    assert emitted == []  # nothing raised, updated, cleared or published while warming
    assert new.stats.evaluated == 0  # nor counted
    live = [r.frame for r in rest] + [r.frame for r in records[8:]]
    assert summary(new.evaluate(live, partition=3, topic=TOPIC)) == expected


def test_restoring_before_the_refill_would_lose_the_history() -> None:
    # Why the order: the stored alert's last-seen time (50 s) becomes the entity's watermark,
    # so the refilled frames up to there are ignored as late and only warm_pack survives.
    stored, expected = uninterrupted()
    new, keeper, _, _ = new_owner()
    new.restore(stored)
    records = [Record(i, f) for i, f in enumerate(FRAMES)]
    rest = keeper.take_refill(TP, records[MERGED:], Decoder())
    got = summary(new.evaluate([r.frame for r in rest], partition=3, topic=TOPIC))
    assert got != expected
    assert ("raised", "cell_drop", 60.0) not in got


def test_a_partition_without_refill_is_restored_at_once() -> None:
    stored, _ = uninterrupted()
    _, keeper, warm, _ = new_owner()
    moved = [replace(r, partition=4) for r in stored]  # a partition with nothing pending
    assert not keeper.refilling((TOPIC, 4))
    assert warm.defer({"vehicle": moved}, keeper.refilling) == {"vehicle": moved}


def test_a_revoked_partition_forgets_its_held_alerts() -> None:
    stored, _ = uninterrupted()
    new, keeper, warm, emitted = new_owner()
    warm.defer({"vehicle": stored}, keeper.refilling)
    warm.forget([TP])
    warm.refilled(TP, [], True)
    assert new.open_alerts() == [] and emitted == []


CHARGER_RULES = """
[[rule]]
id = "hot_connector"
entity = "charger"
kind = "threshold"
severity = "major"
field = "connector_temp_c"
value = 80
for_s = 25
"""


def test_a_charger_topics_refill_warms_the_charger_engine() -> None:
    # The engine of the topic's kind, as the batch path evaluates it (storage_sink._evaluate):
    # a connector hot from 10 s, the crash after 20 s, raised at 40 s as without the crash.
    hot = [charger(s, temp=90) for s in (10, 20, 30, 40)]
    whole = engine_of("charger", CHARGER_RULES)
    assert whole.evaluate(hot[:2], partition=0, topic="chg") == []
    expected = raised(whole.evaluate(hot[2:], partition=0, topic="chg"))
    assert expected == [("hot_connector", CONNECTOR, at(40))]
    chargers, vehicles = engine_of("charger", CHARGER_RULES), engine()
    emitted: list[AlertChange] = []
    topics = {"chg": "charger", "tcec": "charger", TOPIC: "vehicle"}
    warm = RefillWarm({"charger": chargers, "vehicle": vehicles}, topics, emitted.extend)
    warm.refilled(("chg", 0), list(hot[:2]), True)
    assert len(vehicles) == 0 and emitted == []
    assert raised(chargers.evaluate(hot[2:], partition=0, topic="chg")) == expected
