"""The steps after a drain that touch every shard (merging latest_state, deleting acknowledged
outbox rows) run each shard's part at once, so the caller's one bound (closing.FLUSH_LATEST_S,
closing.DELETE_PUBLISHED_S) covers them together. Shard after shard, a stalled shard 0 used the
whole bound up and shard 1's merge or delete never ran.

The shard writers and pools are stand-ins: shard 0's step uses up its cancellation and waits
on (asyncpg on a server that answers nothing), shard 1's records that it was reached."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest

from ingest.pipeline.closing import DELETE_PUBLISHED_S, FLUSH_LATEST_S, close_within, left_behind
from ingest.pipeline.latest_keeper import LatestKeeper
from ingest.pipeline.publish import delete_acked
from storage.latest_pending import PendingLatest

pytestmark = pytest.mark.unit

# A safety net for the leftovers' end, far above the bounds under test.
NET_S = 30.0


class _Stall:
    """Uses up its cancellation and waits on, until the test releases it."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def __call__(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
        await self.release.wait()


class _ShardWriter:
    def __init__(self, stall: _Stall | None) -> None:
        self.latest = PendingLatest(interval_s=1.0)
        self.stall = stall
        self.merged: list[Any] = []

    async def flush_latest(self, partitions: Iterable[Any], *, skip_locked: bool = False) -> int:
        if self.stall is not None:
            await self.stall()
        self.merged.extend(partitions)
        return 0


class _Pool:
    """Shard 0's acquire stalls; shard 1's is noted, then fails (no connection is needed to
    see that its delete was reached)."""

    def __init__(self, stall: _Stall | None) -> None:
        self.stall = stall
        self.acquired = 0

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        self.acquired += 1
        if self.stall is not None:
            await self.stall()
        raise OSError("no database in this test")
        yield  # pragma: no cover


class _Shard:
    def __init__(self, stall: _Stall | None) -> None:
        self.pool = _Pool(stall)


async def _release(stall: _Stall) -> None:
    left = left_behind()
    stall.release.set()
    await asyncio.wait(left or {asyncio.ensure_future(asyncio.sleep(0))}, timeout=NET_S)


async def test_a_stalled_shard_does_not_starve_the_other_shards_merge() -> None:
    stall = _Stall()
    writers = [_ShardWriter(stall), _ShardWriter(None)]
    keeper = LatestKeeper(lambda: writers, shard_of=lambda p: p % 2)
    try:
        finished = await close_within(
            "merging latest_state",
            lambda: keeper.flush([("veh", 0), ("veh", 1)]),
            FLUSH_LATEST_S,
            verb="finish",
        )
        assert not finished  # shard 0 stalled past the bound
        assert writers[1].merged == [("veh", 1)], "shard 1's merge waited for shard 0's"
    finally:
        await _release(stall)


async def test_a_stalled_shard_does_not_starve_the_other_shards_delete() -> None:
    stall = _Stall()
    shards = [_Shard(stall), _Shard(None)]
    acked = {(0, 7), (1, 8)}
    try:
        finished = await close_within(
            "deleting the published alert messages' outbox rows",
            lambda: delete_acked(acked, shards.__getitem__),
            DELETE_PUBLISHED_S,
            verb="finish",
        )
        assert not finished  # shard 0 stalled past the bound
        assert shards[1].pool.acquired == 1, "shard 1's delete waited for shard 0's"
    finally:
        await _release(stall)
