"""Every query of the Regulator dashboard (deploy/grafana/dashboards/regulator.json) runs, with
Grafana's PostgreSQL macros expanded to literal SQL, against a migrated database: plain
PostgreSQL (summary tables, with rows so that each panel shows what it should), queried as the
read-only role deploy/compose/grafana-role.sh makes for Grafana, and the real
TimescaleDB engine (continuous aggregates of the same names). Broken SQL fails here, not on a
regulator's screen; no query names a raw time-series table."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from alerts import RuleSet
from devtools.dashboards import OUT_DIR, panel_targets
from storage import PoolParams, SchemaMode, StorageParams, migrate
from storage.connect import connect
from storage.params import TIMESERIES_TABLES
from tests.integration import pipeline_support as ps
from tests.integration.grafana_role_support import grafana_role
from tests.integration.pipeline_support import migrate_database

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
# Every critical default rule, of every entity kind: the Regulator dashboard must show each open
# one (a list of vehicle rule ids there once hid the packs' thermal runaway).
CRITICAL = [
    (r.entity, r.id) for r in RuleSet.default().rules if r.alert and r.severity == "critical"
]
FROM, TO = NOW - timedelta(hours=24), NOW + timedelta(minutes=1)
INTERVAL_S = 60  # what Grafana picks for $__interval on a 24 h range at this width


def expand(sql: str) -> str:
    """Grafana's PostgreSQL macros as Grafana expands them, for the test's time range."""
    sql = sql.replace("$__interval", f"'{INTERVAL_S}s'")
    sql = re.sub(
        r"\$__timeGroupAlias\(([^,]+),\s*'(\d+)s'\)",
        lambda m: f'floor(extract(epoch from {m.group(1)})/{m.group(2)})*{m.group(2)} AS "time"',
        sql,
    )
    sql = re.sub(
        r"\$__timeFilter\(([^)]+)\)",
        lambda m: f"{m.group(1)} BETWEEN '{FROM.isoformat()}' AND '{TO.isoformat()}'",
        sql,
    )
    assert "$" not in sql, f"a Grafana macro the test does not expand: {sql}"
    return sql


def queries() -> list[tuple[str, str]]:
    doc = json.loads((OUT_DIR / "regulator.json").read_text())
    found = [(title, expand(t["rawSql"])) for title, t in panel_targets(doc)]
    assert len(found) >= 10
    return found


async def _seed_plain(conn: Any) -> None:
    """One vehicle online (SOC 55 %, 41 °C, a position), its minute with a level-3 alarm, an
    open alert of each critical default rule (vehicle, charger, pack), an open major one and a
    cleared critical one."""
    await conn.execute(
        "INSERT INTO latest_state (entity_kind, entity_id, ts, soc_pct, max_temp_c,"
        " position_valid, longitude, latitude)"
        " VALUES ('vehicle', 'LNEVSIM0000000001', $1, 55, 41, true, 121.47, 31.23)",
        NOW - timedelta(seconds=30),
    )
    await conn.execute(
        "INSERT INTO vehicle_stats_1m (vin, bucket, frames, first_ts, last_ts, max_alarm_level,"
        " alarm_frames, severe_alarm_frames) VALUES ('LNEVSIM0000000001', $1, 6, $1, $1, 3, 2, 2)",
        NOW - timedelta(hours=1),
    )
    opened = NOW - timedelta(minutes=10)
    for kind, rule in [*CRITICAL, ("battery", "pack_alarm_level_3")]:
        severity = "major" if rule == "pack_alarm_level_3" else "critical"
        await conn.execute(
            "INSERT INTO alerts (entity_kind, entity_id, rule_id, rule_version, severity, title,"
            " opened_at, last_seen_at) VALUES ($1, $2, $3, 'v1', $4, 'An alert', $5, $5)",
            kind,
            "LNEVSIM0000000001" if kind == "vehicle" else f"{kind.upper()}-0001",
            rule,
            severity,
            opened,
        )
    # A critical alert already cleared is not shown.
    await conn.execute(
        "INSERT INTO alerts (entity_kind, entity_id, rule_id, rule_version, severity, title,"
        " opened_at, last_seen_at, cleared_at) VALUES ('vehicle', 'LNEVSIM0000000002',"
        " 'thermal_event', 'v1', 'critical', 'An alert', $1, $1, $1)",
        opened,
    )


def test_no_query_scans_a_raw_time_series_table() -> None:
    for title, sql in queries():
        for table in TIMESERIES_TABLES:
            assert not re.search(rf"\b{table}\b", sql), f"{title}: reads {table}"


async def test_every_regulator_query_runs_on_plain_postgresql(
    fresh_database: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    # As in compose: deploy/compose/grafana-role.sh makes the role at the database's first
    # start, the migrator creates the schema after it, and the queries run as that role with
    # nothing but what the role itself sets (its search_path makes the unqualified names work).
    with grafana_role(fresh_database, unique_name("grafana"), tmp_path) as as_grafana:
        await migrate_database(fresh_database)
        owner = await asyncpg.connect(fresh_database)
        try:
            await owner.execute(f"SET search_path = {ps.SCHEMA}")  # the seed's names
            await _seed_plain(owner)
        finally:
            await owner.close()
        conn = await asyncpg.connect(as_grafana)
        try:
            results: dict[str, list[dict[str, Any]]] = {}
            for title, sql in queries():
                try:
                    rows = await conn.fetch(sql)
                except asyncpg.PostgresError as exc:
                    raise AssertionError(f"{title}: {exc}\n{sql}") from exc
                results.setdefault(title, []).extend(dict(r) for r in rows)
        finally:
            await conn.close()
    assert results["Vehicles online"] == [{"online": 1}]
    assert results["Chargers online"] == [{"online": 0}]
    assert {kind for kind, _ in CRITICAL} == {"vehicle", "charger", "battery"}
    assert results["Open critical alerts"][0] == {"open_alerts": len(CRITICAL)}
    shown = {(row["entity_kind"], row["rule_id"]) for row in results["Open critical alerts"][1:]}
    assert shown == set(CRITICAL)
    [alarm] = results["Alarms by level"]
    assert alarm["metric"] == "level 3" and alarm["vehicle_minutes"] == 1
    assert {r["metric"] for r in results["Alerts raised by severity"]} == {"critical", "major"}
    assert results["State of charge"] == [{"soc_pct": 50, "vehicles": 1}]
    assert results["Highest probe temperature"] == [{"max_temp_c": 40, "vehicles": 1}]
    [pos] = results["Latest positions"]
    assert (pos["latitude"], pos["longitude"]) == (31.23, 121.47)


async def test_every_regulator_query_runs_on_timescaledb(
    timescale_dsn: str, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("dash")
    conn = await connect(PoolParams(dsn=timescale_dsn, schema=name))
    try:
        report = await migrate(conn, StorageParams(schema=name))
        assert report.mode is SchemaMode.TIMESCALE  # vehicle_stats_1m: a continuous aggregate
        for title, sql in queries():
            try:
                await conn.fetch(sql)
            except asyncpg.PostgresError as exc:
                raise AssertionError(f"{title}: {exc}\n{sql}") from exc
        await conn.execute(f"DROP SCHEMA {name} CASCADE")
    finally:
        await conn.close()
