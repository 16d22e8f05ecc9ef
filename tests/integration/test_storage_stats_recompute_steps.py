"""The upkeep's recompute of the summary buckets made before migration 0088, on the real
cluster, where a step does not fit in the statement timeout: a large fleet's day of raw rows,
or an hour whose buckets another session holds. The step is halved, an hour that still cannot
finish is left behind with a warning saying how to recompute it by hand, and the recompute
always advances (it used to fail the same day every pass for ever, and the error escaped the
pass before its report was logged). Each grain is recomputed only within its retention."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from storage import maintenance
from storage.migrate import migrate
from storage.params import PlainParams, SchemaMode, StorageParams
from tests.integration.test_storage_stats_energy import (
    HOUR,
    NOW,
    OLD,
    START,
    UNKNOWN,
    migrations_before_0088,
    put_frame,
    put_summary_hour,
)

pytestmark = pytest.mark.integration

NAMED = "made before migration 0088"  # what every line of the recompute says
PASSES = 40  # far more than any of these recomputes needs


async def upgraded(conn: Any, params: StorageParams, tmp_path: Path) -> datetime:
    """The database of the version before 0088, with telemetry, migrated to 0088: its cut-over."""
    await migrate(conn, params, directory=migrations_before_0088(tmp_path))
    await put_frame(conn, UNKNOWN, 0, None, at=START)
    await migrate(conn, params)
    cutover: datetime = await conn.fetchval("SELECT cutover FROM nev.vehicle_stats_recompute")
    return cutover


async def recompute(
    conn: Any, params: StorageParams, caplog: pytest.LogCaptureFixture
) -> list[tuple[int, str]]:
    """Upkeep passes until the recompute is done: the recompute's log lines (level, text)."""
    lines: list[tuple[int, str]] = []
    for _ in range(PASSES):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="storage.maintenance"):
            report = await maintenance.run(conn, params, SchemaMode.PLAIN)
        ours = [(r.levelno, r.getMessage()) for r in caplog.records if NAMED in r.getMessage()]
        assert ours, f"a pass logged nothing of the recompute: {report.lines()}"
        lines += ours
        if report.recomputed is not None and report.recomputed.endswith("done"):
            return lines
    raise AssertionError(f"the recompute did not finish in {PASSES} passes: {lines[-3:]}")


async def test_a_day_over_the_statement_timeout_is_done_in_smaller_steps(
    fresh_database: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    params = StorageParams()
    conn = await asyncpg.connect(fresh_database)
    try:
        cutover = await upgraded(conn, params, tmp_path)
        # A fleet's day of frames (every 10 s), before the trailing refresh's window: one
        # day of it takes the step longer than the small statement timeout below (the service's
        # 60 s against ~1,400 vehicles on a real database), one hour of it does not.
        await conn.execute(
            "INSERT INTO nev.vehicle_telemetry (vin, ts, edition, command, extremes_derived, "
            "fault_count, total_voltage_v, total_current_a) "
            "SELECT 'LSTEPS' || lpad(v::text, 11, '0'), $1::timestamptz - s * interval '10 s', "
            "2025, 2, false, 0, 400, 100 "
            "FROM generate_series(1, 100) v, generate_series(1, 7200) s",
            NOW - 4 * HOUR,
        )
        await conn.execute("SET statement_timeout = '500ms'")
        lines = await recompute(conn, params, caplog)
    finally:
        await conn.close()
    cancelled = [text for _, text in lines if "did not finish within the statement" in text]
    assert cancelled, f"no step exceeded the timeout: not the case this tests ({lines})"
    assert "the next pass tries" in cancelled[0]
    assert any(f"to {cutover:%Y-%m-%d %H:%M} UTC in" in text for _, text in lines), lines
    assert any("day(s) left" in text for _, text in lines)


async def test_an_hour_that_cannot_finish_is_left_behind_with_a_warning(
    fresh_database: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    params = StorageParams()
    conn = await asyncpg.connect(fresh_database)
    other = await asyncpg.connect(fresh_database)
    try:
        cutover = await upgraded(conn, params, tmp_path)
        stuck = cutover - 10 * HOUR  # outside the trailing refresh's window
        await put_summary_hour(conn, UNKNOWN, stuck)
        # Another session holds that bucket: every step over it waits for it until the
        # statement timeout, the one-hour step too.
        held = other.transaction()
        await held.start()
        await other.execute(
            "SELECT 1 FROM nev.vehicle_stats_1h WHERE bucket = $1 FOR UPDATE", stuck
        )
        await conn.execute("SET statement_timeout = '1s'")
        lines = await recompute(conn, params, caplog)
        await held.rollback()
        kept = await conn.fetchval(
            "SELECT energy_out_kwh FROM nev.vehicle_stats_1h WHERE bucket = $1", stuck
        )
    finally:
        await other.close()
        await conn.close()
    warnings = [text for level, text in lines if level == logging.WARNING]
    assert len(warnings) == 1, lines
    hour = f"'{stuck:%Y-%m-%d %H:%M}+00', '{stuck + HOUR:%Y-%m-%d %H:%M}+00'"
    assert f"SELECT nev.refresh_vehicle_stats({hour})" in warnings[0]
    assert "moves on" in warnings[0]
    assert kept == 1.5  # left as it was, the warning says so


async def test_hours_are_recomputed_only_within_their_retention(
    fresh_database: str, tmp_path: Path
) -> None:
    hour_keep = timedelta(days=2)
    retention = dict(PlainParams().retention)
    retention["vehicle_stats_1m"] = timedelta(days=1)
    retention["vehicle_stats_1h"] = hour_keep
    params = StorageParams(plain=PlainParams(retention=retention))
    conn = await asyncpg.connect(fresh_database)
    try:
        await upgraded(conn, params, tmp_path)
        await put_frame(conn, UNKNOWN, 0, None, at=OLD)  # raw rows kept, hours past retention
        passes = 0
        for _ in range(PASSES):
            report = await maintenance.run(conn, params, SchemaMode.PLAIN)
            passes += 1
            assert not await conn.fetchval(
                "SELECT count(*) FROM nev.vehicle_stats_1h WHERE bucket < $1",
                datetime.now(UTC) - hour_keep,
            )
            if report.recomputed is not None and report.recomputed.endswith("done"):
                break
        # it ends at the older of the two horizons, not at the oldest raw hour (8 days back)
        assert passes <= 4, report.recomputed
    finally:
        await conn.close()
