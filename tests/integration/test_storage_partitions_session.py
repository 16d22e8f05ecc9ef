"""Partition bounds whatever the session's DateStyle and TimeZone, on the real cluster.

A bound goes through text twice (pg_get_expr when partitions are listed, %L in the owner's
``create_partition``); with DateStyle SQL and TimeZone Asia/Shanghai PostgreSQL prints "CST"
and reads it back as US Central, 14 h off. A session with those settings (a role's or the
database's defaults) must list, maintain and create exactly the UTC day slots."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import psycopg
import pytest

from contract.clock import CHINA_TZ
from ingest.cli import main
from storage import PoolParams, SchemaMode, StorageParams, partitions, run_maintenance
from storage.connect import connect
from storage.roles_names import RolesReport
from storage.roles_partitions import partition_function

pytestmark = pytest.mark.integration

HOSTILE = {"DateStyle": "SQL, DMY", "TimeZone": "Asia/Shanghai", "search_path": "nev, public"}
DAY = timedelta(days=1)
LO = datetime(2030, 3, 1, tzinfo=UTC)  # far ahead of anything maintenance pre-makes
VIN = "LSESSION000000001"
AT = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


@pytest.fixture
async def hostile(migrated_database: str) -> AsyncIterator[Any]:
    conn = await asyncpg.connect(migrated_database, server_settings=HOSTILE)
    try:
        yield conn
    finally:
        await conn.close()


async def bound(conn: Any, name: str) -> str:
    return str(
        await conn.fetchval(
            "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = $1", name
        )
    )


async def test_listing_and_maintenance_see_the_utc_slots_in_a_hostile_session(
    hostile: Any,
) -> None:
    rows = await partitions.listing(hostile, "nev", "vehicle_telemetry")
    assert rows
    for name, lo, hi in rows:  # day partitions start at 00:00 UTC, as their names say
        assert f"{lo.astimezone(UTC):%Y%m%d%H%M}" == name.rsplit("_p", 1)[1]
        assert hi - lo == DAY
    # migrate made every partition of the window: nothing is missing, nothing is "created"
    report = await run_maintenance(hostile, StorageParams(), SchemaMode.PLAIN)
    assert report.created == [] and report.dropped == []


async def test_create_partition_makes_the_slot_asked_for_in_a_hostile_session(
    migrated_database: str, hostile: Any
) -> None:
    owner = await asyncpg.connect(migrated_database)
    try:
        me = str(await owner.fetchval("SELECT current_user"))
        await partition_function(owner, "nev", me, SchemaMode.PLAIN, RolesReport())
        await hostile.execute(
            "SELECT nev.create_partition($1, $2, $3)", "alarm_events", LO, LO + DAY
        )
        # and through ensure, which uses the function when it exists (the writer's path)
        made = await partitions.ensure(
            hostile, "nev", ["alarm_events"], [(LO + DAY, LO + 2 * DAY)], DAY
        )
        assert made == ["alarm_events_p203003020000"]
        assert await bound(owner, "alarm_events_p203003010000") == (
            "FOR VALUES FROM ('2030-03-01 00:00:00+00') TO ('2030-03-02 00:00:00+00')"
        )
        assert await bound(owner, "alarm_events_p203003020000") == (
            "FOR VALUES FROM ('2030-03-02 00:00:00+00') TO ('2030-03-03 00:00:00+00')"
        )
    finally:
        await owner.close()


@pytest.fixture
def hostile_defaults(migrated_database: str) -> str:
    """``migrated_database`` whose own defaults are DateStyle SQL, TimeZone Asia/Shanghai."""
    with psycopg.connect(migrated_database, autocommit=True) as admin:
        name = admin.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
        admin.execute(f"ALTER DATABASE \"{name}\" SET DateStyle = 'SQL, DMY'")
        admin.execute(f"ALTER DATABASE \"{name}\" SET TimeZone = 'Asia/Shanghai'")
        admin.execute(
            "INSERT INTO nev.vehicle_telemetry (vin, ts, edition, command, extremes_derived, "
            "fault_count) VALUES (%s, %s, 2025, 2, false, 0)",
            [VIN, AT],
        )
    return migrated_database


async def test_service_connections_pin_iso_utc_whatever_the_database_default(
    hostile_defaults: str,
) -> None:
    conn = await connect(PoolParams(dsn=hostile_defaults))
    try:
        assert await conn.fetchval("SHOW DateStyle") == "ISO, YMD"
        assert await conn.fetchval("SHOW TimeZone") == "UTC"
    finally:
        await conn.close()


def test_the_query_cli_reads_times_whatever_the_database_default(
    hostile_defaults: str, capsys: pytest.CaptureFixture[str]
) -> None:
    window = ("--from", (AT - timedelta(hours=1)).isoformat(), "--to", (AT + DAY).isoformat())
    code = main(["query", "track", VIN, *window, "--dsn", hostile_defaults, "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert [json.loads(line)["ts"] for line in out.splitlines()] == [
        AT.astimezone(CHINA_TZ).isoformat(timespec="seconds")  # --tz's default
    ]
