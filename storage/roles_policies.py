"""Row-level access of the scoped roles (storage.roles): the policies on the tables and the
``<table>_scoped`` views, both from one predicate per family.

The predicates read ``account_scopes`` for ``current_user`` inside ``ARRAY(SELECT ...)``: an
uncorrelated sub-select, so PostgreSQL evaluates it once per query (an InitPlan), not per row.
A policy's sub-select runs with the caller's rights, hence the caller's own policy on
``account_scopes`` (``login = current_user``); a ``_scoped`` view's runs with its owner's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from storage.roles_names import RoleNames, RolesReport

__all__ = [
    "CHARGER_TABLES",
    "CHARGING_VIEWS",
    "OEM_VIEWS",
    "VEHICLE_TABLES",
    "Scope",
    "apply_policies",
    "scoped_views",
]

# Rows owned by a vehicle (VIN): an OEM's. The per-vehicle aggregates are tables on plain
# PostgreSQL, continuous aggregates (views, no row-level security) on TimescaleDB.
VEHICLE_TABLES: Final = (
    "vehicle_telemetry",
    "drive_motor_telemetry",
    "battery_pack_telemetry",
    "alarm_events",
    "vehicle_sessions",
    "vehicle_stats_1m",
    "vehicle_stats_1h",
)
# Rows owned by a connector (operator_id): a charging operator's.
CHARGER_TABLES: Final = (
    "charger_connectors",
    "connector_status_events",
    "charger_telemetry",
    "charging_session_events",
    "charger_faults",
)
# Views (security_invoker) a scoped role may read where every table under them is guarded
# (plain PostgreSQL). Each has a ``<view>_scoped`` copy with the owner's rights on both flavours
# (migration 0087: a copy of the query, not a view over the view, which would check the tables
# as the querying login), the scoped role's way to it on TimescaleDB.
OEM_VIEWS: Final = ("vehicle_pack_history",)
CHARGING_VIEWS: Final = ("charging_sessions",)


@dataclass(frozen=True, slots=True)
class Scope:
    """The predicates of one schema and set of role names."""

    schema: str
    names: RoleNames

    def vins(self, column: str) -> str:
        """``column`` starts with one of the login's VIN prefixes."""
        return (
            f"{column} LIKE ANY (ARRAY(SELECT p || '%' FROM {self.schema}.account_scopes a, "
            "unnest(a.vin_prefixes) p WHERE a.login = current_user AND a.family = 'oem'))"
        )

    def operators(self, column: str) -> str:
        """``column`` is one of the login's operator ids."""
        return (
            f"{column} = ANY (ARRAY(SELECT o FROM {self.schema}.account_scopes a, "
            "unnest(a.operator_ids) o WHERE a.login = current_user AND a.family = 'charging'))"
        )

    def policies(self, table: str) -> dict[str, tuple[str, str]]:
        """Policy name -> (role, USING expression) of ``table``."""
        n = self.names
        regulator = {f"read_{n.regulator}": (n.regulator, "true")}
        if table in VEHICLE_TABLES:
            return {**regulator, f"read_{n.oem}": (n.oem, self.vins("vin"))}
        if table in CHARGER_TABLES:
            return {**regulator, f"read_{n.charging}": (n.charging, self.operators("operator_id"))}
        if table == "latest_state":
            return {
                **regulator,
                f"read_{n.oem}": (n.oem, f"entity_kind = 'vehicle' AND {self.vins('entity_id')}"),
                f"read_{n.charging}": (
                    n.charging,
                    f"entity_kind = 'charger' AND {self.operators('operator_id')}",
                ),
            }
        if table == "account_scopes":
            return {
                f"read_own_{n.oem}": (n.oem, "login = current_user"),
                f"read_own_{n.charging}": (n.charging, "login = current_user"),
            }
        return {}


_GUARDED: Final = (*VEHICLE_TABLES, *CHARGER_TABLES, "latest_state", "account_scopes")


async def apply_policies(
    conn: Any,
    scope: Scope,
    relations: dict[str, Any],
    unguardable: set[str],
    report: RolesReport,
) -> None:
    """Enable row-level security and create the missing policies on every guarded table that
    can take them (not TimescaleDB's compressed hypertables nor continuous aggregates:
    ``unguardable``; scoped roles read those through ``_scoped`` views only)."""
    s = scope.schema
    existing = {
        (r["tablename"], r["policyname"])
        for r in await conn.fetch(
            "SELECT tablename, policyname FROM pg_policies WHERE schemaname = $1", s
        )
    }
    for table in _GUARDED:
        r = relations.get(table)
        if r is None or table in unguardable or r["relkind"] not in ("r", "p"):
            continue
        if not r["relrowsecurity"]:
            await conn.execute(f"ALTER TABLE {s}.{table} ENABLE ROW LEVEL SECURITY")
            report.changes.append(f"row-level security: {table}")
        for name, (role, using) in scope.policies(table).items():
            if (table, name) in existing:
                continue
            await conn.execute(
                f"CREATE POLICY {name} ON {s}.{table} FOR SELECT TO {role} USING ({using})"
            )
            report.changes.append(f"policy {table}.{name}")


async def scoped_views(
    conn: Any, scope: Scope, relations: dict[str, Any], report: RolesReport
) -> list[str]:
    """Create or refresh ``<table>_scoped`` of every owned table that exists; their names.

    Security barrier views with their owner's rights: the predicate runs before any function
    of the caller's query, and the view reads the table whatever its row-level security. Re-made
    every run (CREATE OR REPLACE) so a column added to the table by a later migration appears.
    """
    s = scope.schema
    made: list[str] = []
    for table in (*VEHICLE_TABLES, *CHARGER_TABLES):
        if table not in relations or relations[table]["relkind"] == "S":
            continue
        where = scope.vins("vin") if table in VEHICLE_TABLES else scope.operators("operator_id")
        view = f"{table}_scoped"
        current = await conn.fetchval("SELECT pg_get_viewdef(to_regclass($1))", f"{s}.{view}")
        sql = f"SELECT * FROM {s}.{table} WHERE {where}"
        if current is None:
            report.changes.append(f"view created: {view}")
        await conn.execute(
            f"CREATE OR REPLACE VIEW {s}.{view} WITH (security_barrier = true) AS {sql}"
        )
        made.append(view)
    return made
