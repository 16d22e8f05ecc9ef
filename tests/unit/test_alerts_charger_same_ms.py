"""Charger rules over T/CEC status pushes of one millisecond (TimeStamp + Seq µs, in Seq order:
alerts.subjects): an alert's identity keeps milliseconds (alerts.store), so an episode raised in
the millisecond another one cleared in must open after that clear (docs/alerts.md, "Entity
kinds"). tests/integration/test_pipeline_tcec_same_ms.py runs the same through the store."""

from __future__ import annotations

from alerts.model import AlertChange
from tests.unit.alerts_entities_support import CONNECTOR, at, cleared, engine, raised, status_push

FAULT = """
[[rule]]
id = "fault"
entity = "charger"
kind = "threshold"
severity = "major"
title = "connector in fault"
field = "connector_status"
op = "=="
value = 255
"""
US = 0.000_001  # T/CEC status pushes of one second are Seq µs apart


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
