"""Charger rules over T/CEC status pushes of one millisecond (TimeStamp + Seq µs, in Seq order:
alerts.subjects): an alert's identity keeps milliseconds (alerts.store), so an episode raised in
the millisecond another one cleared in must open after that clear (docs/alerts.md, "Entity
kinds"); tests/integration/test_pipeline_tcec_same_ms.py runs that through the store. Rules
measure in ms: between two pushes of one millisecond a rate or ratio cannot tell."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest

from alerts.model import AlertChange
from contract.charger import ChargerRows
from ingest.decoders.charger import decode_tcec
from tests.unit.alerts_entities_support import (
    CID,
    CONNECTOR,
    FAULT,
    OP,
    T0,
    US,
    at,
    cleared,
    engine,
    raised,
    status_push,
)

pytestmark = pytest.mark.unit


def consistent(changes: list[AlertChange]) -> None:
    """What save_changes stores: no episode seen or cleared before it opened."""
    for c in changes:
        a = c.alert
        assert a.last_seen_ms >= a.opened_ms
        assert a.cleared_ms is None or a.cleared_ms >= a.opened_ms


def test_a_fault_back_within_its_millisecond_opens_after_the_clear() -> None:
    e = engine("charger", FAULT, update_every_s=0)
    # Seq 0001 fault, 0003 occupied, 0005 fault again: one millisecond
    changes = e.evaluate(
        [status_push(60 + US, 255), status_push(60 + 3 * US, 2), status_push(60 + 5 * US, 255)]
    )
    consistent(changes)
    assert [c.type for c in changes] == ["raised", "cleared", "raised"]
    assert raised(changes) == [("fault", CONNECTOR, at(60)), ("fault", CONNECTOR, at(60) + 1)]
    assert cleared(changes) == [("fault", at(60))]
    assert changes[2].alert.trigger_ms == (at(60),)  # the push's own millisecond
    assert [a.opened_ms for a in e.open_alerts()] == [at(60) + 1]
    # the second episode clears in that millisecond too: at its opened_at, and a third opens
    # the millisecond after
    again = e.evaluate([status_push(60 + 7 * US, 2), status_push(60 + 9 * US, 255)])
    consistent(again)
    assert cleared(again) == [("fault", at(60) + 1)]
    assert raised(again) == [("fault", CONNECTOR, at(60) + 2)]


def test_a_fault_back_in_the_millisecond_of_its_recovery_opens_after_it() -> None:
    e = engine("charger", FAULT)
    assert raised(e.evaluate([status_push(0, 255)])) == [("fault", CONNECTOR, at(0))]
    changes = e.evaluate([status_push(60 + US, 2), status_push(60 + 3 * US, 255)])
    consistent(changes)
    assert cleared(changes) == [("fault", at(60))]
    assert raised(changes) == [("fault", CONNECTOR, at(60) + 1)]


def test_the_next_owner_opens_a_fault_of_the_cleared_millisecond_after_the_clear() -> None:
    first = engine("charger", FAULT)
    first.evaluate([status_push(0, 255)])
    (rec,) = [c.alert for c in first.evaluate([status_push(60 + US, 2)])]
    second = engine("charger", FAULT)
    assert second.restore([rec]) == []  # the stored clear: at(60), the ms only
    assert raised(second.evaluate([status_push(60 + 3 * US, 255)])) == [
        ("fault", CONNECTOR, at(60) + 1)
    ]


def test_a_rule_counting_frames_can_raise_again_within_a_millisecond() -> None:
    e = engine("charger", FAULT + "for_frames = 2\n")
    pushes = [255, 255, 2, 255, 255]  # Seq 0001..0009: raise, clear, raise again
    changes = e.evaluate([status_push(60 + (2 * k + 1) * US, s) for k, s in enumerate(pushes)])
    consistent(changes)
    assert raised(changes) == [("fault", CONNECTOR, at(60)), ("fault", CONNECTOR, at(60) + 1)]


# -- rates and ratios between two pushes of one millisecond: cannot tell ------------------------

RATE = """
[[rule]]
id = "status_rising"
entity = "charger"
kind = "rate"
severity = "major"
title = "status rising"
field = "connector_status"
rate_per_s = 1.0
sustain_s = 1
max_gap_s = 60
"""
RATIO = """
[[rule]]
id = "status_per_lock"
entity = "charger"
kind = "ratio"
severity = "major"
title = "status per lock status"
field = "connector_status"
per = "lock_status"
op = ">="
value = 0.1
min_per = 10
"""


def locked_push(s: float, status: int, lock: int) -> ChargerRows:
    """A stationStatus push at T0 + s with a LockStatus (0, 10 or 50)."""
    data = {"ConnectorStatusInfo": {"ConnectorID": CID, "Status": status, "LockStatus": lock}}
    pushed_at = T0 + timedelta(seconds=s)
    return decode_tcec(orjson.dumps(data), "notification_stationStatus", OP, pushed_at)


def test_a_push_in_the_millisecond_of_the_last_neither_clears_nor_breaks_a_rate() -> None:
    e = engine("charger", RATE, update_every_s=0)
    rising = [status_push(s, s + 1) for s in range(4)]
    assert raised(e.evaluate(rising)) == [("status_rising", CONNECTOR, at(2))]
    # 2 µs after the last push: 0 ms apart, no rate: the alert stays open
    assert e.evaluate([status_push(3 + 2 * US, 255)]) == []
    assert [a.rule_id for a in e.open_alerts()] == ["status_rising"]
    # the run goes on from the push before it (status 4 at 3 s), not from 255: 255 a second
    # later still rises
    assert cleared(e.evaluate([status_push(4, 255)])) == []
    assert [a.rule_id for a in e.open_alerts()] == ["status_rising"]


def test_a_push_in_the_millisecond_of_the_last_neither_clears_nor_restarts_a_ratio() -> None:
    e = engine("charger", RATIO, update_every_s=0)
    changes = e.evaluate([locked_push(0, 1, 0), locked_push(1, 2, 10)])
    assert raised(changes) == [("status_per_lock", CONNECTOR, at(1))]
    # 2 µs later, the status lower: 0 ms apart, not a new session: the alert stays open
    assert e.evaluate([locked_push(1 + 2 * US, 1, 10)]) == []
    assert [a.rule_id for a in e.open_alerts()] == ["status_per_lock"]
    # the run goes on from its start (status 1, lock 0): (3 - 1) / 10 holds, a new peak
    assert [c.type for c in e.evaluate([locked_push(2, 3, 10)])] == ["updated"]
    assert [a.peak for a in e.open_alerts()] == [0.2]
