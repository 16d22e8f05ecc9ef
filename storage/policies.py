"""What configuration decides, reconciled at every ``migrate``: idempotent, changes only diffs.

TimescaleDB: chunk intervals (new chunks only), compression, retention and continuous-aggregate
refresh policies - a policy whose configuration differs is replaced, an equal one is left
alone (its job id and history stay). Plain PostgreSQL: the partitions of the current window
(``storage.maintenance`` keeps them coming afterwards).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any, Final

from storage import maintenance
from storage.params import TIMESERIES_TABLES, SchemaMode, StorageParams, TimescaleParams

__all__ = [
    "AGGREGATE_VIEWS",
    "CONTINUOUS_AGGREGATES",
    "FROZEN_AGGREGATES",
    "FROZEN_PROC",
    "READ_AS",
    "RECOMPRESS_PROC",
    "RECOMPRESS_SCHEDULE",
    "apply",
    "human",
]

log = logging.getLogger(__name__)

# The continuous aggregates refreshed, and the name each is read under (retention is
# configured by that name). Since 0088 ``vehicle_stats_1m``/``_1h`` are views over two of them
# (migrations/0088_energy_known.timescale.sql): ``_energy`` from the cut-over on, and
# ``_0003``, frozen, before it (no refresh; its retention still applies; dropped by 0088 when
# it held no row, e.g. on a fresh install).
CONTINUOUS_AGGREGATES: Final = ("vehicle_stats_1m_energy", "vehicle_stats_1h_energy")
FROZEN_AGGREGATES: Final = ("vehicle_stats_1m_0003", "vehicle_stats_1h_0003")
# The views 0088 put where the aggregates were: like them, read with their owner's rights.
AGGREGATE_VIEWS: Final = ("vehicle_stats_1m", "vehicle_stats_1h")
READ_AS: Final = {
    "vehicle_stats_1m_energy": "vehicle_stats_1m",
    "vehicle_stats_1h_energy": "vehicle_stats_1h",
    "vehicle_stats_1m_0003": "vehicle_stats_1m",
    "vehicle_stats_1h_0003": "vehicle_stats_1h",
}
# The job re-segmenting rolled-up compressed chunks (migrations/0004_recompress.timescale.sql).
# Hourly: a run with nothing to do is one catalog query, and a day's chunks are due once a day.
RECOMPRESS_PROC: Final = "recompress_rolled_up"
RECOMPRESS_SCHEDULE: Final = timedelta(hours=1)
# The job emptying the frozen 0003 aggregates' invalidation logs (_frozen_invalidations).
FROZEN_PROC: Final = "vehicle_stats_frozen_invalidations"
FROZEN_SCHEDULE: Final = timedelta(hours=1)

# Recent TimescaleDB versions name a continuous aggregate's jobs after the view, older ones
# after its materialisation hypertable: match either.
_JOB = """
SELECT j.job_id, j.config, j.schedule_interval
FROM timescaledb_information.jobs j
WHERE j.proc_name = $1
  AND ((j.hypertable_schema = $2 AND j.hypertable_name = $3)
       OR (j.hypertable_schema, j.hypertable_name) IN (
           SELECT c.materialization_hypertable_schema, c.materialization_hypertable_name
           FROM timescaledb_information.continuous_aggregates c
           WHERE c.view_schema = $2 AND c.view_name = $3))
ORDER BY j.job_id
"""


async def apply(
    conn: Any, params: StorageParams, mode: SchemaMode, *, now: datetime | None = None
) -> list[str]:
    """Bring the schema's settings in line with ``params``; one line per change made."""
    if mode is SchemaMode.TIMESCALE:
        return await _timescale(conn, params.schema, params.timescale)
    report = await maintenance.run(conn, params, SchemaMode.PLAIN, now=now, refresh=False)
    return report.lines()


async def _interval_equal(conn: Any, a: Any, b: timedelta | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return bool(await conn.fetchval("SELECT $1::text::interval = $2::interval", str(a), b))


async def _job(conn: Any, proc: str, schema: str, name: str) -> Any:
    rows = await conn.fetch(_JOB, proc, schema, name)
    return rows[0] if rows else None


def human(t: timedelta) -> str:
    """``timedelta`` as people write intervals: 10 min, 6 h, 2 days."""
    s = int(t.total_seconds())
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if s and s % size == 0:
            n = s // size
            return f"{n} {'day' if unit == 'days' and n == 1 else unit}"
    return f"{s} s"


def _config(job: Any) -> dict[str, Any]:
    raw = job["config"]
    parsed: dict[str, Any] = json.loads(raw) if isinstance(raw, str) else dict(raw or {})
    return parsed


async def _timescale(conn: Any, schema: str, ts: TimescaleParams) -> list[str]:
    changes: list[str] = []
    intervals = ts.chunk_intervals()
    for table in TIMESERIES_TABLES:
        rel = f"{schema}.{table}"
        current = await conn.fetchval(
            "SELECT time_interval FROM timescaledb_information.dimensions "
            "WHERE hypertable_schema = $1 AND hypertable_name = $2 AND column_name = 'ts'",
            schema,
            table,
        )
        if current != intervals[table]:
            await conn.execute(
                "SELECT set_chunk_time_interval($1::regclass, $2::interval)", rel, intervals[table]
            )
            changes.append(f"{table}: chunk interval {human(intervals[table])}")
        changes += await _rollup(conn, schema, table, ts.rollup(table))
        changes += await _policy(
            conn,
            schema,
            table,
            "policy_compression",
            "compress_after",
            ts.compress_after,
            add="SELECT add_compression_policy($1::regclass, compress_after => $2::interval)",
            remove="SELECT remove_compression_policy($1::regclass, if_exists => true)",
        )
    # An aggregate not there is skipped: migrate runs this after the files it was given, which
    # for a directory of an earlier version (tests) stop before 0088 made them.
    aggregates = [
        n
        for n in (*CONTINUOUS_AGGREGATES, *FROZEN_AGGREGATES)
        if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{schema}.{n}")
    ]
    for name in (*TIMESERIES_TABLES, *aggregates):
        changes += await _policy(
            conn,
            schema,
            name,
            "policy_retention",
            "drop_after",
            ts.retention.get(READ_AS.get(name, name)),
            add="SELECT add_retention_policy($1::regclass, drop_after => $2::interval)",
            remove="SELECT remove_retention_policy($1::regclass, if_exists => true)",
        )
    for cagg in CONTINUOUS_AGGREGATES:
        if cagg not in aggregates:
            continue
        rel = f"{schema}.{cagg}"
        job = await _job(conn, "policy_refresh_continuous_aggregate", schema, cagg)
        if job is None:  # its first policy: materialise it from the cut-over first
            changes += await _fill_from_cutover(conn, schema, cagg, ts)
        same = job is not None
        if job is not None:
            cfg = _config(job)
            same = (
                await _interval_equal(conn, cfg.get("start_offset"), ts.cagg_start_offset)
                and await _interval_equal(conn, cfg.get("end_offset"), ts.cagg_end_offset)
                and job["schedule_interval"] == ts.cagg_schedule
            )
        if not same:
            await conn.execute(
                "SELECT remove_continuous_aggregate_policy($1::regclass, if_exists => true)", rel
            )
            await conn.execute(
                "SELECT add_continuous_aggregate_policy($1::regclass, "
                "start_offset => $2::interval, end_offset => $3::interval, "
                "schedule_interval => $4::interval)",
                rel,
                ts.cagg_start_offset,
                ts.cagg_end_offset,
                ts.cagg_schedule,
            )
            changes.append(
                f"{cagg}: refresh every {human(ts.cagg_schedule)}, from "
                f"{human(ts.cagg_start_offset)} to {human(ts.cagg_end_offset)} ago"
            )
    if any(c in aggregates for c in CONTINUOUS_AGGREGATES):  # 0088 ran
        changes += await _frozen_invalidations(
            conn, schema, [f for f in FROZEN_AGGREGATES if f in aggregates]
        )
    changes += await _recompress(conn, schema, ts)
    for line in changes:
        log.info("timescale setting: %s", line)
    return changes


async def _fill_from_cutover(conn: Any, schema: str, cagg: str, ts: TimescaleParams) -> list[str]:
    """Materialise ``cagg`` from the cut-over (where 0088's view passes from the frozen 0003
    aggregate to it: ``vehicle_stats_cutover()``, NULL when there is none) to where its refresh
    policy will end (the bucket holding ``now() - cagg_end_offset``); called before ``cagg``
    has a refresh policy, i.e. once.

    Until its first refresh a continuous aggregate computes every bucket from the raw rows; its
    refresh policy then materialises only its trailing window and moves the watermark past it,
    which would hide the buckets between the cut-over and that window, and the view has no
    other copy of them. The fill stops where the policy stops: the open bucket is left to
    real-time aggregation (materialised, it would stay frozen at the frames seen now). A refresh
    cannot run in a migration's transaction, so it runs here; if it fails no policy is added,
    and the next migrate runs it again.
    """
    start, end = await conn.fetchrow(
        f"SELECT {schema}.vehicle_stats_cutover(), time_bucket($1::interval, now() - $2::interval)",
        _WIDTH[cagg],
        ts.cagg_end_offset,
    )
    if start is not None and start >= end:
        return []  # nothing closed after the cut-over yet: the policy's window covers it
    first = "NULL" if start is None else f"'{start.isoformat()}'"
    # simple protocol (no parameters): the procedure commits, which a bound CALL may not
    await conn.execute(
        f"CALL refresh_continuous_aggregate('{schema}.{cagg}', {first}, '{end.isoformat()}')"
    )
    since = "the beginning" if start is None else f"{start:%Y-%m-%d %H:%M} UTC"
    return [f"{cagg}: materialised from the cut-over ({since}) to {end:%Y-%m-%d %H:%M} UTC"]


# The width of each aggregate's buckets (migrations/0088_energy_known.timescale.sql).
_WIDTH: Final = {
    "vehicle_stats_1m_energy": timedelta(minutes=1),
    "vehicle_stats_1h_energy": timedelta(hours=1),
}


async def _frozen_invalidations(conn: Any, schema: str, frozen: list[str]) -> list[str]:
    """One job deleting the frozen aggregates' invalidation-log entries while any is there.

    Every refresh of the hypertable's continuous aggregates copies its invalidations (late
    frames) to each aggregate's log, which only that aggregate's own refresh empties; the frozen
    ones are never refreshed, so theirs would grow for ever. The procedure writes TimescaleDB's
    catalog: only a user with DELETE on it (its owner, a superuser) can run it, and the job runs
    as the user adding it, so without that right no job is added and a warning says what to do.
    """
    rows = await _schema_jobs(conn, schema, FROZEN_PROC)
    if not frozen:
        for r in rows:
            await conn.execute("SELECT delete_job($1)", r["job_id"])
        return [f"{FROZEN_PROC}: removed (no frozen aggregate)"] if rows else []
    if rows:
        return []
    if not await conn.fetchval(
        "SELECT has_table_privilege('_timescaledb_catalog."
        "continuous_aggs_materialization_invalidation_log', 'DELETE')"
    ):
        log.warning(
            "timescale setting: %s not scheduled: %s may not delete from TimescaleDB's "
            "catalog, so the invalidation log of %s grows with every late frame; run "
            "`nev-ingest migrate` once as the database's superuser (or the TimescaleDB "
            "extension's owner) to schedule it",
            FROZEN_PROC,
            await conn.fetchval("SELECT current_user"),
            ", ".join(frozen),
        )
        return []
    await _add_job(conn, schema, FROZEN_PROC, FROZEN_SCHEDULE, {"schema": schema})
    return [f"{FROZEN_PROC}: every {human(FROZEN_SCHEDULE)}"]


async def _recompress(conn: Any, schema: str, ts: TimescaleParams) -> list[str]:
    """One recompression job for the schema while any table rolls chunks up, else none.

    A rolled-up chunk stops growing once the chunk after it is compressed, i.e. when it ends
    ``compress_after`` plus that chunk's interval ago; the longest rolled-up chunk interval
    plus an hour of slack for the compression policy's own schedule covers every table.
    """
    rolled = [ts.chunk_intervals()[t] for t in TIMESERIES_TABLES if ts.rollup(t) is not None]
    want: dict[str, str] | None = None
    if rolled:
        settled = ts.compress_after + max(rolled) + timedelta(hours=1)
        want = {"schema": schema, "settled_after": f"{int(settled.total_seconds())} seconds"}
    rows = await _schema_jobs(conn, schema, RECOMPRESS_PROC)
    if len(rows) == 1 and want is not None:
        have = _config(rows[0])
        if have == want and rows[0]["schedule_interval"] == RECOMPRESS_SCHEDULE:
            return []
    if not rows and want is None:
        return []
    for r in rows:
        await conn.execute("SELECT delete_job($1)", r["job_id"])
    if want is None:
        return [f"{RECOMPRESS_PROC}: removed (no table rolls chunks up)"]
    await _add_job(conn, schema, RECOMPRESS_PROC, RECOMPRESS_SCHEDULE, want)
    return [
        f"{RECOMPRESS_PROC}: every {human(RECOMPRESS_SCHEDULE)}, chunks that ended "
        f"{human(settled)} ago"
    ]


async def _schema_jobs(conn: Any, schema: str, proc: str) -> list[Any]:
    """The jobs running ``schema``'s procedure ``proc`` (job_id, config, schedule_interval)."""
    rows: list[Any] = await conn.fetch(
        "SELECT job_id, config, schedule_interval FROM timescaledb_information.jobs "
        "WHERE proc_schema = $1 AND proc_name = $2 ORDER BY job_id",
        schema,
        proc,
    )
    return rows


async def _add_job(
    conn: Any, schema: str, proc: str, schedule: timedelta, config: dict[str, str]
) -> None:
    await conn.execute(
        "SELECT add_job($1::regproc, $2::interval, config => $3::jsonb)",
        f"{schema}.{proc}",
        schedule,
        json.dumps(config),
    )


async def _rollup(conn: Any, schema: str, table: str, want: timedelta | None) -> list[str]:
    have = await conn.fetchval(
        "SELECT compress_interval_length::text "
        "FROM timescaledb_information.hypertable_compression_settings "
        "WHERE hypertable = $1::regclass",
        f"{schema}.{table}",
    )
    if await _interval_equal(conn, have, want):
        return []
    value = "NULL" if want is None else f"'{int(want.total_seconds())} seconds'"
    await conn.execute(
        f"ALTER TABLE {schema}.{table} SET (timescaledb.compress_chunk_time_interval = {value})"
    )
    return [f"{table}: compression merges chunks up to {human(want) if want else 'off'}"]


async def _policy(
    conn: Any,
    schema: str,
    name: str,
    proc: str,
    key: str,
    want: timedelta | None,
    *,
    add: str,
    remove: str,
) -> list[str]:
    job = await _job(conn, proc, schema, name)
    have = _config(job).get(key) if job is not None else None
    if await _interval_equal(conn, have, want):
        return []
    rel = f"{schema}.{name}"
    await conn.execute(remove, rel)
    if want is None:
        return [f"{name}: {proc} removed"]
    await conn.execute(add, rel, want)
    return [f"{name}: {proc} {key} = {human(want)}"]
