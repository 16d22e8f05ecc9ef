"""The demo's summary of the three kinds: rows per kind, one pack swap, one charging session
and the alerts of the run, read from the database.

Written against the schema of migrations 0006-0008 (tables) and the views of 0009
(``pack_swaps``, ``charging_sessions``). Where a view is missing (a database migrated by a
build without it) the same facts are shown from the tables the view is built on, and the
summary says so; a table that is missing is reported as such, never as 0 rows.
"""

from __future__ import annotations

from typing import Any, Final

from contract.clock import CHINA_TZ
from devtools.sim import plans
from devtools.sim.envelope import china_time
from devtools.sim.fleet import FleetOptions

__all__ = ["KIND_TABLES", "alert_lines", "row_lines", "session_lines", "swap_lines"]

KIND_TABLES: Final = {
    "vehicle": (
        "vehicle_telemetry",
        "battery_pack_telemetry",
        "drive_motor_telemetry",
        "vehicle_sessions",
        "alarm_events",
    ),
    "charger": (
        "charger_connectors",
        "connector_status_events",
        "charger_telemetry",
        "charging_session_events",
        "charger_faults",
    ),
    "battery": ("pack_telemetry", "pack_sessions", "pack_alarm_events"),
}


def _exists(conn: Any, schema: str, name: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{schema}.{name}",)).fetchone()
    return bool(row and row[0])


def _count(conn: Any, schema: str, table: str) -> str:
    if not _exists(conn, schema, table):
        return f"{table} (missing)"
    row = conn.execute(f"SELECT count(*) FROM {schema}.{table}").fetchone()
    return f"{table} {int(row[0]) if row else 0:,}"


def row_lines(conn: Any, schema: str) -> list[str]:
    """Rows in each kind's tables, and latest_state per kind."""
    out = []
    for kind, tables in KIND_TABLES.items():
        out.append(f"{kind:<8} " + ", ".join(_count(conn, schema, t) for t in tables))
    latest = conn.execute(
        f"SELECT entity_kind, count(*) FROM {schema}.latest_state GROUP BY 1 ORDER BY 1"
    ).fetchall()
    out.append("latest   " + ", ".join(f"{k} {n:,}" for k, n in latest))
    return out


def _table(cur: Any, limit: int = 6) -> list[str]:
    rows = cur.fetchall()
    names = [d.name for d in cur.description]
    out = ["  ".join(names)]
    out += ["  ".join(str(v) for v in row) for row in rows[:limit]]
    return out if rows else ["(no rows)"]


def swap_lines(conn: Any, schema: str, o: FleetOptions) -> list[str]:
    """Swap 0 of the run: from the ``pack_swaps`` view, else from logins and pack reports."""
    if not plans.swap_count(o):
        return ["no swap in this run (no packs, or a span under 8 reporting periods)"]
    s = plans.swap_plan(o, 0)
    head = (
        f"vehicle {s.vin} left pack {s.old_code} at station {s.station} and took pack {s.new_code}"
    )
    if _exists(conn, schema, "pack_swaps"):
        cur = conn.execute(
            f"SELECT * FROM {schema}.pack_swaps WHERE pack_code IN (%s, %s)",
            (s.old_code, s.new_code),
        )
        return [head, "pack_swaps:", *_table(cur)]
    lines = [head, "view pack_swaps missing (migration 0009): the swap from its tables"]
    cur = conn.execute(
        f"SELECT ts, event, pack_codes FROM {schema}.vehicle_sessions WHERE vin = %s ORDER BY ts",
        (s.vin,),
    )
    lines += ["vehicle_sessions:", *_table(cur)]
    if _exists(conn, schema, "pack_telemetry"):
        cur = conn.execute(
            f"SELECT pack_code, site_id, lifecycle_stage, min(ts) AS first, max(ts) AS last, "
            f"count(*) AS frames FROM {schema}.pack_telemetry WHERE pack_code IN (%s, %s) "
            "GROUP BY 1, 2, 3 ORDER BY first",
            (s.old_code, s.new_code),
        )
        lines += ["pack_telemetry:", *_table(cur)]
    return lines


def session_lines(conn: Any, schema: str, o: FleetOptions) -> list[str]:
    """Connector 0's session: the ``charging_sessions`` view (else its events), and its
    energy against the integral of the reported power."""
    plan = plans.charge_plan(o, 0)
    if plan is None:
        return ["no charging session in this run (no chargers, or a span under 8 periods)"]
    tag = plans.tag_of(o.vin_prefix)
    op = plans.operator_of(0, o.chargers, tag)
    cid = plans.connector_id_of(0, 0, o.chargers, tag)
    lines = [f"{plan.vin} at connector {op}:{cid}, order {plan.seq}"]
    if _exists(conn, schema, "charging_sessions"):
        cur = conn.execute(
            f"SELECT * FROM {schema}.charging_sessions WHERE start_charge_seq = %s", (plan.seq,)
        )
        lines += ["charging_sessions:", *_table(cur)]
    else:
        lines.append("view charging_sessions missing (migration 0009): its events")
        if _exists(conn, schema, "charging_session_events"):
            cur = conn.execute(
                f"SELECT event, count(*) AS n, min(start_time) AS start, max(ts) AS last, "
                f"max(state) AS state, max(energy_kwh) AS energy_kwh, max(vin) AS vin "
                f"FROM {schema}.charging_session_events WHERE start_charge_seq = %s GROUP BY 1",
                (plan.seq,),
            )
            lines += _table(cur)
    if _exists(conn, schema, "charger_telemetry"):
        # trapezoid over the samples; T/CEC pushes carry voltage and current, not power
        row = conn.execute(
            f"""SELECT max(energy_kwh), sum((p + lp) / 2 * extract(epoch FROM ts - lts) / 3600)
            FROM (SELECT ts, energy_kwh, coalesce(power_kw, voltage_v * current_a / 1000) AS p,
                         lag(coalesce(power_kw, voltage_v * current_a / 1000)) OVER w AS lp,
                         lag(ts) OVER w AS lts
                  FROM {schema}.charger_telemetry
                  WHERE operator_id = %s AND connector_id = %s AND ts BETWEEN %s AND %s
                  WINDOW w AS (ORDER BY ts)) s""",
            (op, cid, china_time(plan.start_ms), china_time(plan.end_ms)),
        ).fetchone()
        if row and row[0] is not None and row[1]:
            apart = abs(row[0] - row[1]) / row[0] * 100
            lines.append(
                f"energy reported {row[0]:.3f} kWh, integral of the reported power "
                f"{row[1]:.3f} kWh ({apart:.2f} % apart)"
            )
    return lines


def alert_lines(conn: Any, schema: str, o: FleetOptions, limit: int = 12) -> list[str]:
    """Open alerts of this run's entities (its VIN prefix, operators and pack codes)."""
    tag = plans.tag_of(o.vin_prefix)
    patterns = (f"{o.vin_prefix}%", f"MA{tag}%", f"SIMP_96{tag}%", "SIMPE96%")
    where = "cleared_at IS NULL AND (" + " OR ".join(["entity_id LIKE %s"] * 4) + ")"
    counts = conn.execute(
        f"SELECT entity_kind, count(*) FROM {schema}.alerts WHERE {where} GROUP BY 1 ORDER BY 1",
        patterns,
    ).fetchall()
    rows = conn.execute(
        f"SELECT entity_kind, severity, rule_id, entity_id, opened_at FROM {schema}.alerts "
        f"WHERE {where} ORDER BY entity_kind, opened_at LIMIT {int(limit)}",
        patterns,
    ).fetchall()
    out = ["open: " + (", ".join(f"{k} {n:,}" for k, n in counts) or "none")]
    for kind, severity, rule, entity, opened in rows:
        local = opened.astimezone(CHINA_TZ).isoformat()  # the frames' own zone
        out.append(f"{kind:<8} {severity:<8} {rule:<30} {entity}  opened {local}")
    return out
