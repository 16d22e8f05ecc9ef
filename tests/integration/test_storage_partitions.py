"""Plain PostgreSQL partitions on demand, on the real cluster: an in-window frame time older
than the pre-made partitions is stored (its partitions created once, cached), two writers
creating the same slot at once both succeed, a partition dropped behind the cache is recreated,
and bisecting an unexpected row error is bounded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contract.clock import CHINA_TZ
from contract.rows import FrameRows
from devtools.sim.synthetic import frame_rows, vin
from storage import OffsetRange, PoolParams, RetryParams, StorageWriter
from storage.errors import SchemaError
from storage.params import TIMESERIES_TABLES, WriterParams
from storage.partitions import align

pytestmark = pytest.mark.integration

TP = ("nev.vehicle.raw", 0)
NOW = datetime.now(CHINA_TZ).replace(microsecond=0)
# Within the 3-year retention, far before the 8-day backfill; noon UTC, so that an hour later is
# still the same day slot whatever the time of day the test runs at.
OLD = (NOW - timedelta(days=400)).astimezone(UTC).replace(hour=12, minute=0, second=0)


Factory = Callable[..., Awaitable[StorageWriter]]


# Like test_storage_writer.py's writer_factory (``duplicates`` pairs them by shape), with this
# module's own defaults (day partitions, its application name, no loader parameter).
@pytest.fixture
async def writers(migrated_database: str) -> AsyncIterator[Factory]:
    opened: list[StorageWriter] = []

    async def make(group: str = "g", **kw: Any) -> StorageWriter:
        kw.setdefault("partition_interval", timedelta(days=1))
        kw.setdefault("retry", RetryParams(attempts=3, initial=0.01, maximum=0.05))
        params = WriterParams(consumer_group=group, **kw)
        w = await StorageWriter.open(
            PoolParams(dsn=migrated_database, application_name="nev-test-parts"), params
        )
        opened.append(w)
        return w

    yield make
    for w in opened:
        await w.close()


async def partitions(w: StorageWriter, table: str = "vehicle_telemetry") -> set[str]:
    async with w.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = $1::regclass",
            f"nev.{table}",
        )
    return {r["relname"] for r in rows}


def frames(start: datetime, n: int, first_vin: int = 0) -> list[FrameRows]:
    return [frame_rows(vin(first_vin + i), start + timedelta(seconds=i)) for i in range(n)]


async def test_an_old_in_window_frame_gets_its_partitions_once(writers: Factory) -> None:
    w = await writers()
    before = await partitions(w)
    batch = [*frames(NOW, 3), *frames(OLD, 2, 10), *frames(OLD - timedelta(days=1), 1, 20)]
    res = await w.write_batch(batch, {TP: OffsetRange(None, 6)})
    assert res.frames == 6 and not res.rejected and res.bisect_loads == 0
    # two new day slots, each for every time-series table; the current one was pre-made
    assert res.partitions_created == 2 * len(TIMESERIES_TABLES)
    assert len(await partitions(w) - before) == 2
    again = await w.write_batch(frames(OLD + timedelta(hours=1), 2, 30), {TP: OffsetRange(6, 8)})
    assert again.partitions_created == 0 and again.frames == 2  # the cache knew the slot
    async with w.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM vehicle_telemetry WHERE ts < $1", NOW) == 5


async def test_two_writers_creating_the_same_slot_at_once_both_commit(writers: Factory) -> None:
    a, b = await writers("ga"), await writers("gb")
    before = await partitions(a)
    ra, rb = await asyncio.gather(
        a.write_batch(frames(OLD, 4), {TP: OffsetRange(None, 4)}),
        b.write_batch(frames(OLD, 4, 100), {TP: OffsetRange(None, 4)}),
    )
    assert ra.frames == rb.frames == 4 and not ra.rejected and not rb.rejected
    assert ra.partitions_created + rb.partitions_created == len(TIMESERIES_TABLES)
    assert len(await partitions(a) - before) == 1


async def test_a_partition_dropped_behind_the_cache_is_made_again(writers: Factory) -> None:
    w = await writers()
    await w.write_batch(frames(OLD, 1), {TP: OffsetRange(None, 1)})
    slot = align(OLD.astimezone(UTC), timedelta(days=1))
    async with w.pool.acquire() as conn:
        for table in TIMESERIES_TABLES:  # as retention, or an operator, would
            await conn.execute(f"DROP TABLE nev.{table}_p{slot:%Y%m%d%H%M}")
    res = await w.write_batch(frames(OLD, 2, 50), {TP: OffsetRange(1, 3)})
    assert res.frames == 2 and not res.rejected and res.bisect_loads == 0
    assert res.partitions_created == len(TIMESERIES_TABLES)


def with_bad_rows(start: datetime) -> list[FrameRows]:
    batch = frames(start, 64)
    for i in (5, 40):  # a pack number no column can hold: a truly unexpected row error
        batch[i].packs[0] = batch[i].packs[0]._replace(pack=70000)
    return batch


async def test_bisecting_an_unexpected_row_error_is_bounded(writers: Factory) -> None:
    w = await writers(bisect_max_loads=3)
    res = await w.write_batch(
        with_bad_rows(NOW - timedelta(minutes=5)), {TP: OffsetRange(None, 64)}
    )
    assert res.bisect_loads == 3  # the bound, not the ~12 loads a full bisect takes
    rejected = {r.index for r in res.rejected}
    assert {5, 40} <= rejected and len(rejected) < 64
    assert any("not isolated" in r.detail for r in res.rejected)
    assert res.frames == 64 - len(rejected) and res.committed == {TP: 64}
    unbounded = await writers("g2")
    full = await unbounded.write_batch(
        with_bad_rows(NOW - timedelta(minutes=20)), {TP: OffsetRange(None, 64)}
    )
    assert {r.index for r in full.rejected} == {5, 40} and full.bisect_loads > 3


async def test_a_same_named_table_that_is_no_partition_fails_loudly(writers: Factory) -> None:
    w = await writers()
    slot = align(OLD.astimezone(UTC), timedelta(days=1))
    stray = f"vehicle_telemetry_p{slot:%Y%m%d%H%M}"
    async with w.pool.acquire() as conn:  # a leftover of a restore, or detached by hand
        await conn.execute(f"CREATE TABLE nev.{stray} (LIKE nev.vehicle_telemetry)")
    with pytest.raises(SchemaError) as caught:
        await w.write_batch(frames(OLD, 2), {TP: OffsetRange(None, 2)})
    message = str(caught.value)
    assert f"nev.{stray}" in message and "not a partition of nev.vehicle_telemetry" in message
    assert "\n" not in message  # one line, saying what to do
    async with w.pool.acquire() as conn:  # nothing of the batch committed, offsets included
        assert await conn.fetchval("SELECT count(*) FROM vehicle_telemetry") == 0
        assert await conn.fetchval("SELECT count(*) FROM consumer_offsets") == 0
