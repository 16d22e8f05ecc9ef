"""Migration 0088 on the TimescaleDB engine (PGlite-TimescaleDB: one connection): energy over
the frames whose power is known, without losing an hour the 0003 continuous aggregates hold.

Before 0088 a frame with an unknown current (NULL) counted as 0 kW. A continuous aggregate
cannot be altered, so 0088 freezes the old ones and reads them before the cut-over (their
watermark), the new ones after; the hours whose raw rows retention dropped stay, and the hours
after the cut-over that the new refresh policy's window does not reach are materialised
before that policy exists (storage.policies)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from storage import PoolParams, StorageParams, migrate
from storage.connect import connect
from storage.migrate import MIGRATIONS_DIR
from tests.integration.test_storage_stats_energy import AMPS, FRAMES, HALF, HALF_KWH, UNKNOWN, VOLTS

pytestmark = pytest.mark.integration

HOUR = timedelta(hours=1)
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
GONE = NOW - timedelta(days=30)  # its chunk is dropped before the upgrade
OLD = NOW - 24 * HOUR  # materialised by the 0003 aggregates, raw rows kept
LATE = NOW - 10 * HOUR  # after their watermark, before the refresh policy's 6 h window
RECENT = NOW - 2 * HOUR  # inside that window: its first run moves the watermark past LATE
CUT = NOW - 20 * HOUR  # where the 0003 aggregates stopped materialising


@pytest.fixture
async def conn(timescale_dsn: str, unique_name: Callable[[str], str]) -> AsyncIterator[Any]:
    name = unique_name("ts")
    c = await connect(PoolParams(dsn=timescale_dsn, schema=name))
    try:
        await c.execute(f"CREATE SCHEMA {name}")
        await c.execute(f"SET search_path = {name}, public")
        yield c
    finally:
        await c.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        await c.close()


async def put_hour(conn: Any, start: datetime) -> None:
    for k in range(FRAMES):
        for vin, current in ((UNKNOWN, None), (HALF, AMPS if k % 2 == 0 else None)):
            await conn.execute(
                "INSERT INTO vehicle_telemetry (vin, ts, edition, command, extremes_derived, "
                "fault_count, total_voltage_v, total_current_a) "
                "VALUES ($1, $2, 2025, 2, false, 0, $3, $4)",
                vin,
                start + timedelta(seconds=10 * k),
                VOLTS,
                current,
            )


async def energy(conn: Any, view: str, vin: str, bucket: datetime) -> Any:
    row = await conn.fetchrow(
        f"SELECT frames, energy_out_kwh FROM {view} WHERE vin = $1 AND bucket = $2", vin, bucket
    )
    assert row is not None, f"{view} has no bucket {bucket} of {vin}"
    return row


async def test_0088_keeps_the_old_hours_and_counts_unknown_power_as_unknown(
    conn: Any, tmp_path: Path
) -> None:
    schema = await conn.fetchval("SELECT current_schema()")
    old = tmp_path / "migrations"
    old.mkdir()
    for path in MIGRATIONS_DIR.glob("*.sql"):
        if int(path.name[:4]) < 88:
            shutil.copy(path, old / path.name)
    await migrate(conn, StorageParams(schema=schema), directory=old)
    await conn.execute(f"SET search_path = {schema}, public")
    for start in (GONE, OLD):
        await put_hour(conn, start)
    for view in ("vehicle_stats_1m", "vehicle_stats_1h"):
        await conn.execute(f"CALL refresh_continuous_aggregate('{view}', NULL, '{CUT}')")
    # retention drops the oldest raw rows; the aggregates keep their hour
    await conn.execute(
        "SELECT drop_chunks('vehicle_telemetry', older_than => $1::timestamptz)",
        NOW - timedelta(days=10),
    )
    assert await conn.fetchval("SELECT count(*) FROM vehicle_telemetry WHERE ts < $1", OLD) == 0
    await put_hour(conn, LATE)
    await put_hour(conn, RECENT)
    before = {
        view: await conn.fetch(f"SELECT * FROM {view} WHERE bucket < $1 ORDER BY vin, bucket", CUT)
        for view in ("vehicle_stats_1m", "vehicle_stats_1h")
    }
    assert len(before["vehicle_stats_1h"]) == 4  # GONE and OLD, two vehicles
    # as storage.roles makes them: a view over the aggregate, with an option to keep
    await conn.execute(
        "CREATE VIEW vehicle_stats_1h_scoped WITH (security_barrier = true) AS "
        "SELECT * FROM vehicle_stats_1h WHERE vin LIKE 'LENERGY%'"
    )

    await migrate(conn, StorageParams(schema=schema))
    await conn.execute(f"SET search_path = {schema}, public")
    # the new aggregates' refresh policies run (their window: the last 6 hours)
    jobs = await conn.fetch(
        "SELECT job_id FROM timescaledb_information.jobs WHERE hypertable_schema = $1 "
        "AND proc_name = 'policy_refresh_continuous_aggregate'",
        schema,
    )
    for job in jobs:
        await conn.execute(f"CALL run_job({job['job_id']})")

    for view in ("vehicle_stats_1m", "vehicle_stats_1h"):
        # every hour before the cut-over as it was, the one without raw rows too
        after = await conn.fetch(
            f"SELECT * FROM {view} WHERE bucket < $1 ORDER BY vin, bucket", CUT
        )
        assert [tuple(r) for r in after] == [tuple(r) for r in before[view]]
        # after it: unknown power is unknown energy, half known is the known frames' mean
        for hour in (LATE, RECENT):
            assert tuple(await energy(conn, view, UNKNOWN, hour)) == (FRAMES, None), hour
            half = await energy(conn, view, HALF, hour)
            assert half["energy_out_kwh"] == pytest.approx(HALF_KWH, rel=1e-6)
    assert len(jobs) == 2  # the new aggregates' (the frozen ones have none)
    # the views over the aggregate now read the new view: its hours on both sides of the cut-over
    assert (
        await conn.fetchval("SELECT frames FROM public_fleet_stats_1h WHERE bucket = $1", GONE)
        == 2 * FRAMES
    )
    scoped = await conn.fetch("SELECT bucket FROM vehicle_stats_1h_scoped WHERE vin = $1", HALF)
    assert sorted(r[0] for r in scoped) == [GONE, OLD, LATE, RECENT]
    options = "SELECT reloptions FROM pg_class WHERE oid = 'vehicle_stats_1h_scoped'::regclass"
    assert await conn.fetchval(options) == ["security_barrier=true"]
