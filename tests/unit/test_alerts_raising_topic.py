"""A charger alert belongs to the (topic, partition) of the frame that raised it, not to the
path its connector was first seen on: after a rebalance that puts the two charger paths'
partitions on different workers, each owner restores the alerts its own frames can judge
(docs/alerts.md, "Partitions and kinds")."""

from __future__ import annotations

import pytest

from alerts import AlertChange, RuleEngine
from tests.unit.alerts_entities_support import (
    CONNECTOR,
    at,
    charge_status_push,
    charger,
    cleared,
    engine,
    raised,
    status_push,
)

pytestmark = pytest.mark.unit

RAW, TCEC = "nev.charger.raw", "nev.charger.tcec"
NOW = at(10**5)
HOT = "connector_over_temp"
STUCK = "connector_stuck_in_fault"


def where(changes: list[AlertChange], rule: str) -> list[tuple[str, str | None, int | None]]:
    return [(c.type, c.alert.topic, c.alert.partition) for c in changes if c.alert.rule_id == rule]


def hot_by_raw_on_a_tcec_connector() -> tuple[RuleEngine, list[AlertChange]]:
    """One worker owns tcec-3 and raw-5; the connector is first seen by a T/CEC push, then
    its binary frames report 95 °C twice."""
    e = engine("charger")
    e.evaluate([status_push(0, 3)], now_ms=NOW, partition=3, topic=TCEC)
    hot = [charger(10, temp=95), charger(20, temp=95)]
    return e, e.evaluate(hot, now_ms=NOW, partition=5, topic=RAW)


def test_an_alert_is_stamped_with_the_topic_and_partition_of_its_raising_frame() -> None:
    _, changes = hot_by_raw_on_a_tcec_connector()
    assert where(changes, HOT) == [("raised", RAW, 5)]


def test_after_a_split_rebalance_the_raw_owner_restores_the_alert_and_clears_it() -> None:
    _, changes = hot_by_raw_on_a_tcec_connector()
    records = [c.alert for c in changes]
    # Each owner restores its (topic, partition)'s rows (store.load_open by topic).
    tcec_owner, raw_owner = engine("charger"), engine("charger")
    assert tcec_owner.restore([r for r in records if r.topic == TCEC]) == []
    assert raw_owner.restore([r for r in records if r.topic == RAW]) == []
    assert [r.rule_id for r in raw_owner.open_alerts()] == [HOT]
    assert tcec_owner.open_alerts() == []
    # Pushes carry no temperature: the T/CEC owner could never have cleared it.
    pushes = [status_push(100, 1), charge_status_push(200)]
    assert tcec_owner.evaluate(pushes, now_ms=NOW, partition=3, topic=TCEC) == []
    cool = [charger(30 + i * 10, temp=30) for i in range(5)]
    got = raw_owner.evaluate(cool, now_ms=NOW, partition=5, topic=RAW)
    assert cleared(got) == [(HOT, at(30))]
    assert where(got, HOT) == [("cleared", RAW, 5)]
    assert raw_owner.open_alerts() == []


def test_a_fault_raised_by_pushes_belongs_to_tcec_and_a_binary_frame_still_clears_it() -> None:
    """The mirror case, on a connector first seen on raw; one worker owns both partitions:
    one entity state, so the other path's frame clears the alert, which keeps its own
    (topic, partition) (its row and outbox record go to that partition's owner)."""
    e = engine("charger")
    e.evaluate([charger(-10, status=3)], now_ms=NOW, partition=5, topic=RAW)
    faults = [status_push(0, 255), status_push(1900, 255)]
    got = e.evaluate(faults, now_ms=NOW, partition=3, topic=TCEC)
    assert raised(got) == [(STUCK, CONNECTOR, at(1900))]
    assert where(got, STUCK) == [("raised", TCEC, 3)]
    ok = e.evaluate([charger(1910, status=3)], now_ms=NOW, partition=5, topic=RAW)
    assert cleared(ok) == [(STUCK, at(1910))]
    assert where(ok, STUCK) == [("cleared", TCEC, 3)]
