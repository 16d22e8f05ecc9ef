"""Periodic upkeep of the plain-PostgreSQL flavour: partitions ahead, retention, summaries.

TimescaleDB does all of this itself (chunks on demand, policy jobs); on plain PostgreSQL the
service calls ``run`` every few minutes (``maintenance_interval``). Each call:

* creates the partitions of every time-series table from ``backfill`` ago to ``premake`` ahead,
  aligned to ``partition_interval`` and filling only the gaps (an interval changed later never
  overlaps the partitions already there);
* drops the partitions entirely older than the table's retention;
* recomputes the summary buckets (``vehicle_stats_1m``/``_1h``) of the trailing
  ``summary_lookback`` window;
* after migration 0088, recomputes one more day of the buckets made before it, backwards from
  its cut-over to the oldest raw hour (``vehicle_stats_recompute`` holds the progress).

Concurrent callers are harmless: a session advisory try-lock lets one of them work and the
others return at once (``MaintenanceReport.skipped``). Partition DDL waits for a parent table
held by another session (a pg_dump, a report idle in its transaction) only
``partitions.DDL_LOCK_TIMEOUT``: that table's creations or drop are then left to the next pass
(``MaintenanceReport.deferred``, a warning), and the other tables are done as usual.
"""

from __future__ import annotations

import logging
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
            report.recomputed = await _recompute_step(conn, schema, plain, now)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    deferred = set(report.deferred_lines())
    for line in report.lines():
        level = logging.WARNING if line in deferred else logging.INFO
        log.log(level, "maintenance: %s", line, extra=log_context)
    return report


# One step of the recompute 0088 left to the upkeep: a day of buckets a pass, backwards from
# the cut-over, so that no statement comes near postgres.statement_timeout_ms (the whole
# history in one statement did, inside the migration) and the lock is held for one step.
RECOMPUTE_STEP: Final = timedelta(days=1)


async def _recompute_step(conn: Any, schema: str, plain: PlainParams, now: datetime) -> str | None:
    """Recompute the next day of the summary buckets made before migration 0088 (energy of
    frames with an unknown current counted as 0 kW: migrations/0088_energy_known.plain.sql),
    per-minute ones only within vehicle_stats_1m's retention; one transaction (one statement).
    A line saying what was done, or None once all is (or on a schema from before 0088)."""
    if not await conn.fetchval(
        "SELECT to_regclass($1) IS NOT NULL", f"{schema}.vehicle_stats_recompute"
    ):
        return None
    keep = plain.retention.get("vehicle_stats_1m")
    row = await conn.fetchrow(
        f"SELECT * FROM {schema}.recompute_vehicle_stats_step($1, $2)",
        RECOMPUTE_STEP,
        None if keep is None else now - keep,
    )
    if row is None:
        return None
    if row["finished"]:
        return (
            f"summary buckets made before migration 0088 recomputed back to the oldest raw "
            f"hour ({row['range_from']:%Y-%m-%d %H:%M} UTC): done"
        )
    return (
        f"summary buckets made before migration 0088: {row['buckets']} recomputed from "
        f"{row['range_from']:%Y-%m-%d %H:%M} to {row['range_to']:%Y-%m-%d %H:%M} UTC "
        f"(older ones next pass)"
    )


async def _drop(conn: Any, schema: str, name: str) -> bool:
    """Drop partition ``name``; False when its parent stayed locked by another session."""
    try:
        async with conn.transaction():
            await conn.execute(f"SET LOCAL lock_timeout = '{partitions.DDL_LOCK_TIMEOUT}'")
            await conn.execute(f"DROP TABLE IF EXISTS {schema}.{name}")
    except asyncpg.LockNotAvailableError:
        return False
    return True
