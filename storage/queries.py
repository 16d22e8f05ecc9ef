"""What regulators ask, as SQL that an index or an aggregate answers (docs/storage.md shows
each EXPLAIN). Synchronous psycopg: these run from the CLI and from reports, not the hot path.

Every query is a ``Statement`` (SQL + parameters) built by one function below; ``run`` fetches
it, ``explain`` shows the plan. Names are schema-qualified, so the session's search_path does
not matter; times are ``timestamptz`` and come back in the session's time zone.

=========  ================================================  ===================================
query      answers                                           served by
=========  ================================================  ===================================
track      a vehicle's positions and telemetry over a range  vehicle_telemetry PK (vin, ts)
latest     the current state of a VIN or a fleet prefix      latest_state PK (kind, id COLLATE C)
alarms     alarm frames of level >= N in a time range         alarm_events (max_level, ts) index
daily      distance and energy per vehicle per day           vehicle_stats_1h (vin, bucket)
pack       cell-voltage spread, max temperature over time    battery_pack_telemetry PK (vin, ts,
                                                             pack, first_cell)
=========  ================================================  ===================================
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from storage.params import check_identifier

__all__ = [
    "QueryResult",
    "Statement",
    "alarms",
    "daily",
    "explain",
    "latest",
    "pack",
    "run",
    "track",
]

# Buckets of whole days or weeks on the wall clock of the query's time zone (the first %s;
# the second turns the bucket back into a time): they start at midnight there, on a Monday (a
# UTC midnight is 08:00 in China), in summer time too (fixed 24 h steps from a winter midnight
# would start summer days at 01:00).
_BUCKET_DAYS = "date_bin(%s, ts AT TIME ZONE %s, TIMESTAMP '2000-01-03 00:00:00') AT TIME ZONE %s"
# Shorter buckets in fixed steps of real time (on the wall clock, the hour that repeats when
# summer time ends would be one bucket of two hours' frames) from midnight, in the query's time
# zone, of the window's first day: 6 h buckets start at 00:00, 06:00 ... there (until a change
# of summer time inside the window shifts the wall clock under them).
_BUCKET = "date_bin(%s, ts, date_trunc('day', %s::timestamptz AT TIME ZONE %s) AT TIME ZONE %s)"
_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Statement:
    """A query ready to run: SQL with ``%s`` placeholders, and its parameters."""

    sql: str
    params: tuple[Any, ...]

    @property
    def limited(self) -> bool:
        """Whether it ends in ``LIMIT %s`` (every query that takes the caller's row limit
        does, as its last parameter): a full result may then have left rows out."""
        return self.sql.rstrip().endswith("LIMIT %s")


@dataclass(frozen=True, slots=True)
class QueryResult:
    """Column names and rows, in order."""

    columns: list[str]
    rows: list[tuple[Any, ...]]


def _t(schema: str, table: str) -> str:
    return f"{check_identifier(schema)}.{table}"


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def track(schema: str, vin: str, start: datetime, end: datetime, limit: int = 10_000) -> Statement:
    """A vehicle's track and main telemetry, oldest first."""
    return Statement(
        f"""SELECT ts, longitude, latitude, position_valid, speed_kmh, odometer_km, soc_pct,
       vehicle_state, charging_state, total_voltage_v, total_current_a, max_temp_c,
       min_cell_voltage_v, max_cell_voltage_v, max_alarm_level, signature_missing
FROM {_t(schema, "vehicle_telemetry")}
WHERE vin = %s AND ts >= %s AND ts < %s
ORDER BY ts
LIMIT %s""",
        (vin, start, end, limit),
    )


# What ``latest`` shows of each kind (latest_state holds the three; 0008_latest_kinds.sql).
_LATEST_COLUMNS = {
    "vehicle": """longitude, latitude, speed_kmh, odometer_km, soc_pct, vehicle_state,
       charging_state, total_voltage_v, total_current_a, max_temp_c, min_cell_voltage_v,
       max_cell_voltage_v, insulation_kohm, max_alarm_level""",
    "charger": """operator_id, connector_status, total_voltage_v, total_current_a, power_kw,
       energy_kwh, connected_vin, soc_pct, max_temp_c""",
    "battery": """edition, lifecycle_stage, place_id, soc_pct, soh_pct, cycle_count,
       total_voltage_v, total_current_a, insulation_kohm, min_cell_voltage_v,
       max_cell_voltage_v, min_temp_c, max_temp_c, max_alarm_level, general_flags""",
}


def latest(
    schema: str,
    *,
    vin: str | None = None,
    prefix: str | None = None,
    kind: str = "vehicle",
    limit: int = 1000,
) -> Statement:
    """The latest state of one entity (``vin``: a VIN, ``OPERATOR:CONNECTOR`` or a pack code)
    or of every entity of ``kind`` whose id starts with ``prefix`` (a fleet: WMI, manufacturer
    or model prefix of the VIN; an operator's connectors; a manufacturer's packs)."""
    if (vin is None) == (prefix is None):
        raise ValueError("give exactly one of vin and prefix")
    if kind not in _LATEST_COLUMNS:
        raise ValueError(f"kind {kind!r}: one of {', '.join(_LATEST_COLUMNS)}")
    where = "entity_id = %s" if vin is not None else "entity_id LIKE %s"
    value = vin if vin is not None else _like_prefix(prefix or "")
    return Statement(
        f"""SELECT entity_id, ts, received_at, {_LATEST_COLUMNS[kind]}, updated_at
FROM {_t(schema, "latest_state")}
WHERE entity_kind = %s AND {where}
ORDER BY entity_id
LIMIT %s""",
        (kind, value, limit),
    )


def alarms(
    schema: str,
    start: datetime,
    end: datetime,
    *,
    min_level: int = 1,
    vin: str | None = None,
    limit: int = 10_000,
) -> Statement:
    """Frames with an alarm of ``min_level`` or worse in [start, end), newest first."""
    vin_filter = "AND vin = %s " if vin is not None else ""
    params: tuple[Any, ...] = (min_level, start, end) + ((vin,) if vin is not None else ())
    return Statement(
        f"""SELECT ts, vin, max_level, general_flags, ress_faults, motor_faults, engine_faults,
       other_faults, bit_levels
FROM {_t(schema, "alarm_events")}
WHERE max_level >= %s AND ts >= %s AND ts < %s {vin_filter}
ORDER BY ts DESC
LIMIT %s""",
        (*params, limit),
    )


def daily(
    schema: str,
    first_day: date,
    last_day: date,
    *,
    tz: str,
    vin: str | None = None,
    prefix: str | None = None,
    limit: int = 100_000,
) -> Statement:
    """Distance and energy per vehicle per local day (``tz``), from the hourly aggregate.

    A day's distance is its highest odometer minus its lowest, so nothing is lost between
    the hours; energy is the sum of the hours' energies.
    """
    if vin is not None and prefix is not None:
        raise ValueError("give vin or prefix, not both")
    where = ""
    extra: tuple[Any, ...] = ()
    if vin is not None:
        where, extra = "AND vin = %s", (vin,)
    elif prefix is not None:
        where, extra = "AND vin LIKE %s", (_like_prefix(prefix),)
    return Statement(
        f"""SELECT vin, (bucket AT TIME ZONE %s)::date AS day,
       max(odometer_max_km) - min(odometer_min_km) AS distance_km,
       sum(energy_out_kwh) AS energy_out_kwh,
       sum(energy_in_kwh) AS energy_in_kwh,
       min(soc_min_pct) AS soc_min_pct,
       max(soc_max_pct) AS soc_max_pct,
       max(max_temp_c) AS max_temp_c,
       sum(alarm_frames)::bigint AS alarm_frames,
       sum(frames)::bigint AS frames
FROM {_t(schema, "vehicle_stats_1h")}
WHERE bucket >= (%s::date)::timestamp AT TIME ZONE %s
  AND bucket < (%s::date + 1)::timestamp AT TIME ZONE %s
  {where}
GROUP BY vin, day
ORDER BY vin, day
LIMIT %s""",
        (tz, first_day, tz, last_day, tz, *extra, limit),
    )


def pack(
    schema: str,
    vin: str,
    start: datetime,
    end: datetime,
    *,
    every: timedelta,
    tz: str,
    limit: int,
    pack_no: int | None = None,
) -> Statement:
    """Per pack and time bucket: frames, largest and mean cell-voltage spread (max - min cell
    of one frame), lowest/highest cell, highest probe temperature. The pages of a 2016 pack
    (first_cell 1, 201, ...) are joined per frame before the spread is taken. Buckets of whole
    days start at midnight in ``tz`` (weeks on a Monday), shorter ones at midnight there of
    the window's first day (``_BUCKET``); at most ``limit`` rows, the earliest."""
    pack_filter = "AND pack = %s" if pack_no is not None else ""
    extra: tuple[Any, ...] = (pack_no,) if pack_no is not None else ()
    days = every % _DAY == timedelta(0)
    bucket, zone = (_BUCKET_DAYS, (tz, tz)) if days else (_BUCKET, (start, tz, tz))
    return Statement(
        f"""WITH frame AS (
    SELECT ts, pack, min(cell_min_mv) AS cell_min_mv, max(cell_max_mv) AS cell_max_mv,
           max(probe_max_c) AS probe_max_c
    FROM {_t(schema, "battery_pack_telemetry")}
    WHERE vin = %s AND ts >= %s AND ts < %s {pack_filter}
    GROUP BY ts, pack
)
SELECT {bucket} AS bucket, pack, count(*) AS frames,
       max(cell_max_mv - cell_min_mv) AS max_spread_mv,
       round(avg(cell_max_mv - cell_min_mv), 1) AS mean_spread_mv,
       min(cell_min_mv) AS cell_min_mv, max(cell_max_mv) AS cell_max_mv,
       max(probe_max_c) AS max_temp_c
FROM frame
GROUP BY 1, 2
ORDER BY 1, 2
LIMIT %s""",
        (vin, start, end, *extra, every, *zone, limit),
    )


def run(conn: Any, statement: Statement) -> QueryResult:
    """Fetch ``statement`` on a psycopg connection."""
    with conn.cursor() as cur:
        cur.execute(statement.sql.encode(), statement.params)
        columns = [d.name for d in cur.description or ()]
        return QueryResult(columns, [tuple(r) for r in cur.fetchall()])


def explain(conn: Any, statement: Statement, *, analyze: bool = True) -> list[str]:
    """The plan of ``statement`` (``EXPLAIN ANALYZE`` by default: it runs the query)."""
    options = "ANALYZE, BUFFERS, " if analyze else ""
    with conn.cursor() as cur:
        cur.execute(f"EXPLAIN ({options}COSTS OFF) {statement.sql}".encode(), statement.params)
        return [str(r[0]) for r in cur.fetchall()]
