"""Migration 0088 on the TimescaleDB engine (PGlite-TimescaleDB: one connection): energy over
the frames whose power is known, without losing an hour the 0003 continuous aggregates hold.

Before 0088 a frame with an unknown current (NULL) counted as 0 kW. A continuous aggregate
cannot be altered, so 0088 freezes the old ones and reads them before the cut-over, the new
ones from it. The state upgraded is the real one of 0087: the 0003 aggregates with the refresh
and retention policies storage.policies gave them then, some frames stored after their last
refresh. Checked: the hours before the cut-over as they were (one whose raw rows retention
dropped too); the cut-over early enough that the frames the old refresh policy had not yet
materialised, and late frames its window would still have taken, are counted; the open hour
left to real-time aggregation (not frozen at the frames seen at migrate time); the readers of
the database roles reading the new views before migrate's roles step; the frozen aggregates'
invalidation logs emptied. A fresh install has no frozen aggregate at all."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from storage import PoolParams, SchemaMode, StorageParams, migrate
from storage.connect import connect
from storage.params import TimescaleParams
from storage.roles import RoleNames
from storage.roles import apply as apply_roles
from tests.integration.roles_support import FAMILIES, drop_named_roles
from tests.integration.test_storage_stats_energy import (
    AMPS,
    FRAMES,
    HALF,
    HALF_KWH,
    UNKNOWN,
    VOLTS,
    migrations_before_0088,
)

pytestmark = pytest.mark.integration

HOUR = timedelta(hours=1)
REAL = datetime.now(UTC)
NOW = REAL.replace(minute=0, second=0, microsecond=0)  # the open hour
GONE = NOW - timedelta(days=30)  # its chunk is dropped before the upgrade
OLD = NOW - 24 * HOUR  # materialised by the 0003 aggregates, raw rows kept
PEND = NOW - 3 * HOUR  # inside the old refresh policy's 6 h window
LATE = "LENERGYLATEFRAME1"  # frames stored after the old aggregates' last refresh
CURRENT = "LENERGYOPENHOUR01"  # frames of the open hour, before and after the upgrade
TS = TimescaleParams()
INVALIDATIONS = """
SELECT count(*) FROM _timescaledb_catalog.continuous_aggs_materialization_invalidation_log l
JOIN _timescaledb_catalog.hypertable h ON h.id = l.materialization_id
JOIN timescaledb_information.continuous_aggregates c
  ON c.materialization_hypertable_schema = h.schema_name
 AND c.materialization_hypertable_name = h.table_name
WHERE c.view_schema = $1 AND c.view_name LIKE '%\\_0003'
"""


@pytest.fixture
async def conn(timescale_dsn: str, unique_name: Callable[[str], str]) -> AsyncIterator[Any]:
    name = unique_name("ts")
    c = await connect(PoolParams(dsn=timescale_dsn, schema=name))
    try:
        await c.execute(f"CREATE SCHEMA {name}")
        await c.execute(f"SET search_path = {name}, public")
        yield c
    finally:
        await c.execute("RESET ROLE")
        await c.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        await c.close()


async def put(conn: Any, vin: str, ts: datetime, current: float | None = AMPS) -> None:
    await conn.execute(
        "INSERT INTO vehicle_telemetry (vin, ts, edition, command, extremes_derived, "
        "fault_count, total_voltage_v, total_current_a) VALUES ($1, $2, 2025, 2, false, 0, $3, $4)",
        vin,
        ts,
        VOLTS,
        current,
    )


async def put_hour(conn: Any, start: datetime) -> None:
    for k in range(FRAMES):
        await put(conn, UNKNOWN, start + timedelta(seconds=10 * k), None)
        await put(conn, HALF, start + timedelta(seconds=10 * k), AMPS if k % 2 == 0 else None)


async def energy(conn: Any, view: str, vin: str, bucket: datetime) -> Any:
    row = await conn.fetchrow(
        f"SELECT frames, energy_out_kwh FROM {view} WHERE vin = $1 AND bucket = $2", vin, bucket
    )
    assert row is not None, f"{view} has no bucket {bucket} of {vin}"
    return row


async def frames(conn: Any, view: str, vin: str, bucket: datetime) -> Any:
    return await conn.fetchval(
        f"SELECT frames FROM {view} WHERE vin = $1 AND bucket = $2", vin, bucket
    )


async def run_jobs(conn: Any, schema: str, proc: str) -> int:
    jobs = await conn.fetch(
        "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = $1 "
        "AND (hypertable_schema = $2 OR config ->> 'schema' = $2)",
        proc,
        schema,
    )
    for job in jobs:
        await conn.execute(f"CALL run_job({job['job_id']})")
    return len(jobs)


async def as_0087(conn: Any, schema: str, tmp_path: Path) -> None:
    """The schema as 0087 left it, with the policies storage.policies gave the 0003
    aggregates then (it now knows only the 0088 names, so they are added here as it did)."""
    await migrate(conn, StorageParams(schema=schema), directory=migrations_before_0088(tmp_path))
    await conn.execute(f"SET search_path = {schema}, public")
    await conn.execute(
        "SELECT add_retention_policy('vehicle_stats_1m', drop_after => $1::interval)",
        TS.retention["vehicle_stats_1m"],
    )
    for view in ("vehicle_stats_1m", "vehicle_stats_1h"):
        await conn.execute(
            "SELECT add_continuous_aggregate_policy($1::regclass, start_offset => $2::interval, "
            "end_offset => $3::interval, schedule_interval => $4::interval)",
            view,
            TS.cagg_start_offset,
            TS.cagg_end_offset,
            TS.cagg_schedule,
        )


async def probe(conn: Any, schema: str, names: RoleNames, login: str) -> list[str]:
    """What each kind of reader is refused, as ``role relation: error``."""
    refused = []
    for role, rel in (
        (names.regulator, "vehicle_stats_1h"),
        (names.regulator, "vehicle_stats_1m"),
        (login, "vehicle_stats_1h_scoped"),
        (names.public, "public_fleet_stats_1h"),
    ):
        await conn.execute(f"SET ROLE {role}")
        try:
            await conn.fetch(f"SELECT * FROM {schema}.{rel} LIMIT 1")
        except asyncpg.PostgresError as e:
            refused.append(f"{role} {rel}: {e}")
        finally:
            await conn.execute("RESET ROLE")
    return refused


async def test_0088_upgrades_the_0087_state_without_losing_a_frame(
    conn: Any, tmp_path: Path
) -> None:
    schema = await conn.fetchval("SELECT current_schema()")
    names = RoleNames(*(f"{schema}_{f}" for f in FAMILIES))
    login = f"{schema}_oem_login"
    try:
        await as_0087(conn, schema, tmp_path)
        for start in (GONE, OLD, PEND):
            await put_hour(conn, start)
        for k in range(6):
            await put(conn, LATE, PEND + timedelta(seconds=10 * k))
        for k in range(3):
            await put(conn, CURRENT, NOW + timedelta(seconds=k))
        # the old policies' past runs, then their last one (the last 6 hours)
        for view in ("vehicle_stats_1m", "vehicle_stats_1h"):
            await conn.execute(f"CALL refresh_continuous_aggregate('{view}', NULL, '{OLD + HOUR}')")
        await run_jobs(conn, schema, "policy_refresh_continuous_aggregate")
        # retention drops the oldest raw rows; the aggregates keep their hour
        await conn.execute(
            "SELECT drop_chunks('vehicle_telemetry', older_than => $1::timestamptz)",
            NOW - timedelta(days=10),
        )
        assert await conn.fetchval("SELECT count(*) FROM vehicle_telemetry WHERE ts < $1", OLD) == 0
        # stored after the last refresh, before the upgrade: in the hypertable's log only
        await put(conn, LATE, PEND + 20 * timedelta(minutes=1))
        await apply_roles(conn, schema, names, SchemaMode.TIMESCALE)
        await conn.execute(f"CREATE ROLE {login} LOGIN IN ROLE {names.oem}")
        await conn.execute(
            "INSERT INTO account_scopes (login, family, vin_prefixes) VALUES ($1, 'oem', $2)",
            login,
            ["LENERGY"],
        )
        assert await probe(conn, schema, names, login) == []
        early = OLD + HOUR  # the buckets the old aggregates materialised before their window
        before = {
            view: await conn.fetch(
                f"SELECT * FROM {view} WHERE bucket < $1 ORDER BY vin, bucket", early
            )
            for view in ("vehicle_stats_1m", "vehicle_stats_1h")
        }
        assert len(before["vehicle_stats_1h"]) == 4  # GONE and OLD, two vehicles

        await migrate(conn, StorageParams(schema=schema))  # files and policies, not roles
        await conn.execute(f"SET search_path = {schema}, public")
        # every reader reads on before migrate's roles step grants anything
        assert await probe(conn, schema, names, login) == []
        cutover = await conn.fetchval("SELECT vehicle_stats_cutover()")
        # at the latest where the old window started (its watermark, the end of its last bucket
        # holding rows, less 6 h): the frames it would still have materialised are after it
        assert early <= cutover <= NOW - TS.cagg_start_offset
        # a late frame for an hour the old window still covered, and the open hour goes on
        await put(conn, LATE, PEND + 40 * timedelta(minutes=1))
        for k in range(3):
            await put(conn, CURRENT, REAL + timedelta(seconds=k))
        assert await run_jobs(conn, schema, "policy_refresh_continuous_aggregate") == 2

        for view in ("vehicle_stats_1m", "vehicle_stats_1h"):
            # every bucket before the cut-over as it was, the one without raw rows too
            after = await conn.fetch(
                f"SELECT * FROM {view} WHERE bucket < $1 ORDER BY vin, bucket", early
            )
            assert [tuple(r) for r in after] == [tuple(r) for r in before[view]]
            # after it: unknown power is unknown energy, half known is the known frames' mean
            assert tuple(await energy(conn, view, UNKNOWN, PEND)) == (FRAMES, None)
            half = await energy(conn, view, HALF, PEND)
            assert half["energy_out_kwh"] == pytest.approx(HALF_KWH, rel=1e-6)
        # the hour of the frames stored after the old refresh, and of the late one: all counted
        assert await frames(conn, "vehicle_stats_1h", LATE, PEND) == 8
        # the open hour: every frame, those after the upgrade too (real-time aggregation)
        assert await frames(conn, "vehicle_stats_1h", CURRENT, NOW) == 6
        # the views over the aggregate read the new view: hours on both sides of the cut-over
        fleet = "SELECT frames FROM public_fleet_stats_1h WHERE bucket = $1"
        assert await conn.fetchval(fleet, GONE) == 2 * FRAMES

        # late frames keep coming: the frozen aggregates' logs are emptied by their job
        for k in range(3):
            await put(conn, LATE, PEND + timedelta(minutes=50 + k))
            await run_jobs(conn, schema, "policy_refresh_continuous_aggregate")
        assert await conn.fetchval(INVALIDATIONS, schema) > 0
        assert await run_jobs(conn, schema, "vehicle_stats_frozen_invalidations") == 1
        assert await conn.fetchval(INVALIDATIONS, schema) == 0
        # migrate's roles step then, and a second migrate, change nothing of that
        await apply_roles(conn, schema, names, SchemaMode.TIMESCALE)
        assert await probe(conn, schema, names, login) == []
        assert (await migrate(conn, StorageParams(schema=schema))).settings == []
    finally:
        await conn.execute("RESET ROLE")
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await drop_named_roles(conn, [login, *names.all()])


async def test_a_fresh_install_has_no_frozen_aggregate(conn: Any) -> None:
    schema = await conn.fetchval("SELECT current_schema()")
    await migrate(conn, StorageParams(schema=schema))
    await conn.execute(f"SET search_path = {schema}, public")
    caggs = await conn.fetch(
        "SELECT view_name FROM timescaledb_information.continuous_aggregates "
        "WHERE view_schema = $1 ORDER BY 1",
        schema,
    )
    assert [r[0] for r in caggs] == ["vehicle_stats_1h_energy", "vehicle_stats_1m_energy"]
    assert await conn.fetchval("SELECT vehicle_stats_cutover()") is None
    assert await run_jobs(conn, schema, "vehicle_stats_frozen_invalidations") == 0
    await put_hour(conn, PEND)
    assert await run_jobs(conn, schema, "policy_refresh_continuous_aggregate") == 2
    for view in ("vehicle_stats_1m", "vehicle_stats_1h"):
        assert tuple(await energy(conn, view, UNKNOWN, PEND)) == (FRAMES, None)
