"""ingest.pipeline.waiting: waiting alert changes keep the engine's order per alert."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import pytest

from ingest.pipeline.backpressure import Backpressure
from ingest.pipeline.batch import BatchBuilder
from ingest.pipeline.evaluation import AlertWork
from ingest.pipeline.waiting import Hold, Waiting
from tests.unit.test_pipeline_inflight_release import TOPIC, _decode, _fill, _writer

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class _Alert:
    entity_id: str
    partition: int
    entity_kind: str = "charger"
    rule_id: str = "fault"
    topic: str = "tcec"


@dataclass(frozen=True)
class _Change:
    type: str
    alert: _Alert


def _change(kind: str, entity: str = "c1", partition: int = 1) -> Any:
    return _Change(kind, _Alert(entity, partition))


def _waiting() -> Waiting:
    return Waiting(lambda c: (c.alert.partition or 0) % 2)  # partition 1: shard 1


RAW0 = ("raw", 0)
TCEC1 = ("tcec", 1)


def test_a_change_behind_a_held_one_waits_and_goes_after_it() -> None:
    w = _waiting()
    clear, other = _change("cleared"), _change("raised", entity="c2")
    b0, b1 = Hold(), Hold()
    assert w.route(0, [clear], RAW0, b0) == []  # another shard's alert: waits
    raise_ = _change("raised")
    # Shard 1's own batch: the same alert waits behind the clear, another one does not.
    assert w.route(1, [raise_, other], TCEC1, b1) == [other]
    w.settle(b1, set())
    assert w.take(1, Hold()) == []  # the clear's batch has not committed: both stay
    assert not w.ready()  # no changes-only batch for them yet
    w.settle(b0, set())
    assert w.take(1, Hold()) == [(clear, RAW0), (raise_, TCEC1)]
    assert not w.ready()


def test_a_fenced_frames_change_goes_and_frees_what_waited_behind_it() -> None:
    w = _waiting()
    clear, raise_ = _change("cleared"), _change("raised")
    b0, b1 = Hold(), Hold()
    w.route(0, [clear], RAW0, b0)
    w.route(1, [raise_], TCEC1, b1)
    w.settle(b1, set())
    w.settle(b0, {RAW0})
    assert w.take(1, Hold()) == [(raise_, TCEC1)]


def test_an_abandoned_batchs_changes_go_with_its_partitions() -> None:
    w = _waiting()
    clear, raise_ = _change("cleared"), _change("raised")
    b0, b1 = Hold(), Hold()
    w.route(0, [clear], RAW0, b0)
    w.route(1, [raise_], TCEC1, b1)
    w.settle(b1, set())
    w.lost({RAW0}, lambda topic, partition: (topic, partition) == RAW0)
    taker = Hold()
    assert w.take(1, taker) == [(raise_, TCEC1)]
    w.settle(taker, set())
    w.settle(b0, set())  # it committed after all: its clear comes back, behind
    assert w.take(1, Hold()) == [(clear, RAW0)]


def test_a_taken_change_holds_its_alerts_later_changes_until_its_batch_commits() -> None:
    w = _waiting()
    clear, raise_ = _change("cleared"), _change("raised")
    b0 = Hold()
    assert w.route(0, [clear], RAW0, b0) == []
    w.settle(b0, set())
    taker = Hold()  # a batch of shard 1 (lane 2) takes the clear...
    assert w.take(1, taker) == [(clear, RAW0)]
    # ...and while it is uncommitted, the other lane's batch evaluates the next raise: it
    # waits, or its transaction could commit first (merged into the open row, then closed).
    b1 = Hold()
    assert w.route(1, [raise_], TCEC1, b1) == []
    w.settle(b1, set())
    assert w.take(1, Hold()) == [] and not w.ready()
    w.settle(taker, set())  # the clear is saved: the raise goes next
    assert w.take(1, Hold()) == [(raise_, TCEC1)]


def test_a_batch_saves_its_own_change_after_the_one_it_took() -> None:
    w = _waiting()
    clear, raise_ = _change("cleared"), _change("raised")
    w.add([clear])  # a restore's
    own = Hold()
    assert w.take(1, own) == [(clear, None)]
    assert w.route(1, [raise_], TCEC1, own) == [raise_]  # its transaction saves both, in order


def test_the_changes_an_abandoned_batch_took_go_with_it() -> None:
    w = _waiting()
    clear, raise_ = _change("cleared"), _change("raised")
    b0 = Hold()
    w.route(0, [clear], RAW0, b0)
    w.settle(b0, set())
    taker = Hold()
    assert w.take(1, taker) == [(clear, RAW0)]  # a batch never committed (revoked)
    taker.abandoned = True  # Batch.abandon, by the writer's abandon
    w.lost({("tcec", 3)}, lambda topic, partition: (topic, partition) == ("tcec", 3))
    assert w.route(1, [raise_], TCEC1, Hold()) == [raise_]  # not held back for good


def test_a_committed_frames_change_to_a_lost_partitions_alert_goes() -> None:
    w = _waiting()
    clear, other = _change("cleared"), _change("cleared", entity="c2", partition=3)
    b0 = Hold()
    w.route(0, [clear, other], RAW0, b0)
    w.settle(b0, set())
    lost = {RAW0, TCEC1}
    # tcec[1]'s next owner restores the alert open: the clear, saved here, closed its row.
    w.lost(lost, lambda topic, partition: (topic, partition) in lost)
    assert w.take(1, Hold()) == [(other, RAW0)]  # tcec[3]'s alert: still this worker's


def test_a_change_taken_by_a_live_batch_keeps_holding_its_alert_through_a_lost() -> None:
    w = _waiting()
    clear, update, raise_ = _change("cleared"), _change("updated"), _change("raised")
    b0 = Hold()
    w.route(0, [clear], RAW0, b0)
    w.settle(b0, set())
    taker = Hold()
    assert w.take(1, taker) == [(clear, RAW0)]
    # Another partition lost: the taking batch (of tcec[1], not lost) is still live.
    w.lost({("raw", 4)}, lambda topic, partition: (topic, partition) == ("raw", 4))
    b1 = Hold()
    assert w.route(1, [raise_], TCEC1, b1) == []  # the other lane's: behind the clear
    # Shard 0's batch evaluates an update, then the taking batch a later raise: that one is
    # not its own (the update, evaluated before it, waits).
    b2 = Hold()
    assert w.route(0, [update], RAW0, b2) == []
    later = _change("raised")
    assert w.route(1, [later], TCEC1, taker) == []
    for hold in (b1, taker, b2):
        w.settle(hold, set())
    assert [c.type for c, _ in w.take(1, Hold())] == ["raised", "updated", "raised"]


def test_a_dropped_batch_that_commits_puts_back_no_change_to_a_lost_partitions_alert() -> None:
    w = _waiting()
    clear, other = _change("cleared"), _change("cleared", entity="c2", partition=3)
    b0 = Hold()
    assert w.route(0, [clear, other], RAW0, b0) == []
    lost = {RAW0, TCEC1}
    w.lost(lost, lambda topic, partition: (topic, partition) in lost)
    w.settle(b0, set())  # it committed after all: tcec[3]'s clear is back, tcec[1]'s is not
    assert w.take(1, Hold()) == [(other, RAW0)]


def test_a_later_lost_removes_its_alerts_changes_from_a_dropped_batch() -> None:
    w = _waiting()
    clear, other = _change("cleared"), _change("cleared", entity="c2", partition=3)
    b0 = Hold()
    w.route(0, [clear, other], RAW0, b0)
    w.lost({RAW0}, lambda topic, partition: (topic, partition) == RAW0)
    w.lost({TCEC1}, lambda topic, partition: (topic, partition) == TCEC1)
    w.settle(b0, set())
    assert w.take(1, Hold()) == [(other, RAW0)]


def test_the_writers_abandon_marks_the_holds_of_the_batches_it_gives_up() -> None:
    # What lets ``lost`` tell an abandoned taking batch (its taken changes go) from a live one.
    bp = Backpressure(1000, max_bytes=10**6)
    builder = BatchBuilder({TOPIC: _decode})
    _fill(builder, bp)
    writer = _writer(bp)
    writer.submit(builder.take())  # split over the two lanes
    lane = writer._lanes[0]
    lane.current = lane.queue.popleft()  # one being written, the other queued
    batches = [lane.current, *writer._lanes[1].queue]
    for batch in batches:
        batch.alert_work = AlertWork(deque())
    writer.abandon("revoked")
    assert all(b.alert_work.hold.abandoned for b in batches)
