"""The Regulator dashboard: the fleet as a regulator sees it, from PostgreSQL/TimescaleDB.

Every query reads a summary (``latest_state``: one row per entity; ``vehicle_stats_1m``/``_1h``:
continuous aggregates on TimescaleDB, summary tables of the same names on plain PostgreSQL;
``alerts``: one row per alert episode, indexed by opening time and open state), never a scan of
the raw hypertables. Unqualified names: give Grafana's database role ``search_path = nev``
(storage.schema). tests/integration/test_dashboards_sql.py runs each query, with Grafana's
macros expanded, against a migrated database."""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders import barchart, dashboard, geomap, stat, table, timeseries
from grafana_foundation_sdk.builders.common import (
    FrameGeometrySource,
    MapLayerOptions,
    StackingConfig,
)
from grafana_foundation_sdk.builders.geomap import MapViewConfig
from grafana_foundation_sdk.models.common import FrameGeometrySourceMode, StackingMode
from grafana_foundation_sdk.models.dashboard import DashboardCursorSync

from devtools.dashboards.panels import last_value, legend
from devtools.dashboards.sql import POSTGRES, SqlQueryBuilder

__all__ = ["PAGED_SEVERITY", "UID", "build"]

UID = "nev-ingest-regulator"
# The open alerts shown as the ones to act on: every rule of this severity, of any entity kind
# and rule file, as the NevIngestCriticalAlert Prometheus alert pages them (by severity, not by
# rule id: a list of ids missed the pack rules when packs came).
PAGED_SEVERITY: Final = "critical"
# "Online": a frame (by its own time) within this interval. GB/T 32960 vehicles report at
# least every 30 s while running.
ONLINE: Final = "interval '5 minutes'"


def _online(kind: str, title: str) -> stat.Panel:
    sql = f"""
SELECT count(*) AS online
FROM latest_state
WHERE entity_kind = '{kind}' AND ts > now() - {ONLINE}
"""
    return (
        stat.Panel()
        .title(title)
        .description(f"Entities of kind {kind} with a frame in the last 5 minutes (latest_state).")
        .datasource(POSTGRES)
        .with_target(SqlQueryBuilder(sql))
        .reduce_options(last_value())
        .span(6)
        .height(4)
    )


def _open_critical_count() -> stat.Panel:
    sql = f"""
SELECT count(*) AS open_alerts
FROM alerts
WHERE cleared_at IS NULL AND severity = '{PAGED_SEVERITY}'
"""
    return (
        stat.Panel()
        .title("Open critical alerts")
        .description(
            "Alerts of critical rules not cleared, of vehicles, chargers and packs: thermal "
            "runaway, a charger's output above the BMS demand (they page: NevIngestCriticalAlert)."
        )
        .datasource(POSTGRES)
        .with_target(SqlQueryBuilder(sql))
        .reduce_options(last_value())
        .span(6)
        .height(4)
    )


def _alarms_by_level() -> timeseries.Panel:
    # Vehicle-minutes by the highest GB/T 32960 alarm level reported in the minute.
    sql = """
SELECT $__timeGroupAlias(bucket, $__interval),
       'level ' || max_alarm_level AS metric,
       count(*) AS vehicle_minutes
FROM vehicle_stats_1m
WHERE $__timeFilter(bucket) AND max_alarm_level > 0
GROUP BY 1, 2
ORDER BY 1
"""
    return (
        timeseries.Panel()
        .title("Alarms by level")
        .description(
            "Vehicle-minutes by the highest GB/T 32960 alarm level of the minute "
            "(vehicle_stats_1m)."
        )
        .datasource(POSTGRES)
        .with_target(SqlQueryBuilder(sql, fmt="time_series"))
        .legend(legend())
        .stacking(StackingConfig().mode(StackingMode.NORMAL))
        .span(12)
        .height(8)
    )


def _alerts_raised() -> timeseries.Panel:
    sql = """
SELECT $__timeGroupAlias(opened_at, $__interval),
       severity AS metric,
       count(*) AS alerts
FROM alerts
WHERE $__timeFilter(opened_at)
GROUP BY 1, 2
ORDER BY 1
"""
    return (
        timeseries.Panel()
        .title("Alerts raised by severity")
        .description("Alert episodes opened by the rule engine (alerts table, by opened_at).")
        .datasource(POSTGRES)
        .with_target(SqlQueryBuilder(sql, fmt="time_series"))
        .legend(legend())
        .span(12)
        .height(8)
    )


def _open_critical_table() -> table.Panel:
    sql = f"""
SELECT id, entity_kind, entity_id, rule_id, title, opened_at, last_seen_at, peak_value,
       acked_at, acked_by
FROM alerts
WHERE cleared_at IS NULL AND severity = '{PAGED_SEVERITY}'
ORDER BY opened_at DESC
LIMIT 500
"""
    return (
        table.Panel()
        .title("Open critical alerts")
        .description(
            "entity_kind and rule_id say what it is (docs/operations.md, NevIngestCriticalAlert); "
            "acknowledge with `nev-ingest alerts ack ID` (docs/alerts.md)."
        )
        .datasource(POSTGRES)
        .with_target(SqlQueryBuilder(sql))
        .show_header(True)
        .span(24)
        .height(8)
    )


def _distribution(
    title: str, description: str, expr: str, width: int, label: str
) -> barchart.Panel:
    # Buckets of the latest value of each vehicle online now (latest_state).
    sql = f"""
SELECT (floor({expr} / {width}) * {width})::int AS {label}, count(*) AS vehicles
FROM latest_state
WHERE entity_kind = 'vehicle' AND ts > now() - {ONLINE} AND {expr} IS NOT NULL
GROUP BY 1
ORDER BY 1
"""
    return (
        barchart.Panel()
        .title(title)
        .description(description)
        .datasource(POSTGRES)
        .with_target(SqlQueryBuilder(sql))
        .x_field(label)
        .span(12)
        .height(8)
    )


def _positions() -> geomap.Panel:
    sql = f"""
SELECT entity_id AS vin, latitude, longitude, soc_pct, max_alarm_level
FROM latest_state
WHERE entity_kind = 'vehicle' AND position_valid AND ts > now() - {ONLINE}
LIMIT 20000
"""
    layer = (
        MapLayerOptions()
        .type("markers")
        .name("Vehicles")
        .location(
            FrameGeometrySource()
            .mode(FrameGeometrySourceMode.COORDS)
            .latitude("latitude")
            .longitude("longitude")
        )
        .tooltip(True)
    )
    return (
        geomap.Panel()
        .title("Latest positions")
        .description("Vehicles online now at their last valid GPS position (latest_state).")
        .datasource(POSTGRES)
        .with_target(SqlQueryBuilder(sql))
        .view(MapViewConfig().id("coords").lat(35).lon(105).zoom(4))
        .layers([layer])
        .span(24)
        .height(14)
    )


def build() -> dashboard.Dashboard:
    return (
        dashboard.Dashboard("NEV ingest: Regulator")
        .uid(UID)
        .tags(["nev-ingest"])
        .description("Fleet, alarms and battery safety from the database (issue 15).")
        .refresh("1m")
        .time("now-24h", "now")
        .timezone("browser")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .readonly()
        .with_row(dashboard.Row("Online now"))
        .with_panel(_online("vehicle", "Vehicles online"))
        .with_panel(_online("charger", "Chargers online"))
        .with_panel(_online("battery", "Packs online"))
        .with_panel(_open_critical_count())
        .with_row(dashboard.Row("Alarms and alerts"))
        .with_panel(_alarms_by_level())
        .with_panel(_alerts_raised())
        .with_panel(_open_critical_table())
        .with_row(dashboard.Row("Batteries"))
        .with_panel(
            _distribution(
                "State of charge",
                "Vehicles online now by SOC, 10 % buckets.",
                "soc_pct",
                10,
                "soc_pct",
            )
        )
        .with_panel(
            _distribution(
                "Highest probe temperature",
                "Vehicles online now by their pack's highest probe temperature, 5 °C buckets.",
                "max_temp_c",
                5,
                "max_temp_c",
            )
        )
        .with_row(dashboard.Row("Map"))
        .with_panel(_positions())
    )
