"""Periodic upkeep of the plain-PostgreSQL flavour: partitions ahead, retention, summaries.

TimescaleDB does all of this itself (chunks on demand, policy jobs); on plain PostgreSQL the
service calls ``run`` every 5 minutes (the workers' upkeep). Each call:

* creates the partitions of every time-series table from ``backfill`` ago to ``premake`` ahead,
  aligned to ``partition_interval`` and filling only the gaps (an interval changed later never
  overlaps the partitions already there);
* drops the partitions entirely older than the table's retention;
* recomputes the summary buckets (``vehicle_stats_1m``/``_1h``) of the trailing
  ``summary_lookback`` window;
* after migration 0088, recomputes one more step (a day at most, an hour at least: halved when
  it does not finish within ``RECOMPUTE_TIMEOUT_MS``, grown again after quick ones) of the
  buckets made before it, backwards from its cut-over to the oldest raw hour
  (``vehicle_stats_recompute`` holds the progress and the step).

Concurrent callers are harmless: a session advisory try-lock lets one of them work and the
others return at once (``MaintenanceReport.skipped``). Partition DDL waits for a parent table
held by another session (a pg_dump, a report idle in its transaction) only
``partitions.DDL_LOCK_TIMEOUT``: that table's creations or drop are then left to the next pass
(``MaintenanceReport.deferred``, a warning), and the other tables are done as usual.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import asyncpg

from storage import partitions
from storage.params import (
    TIMESERIES_TABLES,
    PlainParams,
    SchemaMode,
    StorageParams,
    check_identifier,
)
from storage.partitions import plan_partitions

__all__ = ["MaintenanceReport", "plan_partitions", "run"]

log = logging.getLogger(__name__)

LOCK_KEY: Final = 0x6E65_7600_0002


@dataclass(slots=True)
class MaintenanceReport:
    """What one ``run`` did."""

    skipped: bool = False
    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    left_to_owner: list[str] = field(default_factory=list)  # due, but not ours to drop
    deferred: list[str] = field(default_factory=list)  # DDL given up on a locked parent
    summary_rows: int | None = None
    recomputed: str | None = None  # this pass's step of 0088's recompute (_recompute_step)
    recompute_stuck: bool = False  # that step is an hour left behind: ``recomputed`` warns

    def lines(self) -> list[str]:
        out = [f"partition created: {n}" for n in self.created]
        out += [f"partition dropped (retention): {n}" for n in self.dropped]
        out += [
            f"partition due for retention, left to the schema owner (nev-ingest migrate "
            f"--maintain): {n}"
            for n in self.left_to_owner
        ]
        out += self.deferred_lines()
        if self.summary_rows is not None:
            out.append(f"summary buckets recomputed: {self.summary_rows}")
        if self.recomputed is not None:
            out.append(self.recomputed)
        return out

    def deferred_lines(self) -> list[str]:
        return [
            f"{what}: its table stayed locked by another session for "
            f"{partitions.DDL_LOCK_TIMEOUT}; the next pass tries again"
            for what in self.deferred
        ]


async def run(
    conn: Any,
    params: StorageParams,
    mode: SchemaMode,
    *,
    now: datetime | None = None,
    refresh: bool = True,
    log_context: Mapping[str, object] | None = None,
) -> MaintenanceReport:
    """One maintenance pass over ``params.schema`` (a no-op on TimescaleDB);
    ``log_context``: extra fields of its log lines (a worker's upkeep names the shard)."""
    report = MaintenanceReport()
    if mode is not SchemaMode.PLAIN:
        return report
    schema = check_identifier(params.schema)
    plain = params.plain
    now = now or datetime.now(UTC)
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY):
        report.skipped = True
        return report
    # Retention drops whole partitions: only the schema's owner may (with database roles the
    # service's writer may not delete telemetry); `nev-ingest migrate --maintain` does it then.
    may_drop = await conn.fetchval(
        "SELECT pg_has_role(current_user, nspowner, 'USAGE') FROM pg_namespace WHERE nspname = $1",
        schema,
    )
    try:
        for table in TIMESERIES_TABLES:
            keep = plain.retention.get(table)
            # never (re)create what retention would drop: backfill stops at the horizon
            back = plain.backfill if keep is None else min(plain.backfill, keep)
            window = [(now - back, now + plain.premake)]
            # under the partition lock, so a writer creating a slot on demand cannot race it
            try:
                report.created += await partitions.ensure(
                    conn, schema, [table], window, plain.partition_interval
                )
            except asyncpg.LockNotAvailableError:
                report.deferred.append(f"partitions of {table} not created")
            rows = await partitions.listing(conn, schema, table)
            if keep is not None:
                for name, _, hi in rows:
                    if hi is not None and hi <= now - keep and not may_drop:
                        report.left_to_owner.append(name)
                    elif hi is not None and hi <= now - keep:
                        if await _drop(conn, schema, name):
                            report.dropped.append(name)
                        else:
                            report.deferred.append(f"partition {name} not dropped")
        if refresh:
            report.summary_rows = await conn.fetchval(
                f"SELECT {schema}.refresh_vehicle_stats($1, $2)", now - plain.summary_lookback, now
            )
        for stats, keep in (
            ("vehicle_stats_1m", plain.retention.get("vehicle_stats_1m")),
            ("vehicle_stats_1h", plain.retention.get("vehicle_stats_1h")),
        ):
            if keep is not None:
                await conn.execute(f"DELETE FROM {schema}.{stats} WHERE bucket < $1", now - keep)
        if refresh:  # last: a step that fails leaves the rest of the pass done
            await _recompute_step(conn, schema, plain, now, report)
    finally:
        try:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
        finally:  # what was done is logged even when a later part of the pass failed
            _log(report, log_context)
    return report


def _log(report: MaintenanceReport, log_context: Mapping[str, object] | None) -> None:
    warn = set(report.deferred_lines())
    if report.recompute_stuck and report.recomputed is not None:
        warn.add(report.recomputed)
    for line in report.lines():
        level = logging.WARNING if line in warn else logging.INFO
        log.log(level, "maintenance: %s", line, extra=log_context)


# The recompute 0088 left to the upkeep: a step a pass, backwards from the cut-over, each in
# its own transaction under a statement timeout well below the pass's cap
# (ingest.pipeline.upkeep.UPKEEP_SHARD_TIMEOUT_S, 120 s) and the service's
# postgres.statement_timeout_ms (60 s), or the session's own when lower. A day of a large
# fleet's raw rows takes longer than that: a step cancelled by it is halved for the next pass
# (down to RECOMPUTE_STEP_MIN), one that took less than a quarter of the timeout is doubled (up
# to RECOMPUTE_STEP_MAX), so the step settles where it fits and the recompute always advances.
RECOMPUTE_STEP_MAX: Final = timedelta(days=1)
RECOMPUTE_STEP_MIN: Final = timedelta(hours=1)
RECOMPUTE_TIMEOUT_MS: Final = 30_000


async def _recompute_step(
    conn: Any, schema: str, plain: PlainParams, now: datetime, report: MaintenanceReport
) -> None:
    """Recompute the next step of the summary buckets made before migration 0088 (energy of
    frames with an unknown current counted as 0 kW: migrations/0088_energy_known.plain.sql),
    each grain only within its retention; one transaction (a savepoint inside one). Sets
    ``report.recomputed`` to a line saying what was done (None once all is, or on a schema from
    before 0088). A one-hour step that still does not finish in time is left behind (its buckets
    keep their 0003 figures) with a warning saying how to recompute it by hand: the recompute
    moves on rather than spend the timeout on the same hour every pass for ever."""
    if not await conn.fetchval(
        "SELECT to_regclass($1) IS NOT NULL", f"{schema}.vehicle_stats_recompute"
    ):
        return
    state = await conn.fetchrow(f"SELECT done_from, step FROM {schema}.vehicle_stats_recompute")
    if state is None:
        return
    session_ms = await conn.fetchval(
        "SELECT setting::bigint FROM pg_settings WHERE name = 'statement_timeout'"
    )
    bound_ms = min(RECOMPUTE_TIMEOUT_MS, session_ms) if session_ms else RECOMPUTE_TIMEOUT_MS
    step: timedelta = state["step"]
    hi: datetime = state["done_from"]
    keep_1m = plain.retention.get("vehicle_stats_1m")
    keep_1h = plain.retention.get("vehicle_stats_1h")
    started = time.monotonic()
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('statement_timeout', $1, true)", str(bound_ms))
            row = await conn.fetchrow(
                f"SELECT * FROM {schema}.recompute_vehicle_stats_step($1, $2)",
                None if keep_1m is None else now - keep_1m,
                None if keep_1h is None else now - keep_1h,
            )
    except asyncpg.QueryCanceledError:
        took = time.monotonic() - started
        report.recomputed = await _step_cancelled(conn, schema, hi, step, took, bound_ms, report)
        return
    took = time.monotonic() - started
    if row is None:
        return
    if row["finished"]:
        report.recomputed = (
            f"summary buckets made before migration 0088 recomputed back to "
            f"{row['range_from']:%Y-%m-%d %H:%M} UTC: done"
        )
        return
    grown = step
    if took * 1000 < bound_ms / 4 and step < RECOMPUTE_STEP_MAX:
        grown = min(step * 2, RECOMPUTE_STEP_MAX)
        await conn.execute(f"UPDATE {schema}.vehicle_stats_recompute SET step = $1", grown)
    left = (row["range_from"] - row["rest_from"]) / timedelta(days=1)
    report.recomputed = (
        f"summary buckets made before migration 0088: {row['buckets']} recomputed from "
        f"{row['range_from']:%Y-%m-%d %H:%M} to {row['range_to']:%Y-%m-%d %H:%M} UTC in "
        f"{took:.1f} s; {left:.1f} day(s) left, back to {row['rest_from']:%Y-%m-%d %H:%M} UTC "
        f"(next step {_span(grown)}, next pass)"
    )


async def _step_cancelled(
    conn: Any,
    schema: str,
    hi: datetime,
    step: timedelta,
    took: float,
    bound_ms: int,
    report: MaintenanceReport,
) -> str:
    """The step from ``hi`` back did not finish within ``bound_ms``: halve it, or leave a
    one-hour step's hour behind. The line to report."""
    what = (
        f"recompute of the summary buckets made before migration 0088: the step of "
        f"{_span(step)} back from {hi:%Y-%m-%d %H:%M} UTC did not finish within the statement "
        f"timeout ({bound_ms / 1000:g} s, after {took:.1f} s) and was rolled back"
    )
    if step > RECOMPUTE_STEP_MIN:
        # whole hours, so that done_from stays on an hour (the buckets' grain)
        half = max(step // RECOMPUTE_STEP_MIN // 2 * RECOMPUTE_STEP_MIN, RECOMPUTE_STEP_MIN)
        await conn.execute(f"UPDATE {schema}.vehicle_stats_recompute SET step = $1", half)
        return f"{what}; the next pass tries {_span(half)}"
    lo = hi - RECOMPUTE_STEP_MIN
    await conn.execute(f"UPDATE {schema}.vehicle_stats_recompute SET done_from = $1", lo)
    report.recompute_stuck = True
    return (
        f"{what}; that hour keeps its figures from before 0088 and the recompute moves on. "
        f"Recompute it by hand when the database is quiet, as the schema's owner: "
        f"SET statement_timeout = 0; SELECT {schema}.refresh_vehicle_stats("
        f"'{lo:%Y-%m-%d %H:%M}+00', '{hi:%Y-%m-%d %H:%M}+00')"
    )


def _span(step: timedelta) -> str:
    hours = step / RECOMPUTE_STEP_MIN
    return f"{hours:g} h"


async def _drop(conn: Any, schema: str, name: str) -> bool:
    """Drop partition ``name``; False when its parent stayed locked by another session."""
    try:
        async with conn.transaction():
            await conn.execute(f"SET LOCAL lock_timeout = '{partitions.DDL_LOCK_TIMEOUT}'")
            await conn.execute(f"DROP TABLE IF EXISTS {schema}.{name}")
    except asyncpg.LockNotAvailableError:
        return False
    return True
