"""Online now, the offline list and per-entity data quality over a day, for the three kinds -
what national and municipal platforms grade operators on.

"Online" is judged from ``latest_state``: an entity whose last frame was received (gateway
time, else frame time) within ``stale`` of now, and for a connector, one whose operator does
not report it offline (status 0); a connector registered by T/CEC 102 by its status alone
(operators push on change: silence is normal, see ``_online``). Quality reads the day's
frames of the kind's table:

=======  ========================  ==========================  ================================
kind     frames of                 entity id                   out of range (any of)
=======  ========================  ==========================  ================================
vehicle  vehicle_telemetry         vin                         SOC 0..100, speed 0..220 km/h,
                                                               voltage 0..1000 V, current
                                                               +-1000 A, a valid position
                                                               outside China (73..136 E,
                                                               3..54 N)
charger  charger_telemetry         operator_id:connector_id    voltage 0..1000 V, current
                                                               0..1000 A, power 0..1000 kW,
                                                               SOC 0..100
battery  pack_telemetry            pack_code                   SOC, SOH 0..100, voltage 0..1000
                                                               V, current +-1000 A
=======  ========================  ==========================  ================================

Expected frames are those of the reporting ``interval`` between an entity's first and last
frame of the day (a vehicle parked all night is not expected to report); clock skew is frame
time minus gateway receive time. A connector's report that arrived both as a binary frame and
as a T/CEC 102 push (two rows, two ``source``) is one frame: frames, out-of-range and skewed
frames count a connector's report seconds (one is out of range or skewed if either copy is);
the mean and largest skew are over both copies. Seconds, not row times: the binary frame's row
is at its whole-second time, the push's at EndTime + Seq microseconds (docs/protocols/
charger.md), so the two copies never share ``ts``; two pushes within one second count once.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any, Final, NamedTuple

from storage.params import check_identifier
from storage.queries import Statement, _like_prefix

__all__ = ["KINDS", "offline", "quality", "summary"]


class _Kind(NamedTuple):
    table: str
    entity: str  # the entity id as an expression of the table's columns
    filter_column: str  # what an id / prefix filter compares (index-leading)
    out_of_range: str
    # How reports are counted: once per report second where one report can be stored twice
    # (charger_telemetry's key has `source`: a binary frame of the reading is at its whole
    # second, the T/CEC push at EndTime + Seq us - two rows, two times in one second), else a
    # plain count (the key is the entity and ts: no sort).
    frames: str = "count(*)"


KINDS: Final = {
    "vehicle": _Kind(
        "vehicle_telemetry",
        "vin",
        "vin",
        """soc_pct NOT BETWEEN 0 AND 100 OR speed_kmh NOT BETWEEN 0 AND 220
            OR total_voltage_v NOT BETWEEN 0 AND 1000 OR total_current_a NOT BETWEEN -1000 AND 1000
            OR (position_valid AND (longitude NOT BETWEEN 73 AND 136
                                    OR latitude NOT BETWEEN 3 AND 54))""",
    ),
    "charger": _Kind(
        "charger_telemetry",
        "operator_id || ':' || connector_id",
        "operator_id || ':' || connector_id",
        """voltage_v NOT BETWEEN 0 AND 1000 OR current_a NOT BETWEEN 0 AND 1000
            OR power_kw NOT BETWEEN 0 AND 1000 OR soc_pct NOT BETWEEN 0 AND 100""",
        "count(DISTINCT date_trunc('second', ts))",
    ),
    "battery": _Kind(
        "pack_telemetry",
        "pack_code",
        "pack_code",
        """soc_pct NOT BETWEEN 0 AND 100 OR soh_pct NOT BETWEEN 0 AND 100
            OR voltage_v NOT BETWEEN 0 AND 1000 OR current_a NOT BETWEEN -1000 AND 1000""",
    ),
}

_LAST_SEEN = "coalesce(received_at, ts)"


def _online(schema: str, kind: str) -> str:
    """Online as a condition on a latest_state row of ``kind`` (one ``%s``: the stale
    interval).

    A connector its operator reports offline (T/CEC status 0) is offline however fresh the
    report. A connector registered by T/CEC 102 (``notification_stationInfo``) is judged by
    its status alone: operators push a connector's status when it changes, so an idle
    connector is silent for hours and still online; one reporting by the binary profile sends
    frames every few seconds, and silence means offline.

    Only the charger condition reads charger_connectors: an OEM's login (nev-ingest roles)
    may not read it, and must still see its vehicles online.
    """
    fresh = f"{_LAST_SEEN} >= now() - %s"
    if kind != "charger":
        return fresh
    tcec = (
        f"EXISTS (SELECT 1 FROM {schema}.charger_connectors c WHERE c.operator_id = "
        "latest_state.operator_id AND c.connector_id = substr(latest_state.entity_id, 11) "
        "AND c.source = 'tcec')"
    )
    return (
        f"CASE WHEN connector_status IS NOT NULL AND {tcec} "
        f"THEN connector_status <> 0 ELSE {fresh} AND "
        "(connector_status IS NULL OR connector_status <> 0) END"
    )


def summary(schema: str, kind: str, stale: timedelta) -> Statement:
    """Entities of ``kind``, how many are online now, and the share that reported today (the
    session's time zone decides where today starts)."""
    s = check_identifier(schema)
    return Statement(
        f"""SELECT %s AS kind, count(*) AS entities,
       count(*) FILTER (WHERE online) AS online,
       count(*) FILTER (WHERE NOT online) AS offline,
       round(100.0 * count(*) FILTER (WHERE online) / nullif(count(*), 0), 2) AS online_pct,
       round(100.0 * count(*) FILTER (WHERE today) / nullif(count(*), 0), 2)
           AS reported_today_pct
FROM (
    SELECT {_online(s, kind)} AS online, {_LAST_SEEN} >= date_trunc('day', now()) AS today
    FROM {s}.latest_state
    WHERE entity_kind = %s
) e""",
        (kind, stale, kind),
    )


def offline(schema: str, kind: str, stale: timedelta, *, limit: int = 10_000) -> Statement:
    """Entities of ``kind`` not online now, longest silent first."""
    s = check_identifier(schema)
    return Statement(
        f"""SELECT entity_id, ts AS last_frame, received_at,
       EXTRACT(epoch FROM now() - {_LAST_SEEN})::bigint AS silent_s, connector_status
FROM {s}.latest_state
WHERE entity_kind = %s AND NOT ({_online(s, kind)})
ORDER BY {_LAST_SEEN}, entity_id
LIMIT %s""",
        (kind, stale, limit),
    )


def quality(
    schema: str,
    kind: str,
    day: date,
    *,
    tz: str,
    interval: timedelta,
    skew: timedelta,
    entity: str | None = None,
    prefix: str | None = None,
    limit: int = 10_000,
) -> Statement:
    """Per entity over the local ``day`` (``tz``): frames, expected frames, completeness,
    out-of-range frames, clock skew (mean and largest, frames beyond ``skew``). Worst
    completeness first. Reads the day's partitions / chunks; ``entity`` / ``prefix`` narrow it
    to one entity / a fleet through the table's primary key."""
    k = KINDS[kind]
    where = ""
    extra: tuple[Any, ...] = ()
    if entity is not None:
        where, extra = f"AND {k.filter_column} = %s", (entity,)
    elif prefix is not None:
        where, extra = f"AND {k.filter_column} LIKE %s", (_like_prefix(prefix),)
    skew_s = "EXTRACT(epoch FROM ts - received_at)"
    return Statement(
        f"""SELECT entity_id, frames, expected,
       round(100.0 * frames / nullif(expected, 0), 1) AS completeness_pct,
       out_of_range, round(avg_skew_s::numeric, 1) AS avg_skew_s,
       round(max_skew_s::numeric, 1) AS max_skew_s, skewed_frames, first_frame, last_frame
FROM (
    SELECT {k.entity} AS entity_id, {k.frames} AS frames,
           floor(EXTRACT(epoch FROM max(ts) - min(ts)) / %s)::bigint + 1 AS expected,
           {k.frames} FILTER (WHERE {k.out_of_range}) AS out_of_range,
           avg({skew_s}) AS avg_skew_s,
           max(abs({skew_s})) AS max_skew_s,
           {k.frames} FILTER (WHERE abs({skew_s}) > %s) AS skewed_frames,
           min(ts) AS first_frame, max(ts) AS last_frame
    FROM {check_identifier(schema)}.{k.table}
    WHERE ts >= (%s::date)::timestamp AT TIME ZONE %s
      AND ts < (%s::date + 1)::timestamp AT TIME ZONE %s
      {where}
    GROUP BY 1
) q
ORDER BY completeness_pct NULLS FIRST, entity_id
LIMIT %s""",
        (
            interval.total_seconds(),
            skew.total_seconds(),
            day,
            tz,
            day,
            tz,
            *extra,
            limit,
        ),
    )
