"""A revoke's steps after its drain are bounded for real: a step that swallows its cancellation
and waits on (asyncpg's ROLLBACK on a stalled server, after a cancelled merge) is left behind at
its bound with one WARNING, and the revoke goes on. ``asyncio.wait_for`` cancelled it and then
waited on, and ``delete_published`` had no bound at all: the rebalance callback, which every
member of the group waits for, was held as long as the database was.

The sink and the shard writer are stand-ins whose step swallows its cancellation; the writer's
drain is tests/unit/test_writer*.py's. What is tested is the worker's ``on_revoked``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

import pytest
from aiokafka import TopicPartition

from ingest.pipeline.closing import COMMIT_FLUSH_S, DELETE_PUBLISHED_S, FLUSH_LATEST_S, left_behind
from ingest.pipeline.commits import KafkaCommitter
from ingest.pipeline.latest_keeper import LatestKeeper
from ingest.pipeline.worker import Worker
from storage.latest_pending import PendingLatest
from tests.unit.worker_support import bare_worker

pytestmark = pytest.mark.unit

# A safety net against a hang (a regression fails instead of holding the suite), far above the
# bounds under test; nothing here asserts how fast anything is.
NET_S = 30.0

TP = TopicPartition("nev.vehicle.raw", 3)


class _Stall:
    """A database step that uses up its cancellation and waits on, until the test releases it."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = 0

    async def __call__(self) -> None:
        self.entered += 1
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
        await self.release.wait()


class _ShardWriter:
    """The storage writer of shard 0: its merge stalls when ``stall`` is."""

    def __init__(self, stall: _Stall | None) -> None:
        self.latest = PendingLatest(interval_s=1.0)
        self._stall = stall

    async def flush_latest(self, partitions: Iterable[Any], *, skip_locked: bool = False) -> int:
        if self._stall is not None:
            await self._stall()
        return 0


class _Sink:
    def __init__(self, flush: _Stall | None, delete: _Stall | None) -> None:
        writers = [_ShardWriter(flush)]
        self.latest = LatestKeeper(lambda: writers, shard_of=lambda p: 0)
        self._delete = delete
        self.deleted = 0
        self.lost: list[Any] = []

    async def delete_published(self) -> None:
        self.deleted += 1
        if self._delete is not None:
            await self._delete()

    def on_partitions_lost(self, partitions: list[Any]) -> None:
        self.lost.extend(partitions)


class _Writer:
    """Drained at once: nothing in flight when the partitions go."""

    generation = 0

    def __init__(self) -> None:
        self.forgotten: set[Any] = set()

    async def drain(self, timeout_s: float) -> bool:
        return True

    def forget(self, tps: set[Any]) -> None:
        self.forgotten |= tps


class _Committer(KafkaCommitter):
    """Kafka's copy of the offsets, whose flush stalls (a broker that answers nothing)."""

    def __init__(self, stall: _Stall, owned: Any) -> None:
        super().__init__(None, owned)
        self._stall = stall

    async def flush(self) -> None:
        await self._stall()


def _worker(sink: _Sink) -> Worker:
    w = bare_worker(sink)
    w.writer = _Writer()  # type: ignore[assignment]
    # Nothing pending: its flush commits nothing and never reaches the consumer.
    w.committer = KafkaCommitter(None, lambda: w.owned)
    w.owned = {TP}
    w.positions[TP] = 100
    return w


@pytest.mark.parametrize(
    ("stalled", "bound"),
    [
        ("merging latest_state", FLUSH_LATEST_S),
        ("deleting the published alert messages' outbox rows", DELETE_PUBLISHED_S),
        ("Kafka's copy of the offsets", COMMIT_FLUSH_S),
    ],
)
async def test_a_revoke_step_that_swallows_its_cancel_is_left_behind_and_the_revoke_goes_on(
    stalled: str, bound: float, caplog: pytest.LogCaptureFixture
) -> None:
    stall = _Stall()
    merging = stalled.startswith("merging")
    deleting = stalled.startswith("deleting")
    sink = _Sink(flush=stall if merging else None, delete=stall if deleting else None)
    w = _worker(sink)
    if not (merging or deleting):
        w.committer = _Committer(stall, lambda: w.owned)
    caplog.set_level(logging.WARNING)
    revoking = asyncio.ensure_future(w.on_revoked({TP}))
    left: list[asyncio.Task[Any]] = []
    try:
        done, _ = await asyncio.wait({revoking}, timeout=NET_S)
        assert done, "the revoke waited for a step that swallowed its cancellation"
        await revoking
        assert stall.entered == 1
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        (warning,) = [m for m in warnings if "did not finish" in m]
        assert warning.startswith(
            f"{stalled} did not finish within {bound:g}s: left behind, the revoke goes on "
            "without it"
        ), warning
        # The steps after it and the revoke's bookkeeping ran all the same.
        assert sink.deleted == 1
        assert sink.lost == [TP] and w.owned == set() and TP not in w.positions
        writer: Any = w.writer
        assert writer.forgotten == {TP}
    finally:
        left += left_behind()
        stall.release.set()
        await asyncio.wait({revoking, *left}, timeout=NET_S)
