"""``refresh_vehicle_stats(from, to)`` on plain PostgreSQL, on the real cluster: a wide
catch-up call recomputes only what vehicle_telemetry still holds and keeps the summary buckets
older than its oldest partition (retention dropped their raw rows; vehicle_stats_1h is kept
forever by default), whatever the caller's DateStyle and TimeZone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

pytestmark = pytest.mark.integration

HOUR = timedelta(hours=1)
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
GONE = NOW - timedelta(days=2000)  # long before the oldest partition migrate made
STALE = NOW - timedelta(days=2)  # inside the partitions, no raw rows: recomputed to nothing
VIN = "LSTATSCLAMP000001"
HOSTILE = {"DateStyle": "SQL, DMY", "TimeZone": "Asia/Shanghai", "search_path": "nev, public"}


async def put_summary(conn: Any, table: str, bucket: datetime) -> None:
    await conn.execute(
        f"INSERT INTO nev.{table} (vin, bucket, frames, first_ts, last_ts, alarm_frames, "
        "severe_alarm_frames) VALUES ($1, $2, 360, $2, $2, 0, 0)",
        VIN,
        bucket,
    )


async def buckets(conn: Any, table: str) -> list[datetime]:
    rows = await conn.fetch(f"SELECT bucket FROM nev.{table} ORDER BY bucket")
    return [r[0] for r in rows]


async def test_a_wide_refresh_keeps_the_summaries_older_than_the_raw_data(
    migrated_database: str,
) -> None:
    conn = await asyncpg.connect(migrated_database, server_settings=HOSTILE)
    try:
        for table in ("vehicle_stats_1h", "vehicle_stats_1m"):
            await put_summary(conn, table, GONE)
            await put_summary(conn, table, STALE)
        await conn.execute(
            "INSERT INTO nev.vehicle_telemetry (vin, ts, edition, command, extremes_derived, "
            "fault_count) VALUES ($1, $2, 2025, 2, false, 0)",
            VIN,
            NOW - HOUR,
        )
        made = await conn.fetchval(
            "SELECT nev.refresh_vehicle_stats($1, $2)", GONE - timedelta(days=1), NOW
        )
        assert made == 2  # the one raw frame: a minute and an hour bucket
        assert await buckets(conn, "vehicle_stats_1h") == [GONE, NOW - HOUR]
        assert await buckets(conn, "vehicle_stats_1m") == [GONE, NOW - HOUR]
        # a call entirely before the raw data changes nothing
        assert (
            await conn.fetchval(
                "SELECT nev.refresh_vehicle_stats($1, $2)", GONE - HOUR, GONE + HOUR
            )
            == 0
        )
        assert await buckets(conn, "vehicle_stats_1h") == [GONE, NOW - HOUR]
    finally:
        await conn.close()
