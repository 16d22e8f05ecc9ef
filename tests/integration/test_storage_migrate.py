"""Migrations and plain-PostgreSQL upkeep on the real PostgreSQL: from empty, re-run, two
processes at once, flavour mismatches, partitions ahead and behind, summary tables."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from devtools.sim.synthetic import frame_rows, vin
from storage import (
    MigrationError,
    OffsetRange,
    PlainParams,
    PoolParams,
    SchemaMode,
    StorageParams,
    StorageWriter,
    WriterParams,
    migrate,
    run_maintenance,
)
from storage.connect import connect
from storage.migrate import LOCK_KEY, discover, schema_status
from storage.migration_files import SUPERSEDED
from storage.tables import TABLES
from tests.integration.pipeline_support import migrate_database

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
_UDT = {"_int2": "int2[]", "_int8": "int8[]", "_text": "text[]"}


@pytest.fixture
async def conn(fresh_database: str) -> AsyncIterator[Any]:
    c = await connect(PoolParams(dsn=fresh_database))
    try:
        yield c
    finally:
        await c.close()


async def test_from_empty_then_again(conn: Any) -> None:
    first = await migrate(conn, StorageParams())
    assert first.mode is SchemaMode.PLAIN
    assert first.applied == [
        files[SchemaMode.PLAIN].name for _, files in sorted(discover().items())
    ]
    assert any(line.startswith("partition created: vehicle_telemetry_p") for line in first.settings)
    for table in TABLES:
        cols = await conn.fetch(
            "SELECT column_name, udt_name FROM information_schema.columns "
            "WHERE table_schema = 'nev' AND table_name = $1 ORDER BY ordinal_position",
            table.name,
        )
        assert [(c["column_name"], _UDT.get(c["udt_name"], c["udt_name"])) for c in cols] == list(
            zip(table.columns, table.types, strict=True)
        )
    again = await migrate(conn, StorageParams())
    assert again.applied == [] and again.settings == []
    status = await schema_status(conn, "nev")
    assert status.mode is SchemaMode.PLAIN and status.pending == ()
    assert await conn.fetchval("SELECT count(*) FROM nev.schema_migrations") == len(discover())


_RUN = """
import asyncio, json, sys
from storage import PoolParams, StorageParams, migrate
from storage.connect import connect

async def main():
    conn = await connect(PoolParams(dsn=sys.argv[1]))
    report = await migrate(conn, StorageParams())
    await conn.close()
    print(json.dumps(report.applied))

asyncio.run(main())
"""


async def test_two_processes_at_once_apply_each_migration_once(
    conn: Any, fresh_database: str
) -> None:
    # Hold the migration lock so both processes are provably waiting on it together.
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _RUN,
            fresh_database,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    waiting = 0
    async with asyncio.timeout(60):
        while waiting < 2:
            waiting = await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            await asyncio.sleep(0.02)
    await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    outputs = [await p.communicate() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err.decode()[-2000:] for _, err in outputs]
    applied = sorted((json.loads(out) for out, _ in outputs), key=len)
    assert applied[0] == [] and len(applied[1]) == len(discover())
    versions = await conn.fetch("SELECT version FROM nev.schema_migrations ORDER BY version")
    assert [r["version"] for r in versions] == sorted(discover())


async def test_a_database_migrated_before_the_shared_tables_stays_current(
    conn: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # A database whose 0002/0003 were applied from the files written once per flavour records
    # their old checksums: it is current, with no "changed after it was applied" warning; a
    # checksum that is neither the old nor the new one still warns.
    await migrate(conn, StorageParams())
    for (version, mode), before in SUPERSEDED.items():
        if mode is SchemaMode.PLAIN:
            await conn.execute(
                "UPDATE nev.schema_migrations SET checksum = $2 WHERE version = $1",
                version,
                min(before),
            )
    with caplog.at_level(logging.WARNING, logger="storage.migrate"):
        report = await migrate(conn, StorageParams())
    assert report.applied == [] and (await schema_status(conn, "nev")).pending == ()
    assert not [r for r in caplog.records if "changed after it was applied" in r.getMessage()]
    await conn.execute("UPDATE nev.schema_migrations SET checksum = 'edited' WHERE version = 3")
    with caplog.at_level(logging.WARNING, logger="storage.migrate"):
        await migrate(conn, StorageParams())
    changed = [r.getMessage() for r in caplog.records if "changed after" in r.getMessage()]
    assert changed == [
        "migration 0003_aggregates changed after it was applied; forward-only: the change is "
        "NOT applied, add a new migration instead"
    ]


async def test_a_forced_flavour_must_match_the_schema(conn: Any) -> None:
    with pytest.raises(MigrationError, match="no timescaledb extension"):
        await migrate(conn, StorageParams(mode=SchemaMode.TIMESCALE))
    await migrate(conn, StorageParams(mode=SchemaMode.PLAIN))
    with pytest.raises(MigrationError, match="built for plain"):
        await migrate(conn, StorageParams(mode=SchemaMode.TIMESCALE))


async def test_schemas_are_isolated(conn: Any) -> None:
    await migrate(conn, StorageParams(schema="tenant_a"))
    await migrate(conn, StorageParams(schema="tenant_b"))
    assert (await schema_status(conn, "tenant_a")).pending == ()
    assert (await schema_status(conn, "nev")).mode is None


async def _partitions(conn: Any, table: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = $1::regclass ORDER BY 1",
        f"nev.{table}",
    )
    return [r["relname"] for r in rows]


async def test_partitions_are_made_ahead_and_dropped_after_retention(conn: Any) -> None:
    now = datetime(2030, 6, 15, 12, tzinfo=UTC)
    plain = PlainParams(
        premake=timedelta(days=2),
        backfill=timedelta(days=1),
        retention={"vehicle_telemetry": timedelta(days=3)},
    )
    params = StorageParams(plain=plain)
    await migrate(conn, params, now=now)
    made = await _partitions(conn, "vehicle_telemetry")
    assert made == [f"vehicle_telemetry_p203006{d}0000" for d in (14, 15, 16, 17)]
    # a week later: the new window is made, the days past retention dropped; tables without
    # a retention keep everything
    report = await run_maintenance(conn, params, SchemaMode.PLAIN, now=now + timedelta(days=7))
    assert sorted(report.dropped) == made
    assert await _partitions(conn, "vehicle_telemetry") == [
        f"vehicle_telemetry_p203006{d}0000" for d in (21, 22, 23, 24)
    ]
    assert len(await _partitions(conn, "drive_motor_telemetry")) == 8
    # idempotent
    again = await run_maintenance(conn, params, SchemaMode.PLAIN, now=now + timedelta(days=7))
    assert again.created == [] and again.dropped == []


async def test_maintenance_runs_once_at_a_time(conn: Any, fresh_database: str) -> None:
    await migrate(conn, StorageParams())
    other = await asyncpg.connect(fresh_database)
    try:
        await other.execute("SELECT pg_advisory_lock($1)", 0x6E65_7600_0002)
        report = await run_maintenance(conn, StorageParams(), SchemaMode.PLAIN)
        assert report.skipped and report.created == []
    finally:
        await other.close()


async def test_summary_tables_aggregate_what_regulators_ask(fresh_database: str, conn: Any) -> None:
    now = datetime.now(UTC)
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    await migrate(conn, StorageParams())
    writer = await StorageWriter.open(
        PoolParams(dsn=fresh_database), WriterParams(consumer_group="g")
    )
    try:
        # one vehicle, a frame every 10 s for 2 minutes: odometer +0.1 km, 350 V, 35.5 A
        frames = [
            frame_rows(vin(7), start + timedelta(seconds=10 * k), seq=k + 1) for k in range(12)
        ]
        frames[3] = frame_rows(vin(7), start + timedelta(seconds=30), seq=4, alarm_level=3)
        await writer.write_batch(frames, {("t", 0): OffsetRange(None, 12)})
    finally:
        await writer.close()
    report = await run_maintenance(conn, StorageParams(), SchemaMode.PLAIN, now=now)
    assert report.summary_rows == 3  # two minute buckets + one hour bucket
    rows = await conn.fetch("SELECT * FROM nev.vehicle_stats_1m ORDER BY bucket")
    assert [r["bucket"] for r in rows] == [start, start + timedelta(minutes=1)]
    first = rows[0]
    v = [f.vehicle for f in frames[:6] if f.vehicle is not None]
    assert first["frames"] == 6
    odometer = [x.odometer_km for x in v if x.odometer_km is not None]
    assert first["distance_km"] == pytest.approx(odometer[-1] - odometer[0], abs=1e-6)
    assert (first["soc_min_pct"], first["soc_max_pct"]) == (
        min(x.soc_pct for x in v if x.soc_pct is not None),
        max(x.soc_pct for x in v if x.soc_pct is not None),
    )
    # energy: sum of V*I over the frames x their 10 s spacing, in kWh
    out = sum(
        x.total_voltage_v * max(x.total_current_a, 0)
        for x in v
        if x.total_voltage_v and x.total_current_a is not None
    )
    assert first["energy_out_kwh"] == pytest.approx(out * 10 / 3.6e6, rel=1e-4)
    assert (first["alarm_frames"], first["severe_alarm_frames"]) == (1, 1)
    hour = await conn.fetchrow("SELECT * FROM nev.vehicle_stats_1h")
    assert hour["frames"] == 12 and hour["max_alarm_level"] == 3


async def test_a_scope_with_an_empty_or_null_element_is_refused(fresh_database: str) -> None:
    # An empty prefix is spliced into LIKE '' || '%': it would match every VIN.
    await migrate_database(fresh_database)
    conn = await asyncpg.connect(fresh_database)
    try:
        insert = "INSERT INTO nev.account_scopes (login, family, {}) VALUES ($1, $2, $3)"
        for n, (column, family, value) in enumerate(
            [
                ("vin_prefixes", "oem", [""]),
                ("vin_prefixes", "oem", ["LFV", ""]),
                ("vin_prefixes", "oem", ["LFV", None]),
                ("operator_ids", "charging", [""]),
                ("operator_ids", "charging", ["MA01H3BQ1", None]),
            ]
        ):
            with pytest.raises(asyncpg.CheckViolationError):
                await conn.execute(insert.format(column), f"bad{n}", family, value)
        for n, (column, family, value) in enumerate(
            [
                ("vin_prefixes", "oem", []),
                ("vin_prefixes", "oem", ["LFV", "LSVAB"]),
                ("operator_ids", "charging", ["MA01H3BQ1"]),
            ]
        ):
            await conn.execute(insert.format(column), f"good{n}", family, value)
    finally:
        await conn.close()
