"""Where battery packs have been: one pack's history and the swaps of a time range.

The views of migration 0009 (``pack_places``, ``pack_bindings``, ``pack_swaps``,
``vehicle_pack_history``) answer any SQL; these statements answer the CLI's questions from
the same rules, written so that the indexes serve them:

=========  ==============================================  =====================================
query      answers                                         served by
=========  ==============================================  =====================================
about      the code's fields and the pack's latest state   latest_state PK
bindings   runs of one place (vehicle, station, ...) with  vehicle_sessions GIN (pack_codes),
           a telemetry summary per run                     pack_telemetry PK (pack_code, ts),
                                                           battery_pack_telemetry PK (vin, ts..)
swaps      one pack's changes of place                     as bindings
swaps_in   every swap of a time range                      time pruning (partitions / chunks)
=========  ==============================================  =====================================

Why not ``SELECT * FROM pack_bindings WHERE pack_code = %s``: the filter reaches pack_telemetry
through the views' windows, but the vehicle logins name packs inside an array, and a filter on
an unnested element never becomes the ``pack_codes @> ARRAY[...]`` the GIN index needs. So the
places of one pack are selected here with that condition, and the run-finding of the view
(``_RUNS``, the same SQL as ``pack_bindings`` in 0077_pack_unknown_site.sql and 0085; the
integration test compares the two) runs on them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from ingest.decoders.pack_code import PackCode
from storage.params import check_identifier
from storage.queries import Statement

__all__ = ["about", "bindings", "swaps", "swaps_in"]

# The places of one pack (%s = the code, 6 times): logins naming it, through the GIN index, its
# own reports (pack_telemetry PK), and the next login of each of those vehicles that no longer
# names it (the stay ends there, 'unbound': see pack_places in 0009_pack_views.sql).
_PLACES_OF_PACK = """places AS (
    SELECT p.pack_code, s.ts, 'vehicle'::text AS place_kind, s.vin::text AS place_id,
           p.position::smallint AS position, 'vehicle_login'::text AS source
    FROM {vehicle_sessions} s
    CROSS JOIN LATERAL unnest(s.pack_codes) WITH ORDINALITY AS p(pack_code, position)
    WHERE s.event = 'login' AND s.pack_codes @> ARRAY[%s::text] AND p.pack_code = %s
    UNION ALL
    SELECT t.pack_code, t.ts, {schema}.pack_place_kind(t.lifecycle_stage), t.site_id::text,
           NULL::smallint, 'pack_report'
    FROM {pack_telemetry} t
    WHERE t.pack_code = %s
    UNION ALL
    SELECT %s, n.ts, 'unbound', s.vin::text, NULL::smallint, 'vehicle_login'
    FROM {vehicle_sessions} s
    CROSS JOIN LATERAL (
        SELECT x.ts, x.pack_codes FROM {vehicle_sessions} x
        WHERE x.vin = s.vin AND x.event = 'login' AND cardinality(x.pack_codes) > 0
          AND x.ts > s.ts
        ORDER BY x.ts
        LIMIT 1
    ) n
    WHERE s.event = 'login' AND s.pack_codes @> ARRAY[%s::text]
      AND NOT n.pack_codes @> ARRAY[%s::text]
)"""

# The places of every pack in a time range (%s, %s = its start and end, 3 times): pack_places
# of 0009_pack_views.sql with the range inside each branch. Filtering the view instead reads
# every login ever stored: its departures take lag() over each vehicle's logins, and a filter
# on ts cannot go below a window. Here the previous login is looked for in the range only; a
# departure whose previous login is older would be dropped by the run-finding anyway (it counts
# only right after that vehicle's own report, which is then not in the range either).
_PLACES_IN_RANGE = """places AS (
    SELECT p.pack_code, s.ts, 'vehicle'::text AS place_kind, s.vin::text AS place_id,
           p.position::smallint AS position, 'vehicle_login'::text AS source
    FROM {vehicle_sessions} s
    CROSS JOIN LATERAL unnest(s.pack_codes) WITH ORDINALITY AS p(pack_code, position)
    WHERE s.event = 'login' AND s.ts >= %s AND s.ts < %s
    UNION ALL
    SELECT t.pack_code, t.ts, {schema}.pack_place_kind(t.lifecycle_stage), t.site_id::text,
           NULL::smallint, 'pack_report'
    FROM {pack_telemetry} t
    WHERE t.ts >= %s AND t.ts < %s
    UNION ALL
    SELECT gone.pack_code, l.ts, 'unbound', l.vin::text, NULL::smallint, 'vehicle_login'
    FROM (
        SELECT vin, ts, pack_codes,
               lag(pack_codes) OVER (PARTITION BY vin ORDER BY ts) AS before
        FROM {vehicle_sessions}
        WHERE event = 'login' AND cardinality(pack_codes) > 0 AND ts >= %s AND ts < %s
    ) l
    CROSS JOIN LATERAL unnest(l.before) AS gone(pack_code)
    WHERE NOT (gone.pack_code = ANY (l.pack_codes))
)"""

# pack_bindings (0009_pack_views.sql, as 0077_pack_unknown_site.sql replaced it: a report
# without a site is left out like an 'unknown' one) over the CTE ``places`` (kept the same).
_RUNS = """bindings AS (
    SELECT pack_code, place_kind, place_id, position, valid_from,
           lead(valid_from) OVER (PARTITION BY pack_code ORDER BY valid_from) AS valid_to,
           reports
    FROM (
        SELECT pack_code, min(place_kind) AS place_kind, min(place_id) AS place_id,
               min(position) AS position, min(ts) AS valid_from, count(*) AS reports
        FROM (
            SELECT pack_code, ts, place_kind, place_id, position,
                   count(*) FILTER (WHERE moved) OVER (
                       PARTITION BY pack_code ORDER BY ts, source, place_kind, place_id
                       ROWS UNBOUNDED PRECEDING) AS run
            FROM (
                SELECT pack_code, ts, place_kind, place_id, position, source,
                       (place_kind, place_id) IS DISTINCT FROM
                           (lag(place_kind) OVER w, lag(place_id) OVER w) AS moved
                FROM (
                    SELECT pack_code, ts, place_kind, place_id, position, source,
                           lag(place_kind) OVER w AS before_kind,
                           lag(place_id) OVER w AS before_id
                    FROM (
                        SELECT pack_code, ts, place_kind, place_id, position, source,
                               lag(place_kind) OVER w AS prior_kind
                        FROM places
                        WHERE place_kind <> 'unknown'
                        WINDOW w AS (
                            PARTITION BY pack_code ORDER BY ts, source, place_kind, place_id)
                    ) reported
                    WHERE place_id IS NOT NULL OR place_kind IS DISTINCT FROM prior_kind
                    WINDOW w AS (PARTITION BY pack_code ORDER BY ts, source, place_kind, place_id)
                ) known
                WHERE place_kind <> 'unbound'
                   OR (before_kind = 'vehicle' AND before_id = place_id)
                WINDOW w AS (PARTITION BY pack_code ORDER BY ts, source, place_kind, place_id)
            ) reports
        ) numbered
        GROUP BY pack_code, run
    ) runs
)"""

_SWAPS = """SELECT pack_code, ts, from_kind, from_id, to_kind, to_id
FROM (
    SELECT pack_code, valid_from AS ts,
           lag(place_kind) OVER w AS from_kind, lag(place_id) OVER w AS from_id,
           place_kind AS to_kind, place_id AS to_id,
           lag(valid_from) OVER w IS NOT NULL AS after_first
    FROM bindings
    WHERE place_kind <> 'unbound'
    WINDOW w AS (PARTITION BY pack_code ORDER BY valid_from)
) changes
WHERE after_first AND (from_kind, from_id) IS DISTINCT FROM (to_kind, to_id)"""


_TABLES = ("vehicle_sessions", "pack_telemetry", "battery_pack_telemetry")


def _names(schema: str) -> dict[str, str]:
    """Schema-qualified names (the session's search_path does not matter)."""
    s = check_identifier(schema)
    return {"schema": s, **{t: f"{s}.{t}" for t in _TABLES}}


def _places(schema: str) -> str:
    return _PLACES_OF_PACK.format(**_names(schema))


def about(schema: str, code: PackCode) -> Statement:
    """The code's fields (GB/T 34014) and the pack's latest standalone report, if any."""
    s = check_identifier(schema)
    return Statement(
        f"""SELECT %s AS pack_code, %s AS manufacturer, %s AS product, %s AS battery_type,
       %s::date AS production_date, l.ts AS last_report, l.soc_pct, l.soh_pct, l.cycle_count,
       {s}.pack_place_kind(l.lifecycle_stage) AS place_kind, l.place_id,
       l.max_alarm_level
FROM (SELECT 1) one
LEFT JOIN {s}.latest_state l ON l.entity_kind = 'battery' AND l.entity_id = %s""",
        (
            code.code,
            code.manufacturer,
            code.product_type_name,
            code.battery_type_name,
            code.production_date,
            code.code,
        ),
    )


def bindings(schema: str, code: str) -> Statement:
    """One pack's bindings, oldest first, each with what was reported during it: frames from
    the vehicles it was in (battery_pack_telemetry of its position, from a login naming it to
    that vehicle's next login naming packs, as vehicle_pack_history) and its own frames
    (pack_telemetry)."""
    n = _names(schema)
    return Statement(
        f"""WITH {_places(schema)},
{_RUNS},
logins AS (
    SELECT s.vin, s.ts, p.position::smallint AS position,
           -- the vehicle's next login naming packs: one naming none says nothing (0078)
           (SELECT min(n.ts) FROM {n["vehicle_sessions"]} n
            WHERE n.vin = s.vin AND n.event = 'login' AND cardinality(n.pack_codes) > 0
              AND n.ts > s.ts) AS until
    FROM {n["vehicle_sessions"]} s
    CROSS JOIN LATERAL unnest(s.pack_codes) WITH ORDINALITY AS p(pack_code, position)
    WHERE s.event = 'login' AND s.pack_codes @> ARRAY[%s::text] AND p.pack_code = %s
),
vehicle_frames AS (
    SELECT l.vin, l.ts AS login_ts, v.*
    FROM logins l
    CROSS JOIN LATERAL (
        SELECT count(DISTINCT t.ts) AS frames, min(t.cell_min_mv) AS cell_min_mv,
               max(t.cell_max_mv) AS cell_max_mv, max(t.probe_max_c) AS max_temp_c
        FROM {n["battery_pack_telemetry"]} t
        WHERE t.vin = l.vin AND t.pack = l.position AND t.ts >= l.ts
          AND (l.until IS NULL OR t.ts < l.until)
    ) v
)
SELECT b.place_kind, b.place_id, b.position, b.valid_from, b.valid_to, b.reports,
       coalesce(vf.frames, 0) AS vehicle_frames, coalesce(pf.frames, 0) AS pack_frames,
       pf.soc_min_pct, pf.soc_max_pct, pf.soh_min_pct, pf.cycle_count,
       least(vf.cell_min_mv, pf.cell_min_mv) AS cell_min_mv,
       greatest(vf.cell_max_mv, pf.cell_max_mv) AS cell_max_mv,
       greatest(vf.max_temp_c, pf.max_temp_c) AS max_temp_c
FROM bindings b
LEFT JOIN LATERAL (
    SELECT sum(f.frames)::bigint AS frames, min(f.cell_min_mv) AS cell_min_mv,
           max(f.cell_max_mv) AS cell_max_mv, max(f.max_temp_c) AS max_temp_c
    FROM vehicle_frames f
    WHERE b.place_kind = 'vehicle' AND f.vin = b.place_id AND f.login_ts >= b.valid_from
      AND (b.valid_to IS NULL OR f.login_ts < b.valid_to)
) vf ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS frames, min(t.soc_pct) AS soc_min_pct, max(t.soc_pct) AS soc_max_pct,
           min(t.soh_pct) AS soh_min_pct, max(t.cycle_count) AS cycle_count,
           min(t.cell_min_mv) AS cell_min_mv, max(t.cell_max_mv) AS cell_max_mv,
           max(t.probe_max_c) AS max_temp_c
    FROM {n["pack_telemetry"]} t
    WHERE t.pack_code = %s AND t.ts >= b.valid_from
      AND (b.valid_to IS NULL OR t.ts < b.valid_to)
) pf ON true
ORDER BY b.valid_from""",
        (code, code, code, code, code, code, code, code, code),
    )


def swaps(schema: str, code: str) -> Statement:
    """One pack's changes of place, oldest first."""
    return Statement(
        f"WITH {_places(schema)},\n{_RUNS}\n{_SWAPS}\nORDER BY ts",
        (code,) * 6,
    )


def swaps_in(
    schema: str, start: datetime, end: datetime, *, lookback: timedelta, limit: int = 10_000
) -> Statement:
    """Every swap with a frame time in [start, end), oldest first.

    A swap needs the place a pack left, so places are read from ``lookback`` before ``start``:
    a pack whose previous report is older than that shows no swap at its first report in the
    range (vehicles log in at every start, stations report every few seconds, so a week sees
    the previous place of any pack in use). Every table is read by time only (partitions or
    chunks of the range), never in full."""
    since = start - lookback
    return Statement(
        f"""WITH {_PLACES_IN_RANGE.format(**_names(schema))},
{_RUNS}
SELECT * FROM ({_SWAPS}) s
WHERE ts >= %s
ORDER BY ts, pack_code
LIMIT %s""",
        (since, end, since, end, since, end, start, limit),
    )
