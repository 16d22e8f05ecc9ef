"""Partition DDL against a parent table another session holds (a pg_dump, a report idle in its
transaction), on the real cluster: the DDL gives up after ``DDL_LOCK_TIMEOUT`` instead of
waiting up to statement_timeout with every writer queued behind it. Maintenance leaves that
table to its next pass and does the others; the writer retries the batch and loses nothing.

Without the lock timeout the DDL would wait for the reader until statement_timeout: the
sessions here have one longer than the tests' deadlines, so the tests fail rather than pass
late."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from devtools.sim.synthetic import frame_rows, vin
from storage import OffsetRange, PoolParams, RetryParams, StorageWriter
from storage.batch import WriterHooks
from storage.maintenance import run
from storage.params import TIMESERIES_TABLES, SchemaMode, StorageParams, WriterParams
from storage.partitions import align, ensure
from tests.integration.pipeline_support import until

pytestmark = pytest.mark.integration

DAY = timedelta(days=1)
LONG_TIMEOUT = {"statement_timeout": "30000", "search_path": "nev, public"}
NOW = datetime.now(UTC)


async def test_maintenance_defers_a_locked_table_and_does_the_others(
    migrated_database: str,
) -> None:
    conn = await asyncpg.connect(migrated_database, server_settings=LONG_TIMEOUT)
    try:
        old = align(NOW - timedelta(days=1200), DAY)  # past the 1,095-day retention
        await ensure(conn, "nev", ["vehicle_telemetry"], [(old, old + DAY)], DAY)
        later = NOW + timedelta(days=3)  # the premake window now needs new slots
        reader = await asyncpg.connect(migrated_database)
        try:
            async with reader.transaction():
                await reader.fetchval("SELECT count(*) FROM nev.vehicle_telemetry")
                report = await run(conn, StorageParams(), SchemaMode.PLAIN, now=later)
        finally:
            await reader.close()
        stale = f"vehicle_telemetry_p{old:%Y%m%d%H%M}"
        assert report.deferred == [
            "partitions of vehicle_telemetry not created",
            f"partition {stale} not dropped",
        ]
        assert not [n for n in report.created if n.startswith("vehicle_telemetry_")]
        others = {n.rsplit("_p", 1)[0] for n in report.created}
        assert others == set(TIMESERIES_TABLES) - {"vehicle_telemetry"}
        assert any("next pass tries again" in line for line in report.lines())
        # the reader gone, the next pass does what was left
        again = await run(conn, StorageParams(), SchemaMode.PLAIN, now=later)
        assert again.deferred == [] and again.dropped == [stale]
        assert {n.rsplit("_p", 1)[0] for n in again.created} == {"vehicle_telemetry"}
    finally:
        await conn.close()


class Retries(WriterHooks):
    def __init__(self) -> None:
        self.errors: list[BaseException] = []

    def on_retry(self, attempt: int, delay_s: float, error: BaseException) -> None:
        self.errors.append(error)


async def test_the_writer_retries_a_slot_whose_parent_is_locked_and_loses_nothing(
    migrated_database: str,
) -> None:
    hooks = Retries()
    writer = await StorageWriter.open(
        PoolParams(dsn=migrated_database, statement_timeout_ms=60_000),
        WriterParams(
            consumer_group="g",
            partition_interval=DAY,
            retry=RetryParams(attempts=1000, initial=0.05, maximum=0.2),
        ),
        hooks=hooks,
    )
    old = (NOW - timedelta(days=400)).replace(hour=12, minute=0, second=0, microsecond=0)
    batch = [frame_rows(vin(i), old + timedelta(seconds=i)) for i in range(5)]
    reader = await asyncpg.connect(migrated_database)
    try:
        tx = reader.transaction()
        await tx.start()
        await reader.fetchval("SELECT count(*) FROM nev.vehicle_telemetry")
        write = writer.write_batch(batch, {("nev.vehicle.raw", 0): OffsetRange(None, 5)})
        task = asyncio.ensure_future(write)

        async def gave_up_on_the_lock() -> bool:
            assert not task.done(), task.result()  # nothing commits while the reader holds on
            return any(isinstance(e, asyncpg.LockNotAvailableError) for e in hooks.errors)

        await until(gave_up_on_the_lock, timeout_s=30, what="the partition DDL's lock timeout")
        await tx.rollback()
        result = await task
        assert result.frames == 5 and not result.rejected
        assert result.partitions_created == len(TIMESERIES_TABLES)
        assert await reader.fetchval("SELECT count(*) FROM nev.vehicle_telemetry") == 5
    finally:
        await reader.close()
        await writer.close()
