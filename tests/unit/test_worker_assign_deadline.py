"""The assignment callback's reads share one deadline (a third of the session: aiokafka starts
the heartbeat only once the callback returns). A read that deadline cut short is not the
database failing: a healthy restore with more work than the time left must not mark the shard
unhealthy (its partitions, and with one shard the whole consumer, paused as "database
unreachable") nor back its next attempt off; the consume loop goes on with it at once. A read
that fails within its own bound still does both.

The sink is a stand-in whose restore page outlasts the deadline (or fails); the worker is the
real one. What is tested is ``Worker._load_shard``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka import TopicPartition

from ingest.pipeline.closing import left_behind
from ingest.pipeline.worker import Worker
from tests.unit.worker_support import bare_worker

pytestmark = pytest.mark.unit

TP = TopicPartition("nev.vehicle.raw", 3)

# A safety net against a hang, far above the deadlines under test; nothing asserts a speed.
NET_S = 30.0


class _Sink:
    """Stored offsets at once; a restore page that takes until released (``fail``: raises)."""

    def __init__(self, *, fail: bool = False) -> None:
        self.release = asyncio.Event()
        self.fail = fail
        self.untils: list[float | None] = []

    async def stored_offsets(self, partitions: Sequence[Any]) -> dict[Any, int | None]:
        return {tp: 100 for tp in partitions}

    async def on_partitions_assigned(
        self, partitions: Sequence[Any], *, until: float | None = None
    ) -> list[Any]:
        self.untils.append(until)
        if self.fail:
            raise OSError("connection refused")
        await self.release.wait()  # one page, longer than the deadline
        return list(partitions)

    def on_partitions_lost(self, partitions: Sequence[Any]) -> None:
        pass


def _worker(sink: _Sink) -> Worker:
    w = bare_worker(sink)
    w.owned = {TP}
    w.needs_seek = {TP}
    return w


async def test_a_restore_the_callback_s_deadline_cut_short_is_not_a_database_failure() -> None:
    sink = _Sink()
    w = _worker(sink)
    deadline = time.monotonic() + 0.2
    try:
        await asyncio.wait_for(w._load_shard(0, [TP], w._assignments, deadline), NET_S)
        assert sink.untils == [deadline]  # the sink was told when to end its slice
        assert TP in w.needs_seek and TP not in w.restored  # still pending, still paused
        assert w.bp.unhealthy == set(), "a healthy but long restore was taken for a failure"
        assert 0 not in w._retry_at  # the consume loop goes on with it at once
    finally:
        sink.release.set()
        left = left_behind()
        if left:
            await asyncio.wait(left, timeout=NET_S)


async def test_a_read_that_fails_within_its_bound_still_marks_the_shard() -> None:
    sink = _Sink(fail=True)
    w = _worker(sink)
    await asyncio.wait_for(w._load_shard(0, [TP], w._assignments, time.monotonic() + NET_S), NET_S)
    assert w.bp.unhealthy == {0} and 0 in w._retry_at
