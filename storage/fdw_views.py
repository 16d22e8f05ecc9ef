"""Which of a shard's views the query database may union, and which it must re-make.

The union of the shards' copies of a view is the view over the union of their tables only when
every row of the view comes from one entity's own rows, and an entity's rows are on one shard
(the Kafka key, docs/storage.md "Shards"). A view that aggregates or windows across entities,
or joins rows that can sit on two shards, gives wrong answers as a union: a bucket counted once
per shard, a pack's swap between vehicles of two shards missing. Those are re-made in the query
database from the shard's own definition (``pg_get_viewdef``), reading the union views there.

A view in neither list is left out of the query database (``QueryDatabaseReport.left_out``,
and migrate says so) rather than unioned blindly: a new view must be classified here
(tests/integration/test_storage_shards.py checks that every view of a migrated shard is).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from storage.params import check_identifier
from storage.policies import AGGREGATE_VIEWS, CONTINUOUS_AGGREGATES, FROZEN_AGGREGATES

__all__ = [
    "NOT_IN_QUERY_DATABASE",
    "RECREATED_VIEWS",
    "UNION_SAFE_VIEWS",
    "ShardViews",
    "shard_views",
    "union_safe",
]

# name -> why the union of the shards' copies is right.
UNION_SAFE_VIEWS: Final[dict[str, str]] = {
    "pack_places": "a row per report; its lag() runs over one VIN's own logins",
    "vehicle_pack_history": "a row per pack row, joined with the same VIN's own logins",
    # TimescaleDB flavour: continuous aggregates (plain: tables), and since 0088 the views
    # over two of them (the frozen 0003 one before the cut-over, the new one after)
    **dict.fromkeys(
        (*AGGREGATE_VIEWS, *CONTINUOUS_AGGREGATES, *FROZEN_AGGREGATES),
        "one VIN's frames per row (GROUP BY vin, bucket)",
    ),
}
# storage.roles' "<table>_scoped" views: a row filter over one table, a row per row.
SCOPED_SUFFIX: Final = "_scoped"

# name -> why a union would be wrong. Re-made in this order: each may read the ones before it.
RECREATED_VIEWS: Final[dict[str, str]] = {
    "pack_bindings": "windows over a pack's reports, which come from vehicles of every shard",
    "pack_swaps": "windows over pack_bindings",
    "charging_sessions": (
        "joins a connector's orders, statuses and telemetry, which its two Kafka keys can put "
        "on two shards"
    ),
    "public_vehicle_positions": "counts vehicles per cell",
    "public_fleet_stats_1h": "sums the fleet per hour",
    "public_connector_status": "counts connectors per operator and status",
}

# name -> why the query database has no such view (not imported).
NOT_IN_QUERY_DATABASE: Final[dict[str, str]] = {
    "charging_sessions_scoped": (
        "a union is wrong as for charging_sessions, and re-made it would read account_scopes, "
        "which the query database does not import; a charging login reads charging_sessions "
        "there, over the unions its own user mapping scopes on each shard"
    ),
}

# The views of the schema on a shard (plain views, continuous aggregates, materialized views).
_VIEWS: Final = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relkind IN ('v', 'm')
"""


@dataclass(frozen=True, slots=True)
class ShardViews:
    """Shard 0's views: every name, and the definitions of those to re-make (schema-qualified,
    so they read ``<schema>.<table>``, the union views, in the query database)."""

    names: frozenset[str] = frozenset()
    definitions: dict[str, str] = field(default_factory=dict)


def union_safe(name: str) -> bool:
    if name in NOT_IN_QUERY_DATABASE:
        return False
    return name in UNION_SAFE_VIEWS or name.endswith(SCOPED_SUFFIX)


async def shard_views(conn: Any, schema: str) -> ShardViews:
    """The views of ``schema`` on the shard behind ``conn`` (asyncpg, outside a transaction)."""
    schema = check_identifier(schema)
    async with conn.transaction():
        # pg_get_viewdef qualifies what the search_path does not show: every name then
        await conn.execute("SET LOCAL search_path = pg_catalog")
        names = frozenset(str(r[0]) for r in await conn.fetch(_VIEWS, schema))
        definitions: dict[str, str] = {}
        for name in RECREATED_VIEWS:
            if name in names:
                definitions[name] = str(
                    await conn.fetchval(
                        "SELECT pg_get_viewdef(to_regclass($1), true)", f"{schema}.{name}"
                    )
                )
    return ShardViews(names, definitions)
