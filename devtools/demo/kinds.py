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

__all__ = [
    "KIND_TABLES",
    "alert_lines",
    "row_lines",
    "run_patterns",
    "session_lines",
    "swap_lines",
]

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


# The key column of each kind's tables: a run's rows are those of its own entities.
_KEY: Final = {"vehicle": "vin", "charger": "operator_id", "battery": "pack_code"}


def run_patterns(o: FleetOptions) -> dict[str, list[str]]:
    """LIKE patterns of this run's entity ids per kind: its VINs, its operators (connectors
    are ``operator:connector``), its standalone packs and the vehicles' packs its swaps put in
    stations (the only vehicle-born codes that report on their own)."""
    tag = plans.tag_of(o.vin_prefix)
    old = [plans.swap_plan(o, m).old_code for m in range(plans.swap_count(o))]
    return {
        "vehicle": [f"{o.vin_prefix}%"],
        "charger": [f"MA{tag}%"],
        "battery": [f"SIMP_96{tag}S%", *old],
    }


def _count(conn: Any, schema: str, table: str, kind: str, o: FleetOptions) -> str:
    if not _exists(conn, schema, table):
        return f"{table} (missing)"
    # The span's start bounds the partitions read; the key patterns pick this run's entities.
    row = conn.execute(
        f"SELECT count(*) FROM {schema}.{table} WHERE ts >= %s AND {_KEY[kind]} LIKE ANY(%s)",
        (china_time(plans.start_ms(o)), run_patterns(o)[kind]),
    ).fetchone()
    return f"{table} {int(row[0]) if row else 0:,}"


def row_lines(conn: Any, schema: str, o: FleetOptions) -> list[str]:
    """Rows of this run's entities in each kind's tables, and their latest_state rows (the dev
    database keeps earlier runs: each run has entities of its own, ``plans.tag_of``)."""
    out = []
    patterns = run_patterns(o)
    for kind, tables in KIND_TABLES.items():
        out.append(f"{kind:<8} " + ", ".join(_count(conn, schema, t, kind, o) for t in tables))
    latest = [
        (kind, conn.execute(
            f"SELECT count(*) FROM {schema}.latest_state "
            "WHERE entity_kind = %s AND entity_id LIKE ANY(%s)",
            (kind, patterns[kind]),
        ).fetchone())
        for kind in KIND_TABLES
    ]  # fmt: skip
    out.append("latest   " + ", ".join(f"{k} {int(r[0]) if r else 0:,}" for k, r in latest))
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
    """Connector 0's session (pile 0 reports in the charger profile, ``plans.profile_pile``):
    the ``charging_sessions`` view (else its events), its peak power, and its energy against
    the integral of the power samples stored in charger_telemetry."""
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
        lines.append(_integral_line(conn, schema, op, cid, plan))
    return lines


def _integral_line(conn: Any, schema: str, op: str, cid: str, plan: plans.ChargePlan) -> str:
    """Trapezoid rule over the stored power samples (``power_kw``, the charger profile's), from
    the session's first sample to its last: each pair of neighbours adds their mean power times
    the time between them. Samples without power (a T/CEC push has none) are not invented."""
    row = conn.execute(
        f"""SELECT max(energy_kwh), count(*), count(power_kw), max(power_kw),
                   sum((power_kw + prev_kw) / 2 * extract(epoch FROM ts - prev_ts) / 3600)
            FROM (SELECT ts, energy_kwh, power_kw,
                         lag(power_kw) OVER w AS prev_kw, lag(ts) OVER w AS prev_ts
                  FROM {schema}.charger_telemetry
                  WHERE operator_id = %s AND connector_id = %s AND ts BETWEEN %s AND %s
                  WINDOW w AS (ORDER BY ts)) s""",
        (op, cid, china_time(plan.start_ms), china_time(plan.end_ms)),
    ).fetchone()
    if not row or not row[1]:
        return "no charger_telemetry rows of this session stored"
    energy, samples, with_power, peak, integral = row
    if with_power < samples or integral is None:
        return (
            f"energy reported {energy:.3f} kWh; {samples - with_power} of {samples} samples "
            "carry no power (T/CEC pushes), so no integral of stored power"
        )
    apart = abs(energy - integral) / energy * 100 if energy else 0.0
    return (
        f"energy reported {energy:.3f} kWh; trapezoid integral of the {samples} stored power "
        f"samples {integral:.3f} kWh ({apart:.2f} % apart); peak power {peak:.1f} kW"
    )


def alert_lines(conn: Any, schema: str, o: FleetOptions, limit: int = 12) -> list[str]:
    """Open alerts of this run's entities (its VIN prefix, operators and pack codes)."""
    patterns = run_patterns(o)
    kinds = list(patterns)
    where = "cleared_at IS NULL AND (" + " OR ".join(
        ["(entity_kind = %s AND entity_id LIKE ANY(%s))"] * len(kinds)
    ) + ")"  # fmt: skip
    params = [x for k in kinds for x in (k, patterns[k])]
    counts = dict(
        conn.execute(
            f"SELECT entity_kind, count(*) FROM {schema}.alerts WHERE {where} GROUP BY 1",
            params,
        ).fetchall()
    )
    # Every kind's alerts, the rarer kinds first (``limit`` shared; a vehicle's are many).
    rows = conn.execute(
        f"""SELECT entity_kind, severity, rule_id, entity_id, opened_at FROM (
                SELECT *, row_number() OVER (PARTITION BY entity_kind ORDER BY opened_at) AS n
                FROM {schema}.alerts WHERE {where}) a
            ORDER BY n, entity_kind LIMIT {int(limit)}""",
        params,
    ).fetchall()
    rows.sort(key=lambda r: (kinds.index(r[0]), r[4]))
    out = ["open: " + ", ".join(f"{k} {counts.get(k, 0):,}" for k in kinds)]
    for kind, severity, rule, entity, opened in rows:
        local = opened.astimezone(CHINA_TZ).isoformat()  # the frames' own zone
        out.append(f"{kind:<8} {severity:<8} {rule:<30} {entity}  opened {local}")
    return out
