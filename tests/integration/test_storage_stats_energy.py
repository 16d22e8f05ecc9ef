"""Energy in the plain summary tables, on the real cluster, across migration 0088: a frame
whose current (or voltage) is unknown (NULL: the 0xFFFF / 0xFFFE sentinels) is not a 0 kW frame.

A bucket whose every frame has an unknown current has unknown energy (NULL), in the summaries,
in ``query daily`` and in ``public_fleet_stats_1h``, not 0 kWh; a bucket with half of them
unknown has its known frames' mean power times the span. Upgrading recomputes nothing itself
(one statement over the whole history exceeds the statement timeout on a real database): the
upkeep then recomputes a day a pass, backwards from the cut-over, the per-minute buckets only
within their retention, and leaves the older ones (raw rows dropped) as they were."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest

from storage import maintenance, queries
from storage.migrate import MIGRATIONS_DIR, migrate
from storage.params import PlainParams, SchemaMode, StorageParams

pytestmark = pytest.mark.integration

HOUR = timedelta(hours=1)
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
START = NOW - 2 * HOUR  # inside the partitions migrate makes
GONE = NOW - timedelta(days=2000)  # long before the oldest partition: its raw rows are gone
OLD = NOW - timedelta(days=3)  # raw rows kept, per-minute buckets past their retention
MINUTE_KEEP = timedelta(days=1)
UNKNOWN = "LENERGYUNKNOWN001"  # every current unknown
HALF = "LENERGYHALFKNOWN1"  # every other current unknown
FRAMES = 6  # one every 10 s inside one minute: a 50 s span, 10 s per frame
VOLTS, AMPS = 400.0, 100.0  # 40 kW on every known frame
# the known frames' mean power x the frames' intervals (6 x 50 s / 5), in kWh
HALF_KWH = VOLTS * AMPS * FRAMES * 50 / (FRAMES - 1) / 3.6e6


async def put_frame(
    conn: Any, vin: str, k: int, current: float | None, at: datetime = START
) -> None:
    await conn.execute(
        "INSERT INTO nev.vehicle_telemetry (vin, ts, edition, command, extremes_derived, "
        "fault_count, total_voltage_v, total_current_a) VALUES ($1, $2, 2025, 2, false, 0, $3, $4)",
        vin,
        at + timedelta(seconds=10 * k),
        VOLTS,
        current,
    )


async def put_summary_hour(conn: Any, vin: str, bucket: datetime) -> None:
    """A ``vehicle_stats_1h`` bucket with figures of its own (360 frames, 1.5 kWh out), not
    computed from raw rows: one the recompute must leave as it is."""
    await conn.execute(
        "INSERT INTO nev.vehicle_stats_1h (vin, bucket, frames, first_ts, last_ts, "
        "energy_out_kwh, alarm_frames, severe_alarm_frames) "
        "VALUES ($1, $2, 360, $2, $2, 1.5, 0, 0)",
        vin,
        bucket,
    )


async def energy(conn: Any, table: str, vin: str) -> tuple[float | None, float | None]:
    row = await conn.fetchrow(
        f"SELECT energy_out_kwh, energy_in_kwh FROM nev.{table} WHERE vin = $1 AND bucket = $2",
        vin,
        START,
    )
    assert row is not None, f"{table} has no bucket of {vin}"
    return row[0], row[1]


def migrations_before_0088(tmp_path: Path) -> Path:
    old = tmp_path / "migrations"
    old.mkdir()
    for path in MIGRATIONS_DIR.glob("*.sql"):
        if int(path.name[:4]) < 88:
            shutil.copy(path, old / path.name)
    return old


async def test_unknown_power_is_not_counted_as_zero_and_old_hours_stay(
    fresh_database: str, tmp_path: Path
) -> None:
    retention = dict(PlainParams().retention)
    retention["vehicle_stats_1m"] = MINUTE_KEEP
    params = StorageParams(plain=PlainParams(retention=retention))
    conn = await asyncpg.connect(fresh_database)
    try:
        # a database of the version before, with its summaries made the old way
        await migrate(conn, params, directory=migrations_before_0088(tmp_path))
        for k in range(FRAMES):
            await put_frame(conn, UNKNOWN, k, None)
            await put_frame(conn, HALF, k, AMPS if k % 2 == 0 else None)
            await put_frame(conn, UNKNOWN, k, None, at=OLD)
        await put_summary_hour(conn, UNKNOWN, GONE)
        await conn.execute("SELECT nev.refresh_vehicle_stats($1, $2)", START, NOW)
        await conn.execute("SELECT nev.refresh_vehicle_stats($1, $2)", OLD, OLD + HOUR)
        before = await energy(conn, "vehicle_stats_1h", HALF)

        await migrate(conn, params)
        # the migration recomputes nothing (a whole history in one statement): the buckets
        # keep their 0003 figures until the upkeep reaches them
        assert await energy(conn, "vehicle_stats_1h", HALF) == before
        steps = 0
        while True:
            report = await maintenance.run(conn, params, SchemaMode.PLAIN)
            steps += 1
            # per-minute buckets only within their retention: none made past it
            assert not await conn.fetchval(
                "SELECT count(*) FROM nev.vehicle_stats_1m WHERE bucket < $1",
                datetime.now(UTC) - MINUTE_KEEP,
            )
            assert report.recomputed is not None, "the recompute stopped before it was done"
            if report.recomputed.endswith("done"):
                break
            assert steps < 30, report.recomputed  # a day a pass: about 9 days of partitions
        assert steps > 1  # bounded steps, not the history at once
        assert (await maintenance.run(conn, params, SchemaMode.PLAIN)).recomputed is None
        assert not await conn.fetchval("SELECT count(*) FROM nev.vehicle_stats_recompute")
        old_hour = await conn.fetchrow(
            "SELECT energy_out_kwh FROM nev.vehicle_stats_1h WHERE vin = $1 AND bucket = $2",
            UNKNOWN,
            OLD,
        )
        assert old_hour is not None and old_hour[0] is None  # recomputed 3 days back

        for table in ("vehicle_stats_1h", "vehicle_stats_1m"):
            assert await energy(conn, table, UNKNOWN) == (None, None)
            out, into = await energy(conn, table, HALF)
            assert out == pytest.approx(HALF_KWH, rel=1e-9)
            assert into == 0  # the known frames discharge: nothing charged
        # the hour whose raw rows are gone is kept as it was
        kept = await conn.fetchrow(
            "SELECT frames, energy_out_kwh FROM nev.vehicle_stats_1h WHERE bucket = $1", GONE
        )
        assert tuple(kept) == (360, 1.5)
        # the service's own refresh computes the same from now on
        await conn.execute("SELECT nev.refresh_vehicle_stats($1, $2)", START, NOW)
        assert await energy(conn, "vehicle_stats_1h", UNKNOWN) == (None, None)
        fleet = await conn.fetchval(
            "SELECT energy_out_kwh FROM nev.public_fleet_stats_1h WHERE bucket = $1", START
        )
        assert fleet == pytest.approx(HALF_KWH, rel=1e-9)  # the unknown vehicle adds nothing
    finally:
        await conn.close()

    day = START.date()
    statement = queries.daily("nev", day, day, tz="UTC")
    with psycopg.connect(fresh_database) as db:
        rows = db.execute(statement.sql, statement.params).fetchall()
        names = [c.name for c in db.execute(statement.sql, statement.params).description or []]
    daily = {r[0]: dict(zip(names, r, strict=True)) for r in rows}
    # a day of unknown hours is unknown (the sum of NULLs), not 0 kWh
    assert daily[UNKNOWN]["energy_out_kwh"] is None
    assert daily[HALF]["energy_out_kwh"] == pytest.approx(HALF_KWH, rel=1e-9)
