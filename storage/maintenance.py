"""Periodic upkeep of the plain-PostgreSQL flavour: partitions ahead, retention, summaries.

TimescaleDB does all of this itself (chunks on demand, policy jobs); on plain PostgreSQL the
service calls ``run`` every few minutes (``maintenance_interval``). Each call:

* creates the partitions of every time-series table from ``backfill`` ago to ``premake`` ahead,
  aligned to ``partition_interval`` and filling only the gaps (an interval changed later never
  overlaps the partitions already there);
* drops the partitions entirely older than the table's retention;
* recomputes the summary buckets (``vehicle_stats_1m``/``_1h``) of the trailing
  ``summary_lookback`` window.

Concurrent callers are harmless: a session advisory try-lock lets one of them work and the
others return at once (``MaintenanceReport.skipped``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from storage.params import TIMESERIES_TABLES, SchemaMode, StorageParams, check_identifier

__all__ = ["MaintenanceReport", "plan_partitions", "run"]

log = logging.getLogger(__name__)

LOCK_KEY: Final = 0x6E65_7600_0002
# Partition slots are aligned to multiples of the interval since this instant (a Monday, as
# TimescaleDB aligns its buckets), so weekly partitions start on Mondays.
_ORIGIN: Final = datetime(2000, 1, 3, tzinfo=UTC)

_BOUNDS = r"FROM \('([^']+)'\) TO \('([^']+)'\)"
_LIST = """
SELECT c.relname AS name,
       (regexp_match(pg_get_expr(c.relpartbound, c.oid), $2))[1]::timestamptz AS lo,
       (regexp_match(pg_get_expr(c.relpartbound, c.oid), $2))[2]::timestamptz AS hi
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = $1::regclass
"""


@dataclass(slots=True)
class MaintenanceReport:
    """What one ``run`` did."""

    skipped: bool = False
    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    summary_rows: int | None = None

    def lines(self) -> list[str]:
        out = [f"partition created: {n}" for n in self.created]
        out += [f"partition dropped (retention): {n}" for n in self.dropped]
        if self.summary_rows is not None:
            out.append(f"summary buckets recomputed: {self.summary_rows}")
        return out


def _align(t: datetime, interval: timedelta) -> datetime:
    return _ORIGIN + ((t - _ORIGIN) // interval) * interval


def plan_partitions(
    existing: Sequence[tuple[datetime, datetime]],
    start: datetime,
    end: datetime,
    interval: timedelta,
) -> list[tuple[datetime, datetime]]:
    """The ranges to create so that [start, end) is covered: aligned slots minus ``existing``.

    A slot partly covered by an existing partition (after ``interval`` changed) gets only its
    uncovered pieces, so new partitions never overlap old ones.
    """
    taken = sorted(existing)
    out: list[tuple[datetime, datetime]] = []
    slot = _align(start, interval)
    while slot < end:
        lo, hi = slot, slot + interval
        for t_lo, t_hi in taken:
            if t_hi <= lo or t_lo >= hi:
                continue
            if t_lo > lo:
                out.append((lo, t_lo))
            lo = max(lo, t_hi)
            if lo >= hi:
                break
        if lo < hi:
            out.append((lo, hi))
        slot += interval
    return out


def _literal(t: datetime) -> str:
    return t.astimezone(UTC).strftime("'%Y-%m-%d %H:%M:%S+00'")


async def run(
    conn: Any,
    params: StorageParams,
    mode: SchemaMode,
    *,
    now: datetime | None = None,
    refresh: bool = True,
) -> MaintenanceReport:
    """One maintenance pass over ``params.schema`` (a no-op on TimescaleDB)."""
    report = MaintenanceReport()
    if mode is not SchemaMode.PLAIN:
        return report
    schema = check_identifier(params.schema)
    plain = params.plain
    now = now or datetime.now(UTC)
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY):
        report.skipped = True
        return report
    try:
        for table in TIMESERIES_TABLES:
            rows = await conn.fetch(_LIST, f"{schema}.{table}", _BOUNDS)
            existing = [(r["lo"], r["hi"]) for r in rows if r["lo"] is not None]
            keep = plain.retention.get(table)
            # never (re)create what retention would drop: backfill stops at the horizon
            back = plain.backfill if keep is None else min(plain.backfill, keep)
            wanted = plan_partitions(
                existing, now - back, now + plain.premake, plain.partition_interval
            )
            for lo, hi in wanted:
                name = f"{table}_p{lo.astimezone(UTC):%Y%m%d%H%M}"
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {schema}.{name} PARTITION OF {schema}.{table} "
                    f"FOR VALUES FROM ({_literal(lo)}) TO ({_literal(hi)})"
                )
                report.created.append(name)
            if keep is not None:
                for r in rows:
                    if r["hi"] is not None and r["hi"] <= now - keep:
                        await conn.execute(f"DROP TABLE IF EXISTS {schema}.{r['name']}")
                        report.dropped.append(r["name"])
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
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    for line in report.lines():
        log.info("maintenance: %s", line)
    return report
