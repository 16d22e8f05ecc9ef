"""``latest_state``: one row per entity, brought up to date with every batch.

Only the newest frame of each entity counts. The update only moves forward (``WHERE stored.ts
< new.ts``): a reissued old frame never rolls the state back. Value columns keep their last
non-null value, so a frame without a position block does not erase the position.

Two forms, measured (docs/performance.md):

* with COPY (``merge_stage``): the vehicle rows are already in a temporary staging table (the
  COPY loader puts them there and inserts them into vehicle_telemetry from it), so nothing is
  sent twice: one ``UPDATE ... FROM`` brings the existing entities up to date from the newest
  staged row of each VIN (no speculative insertion per row as with ``INSERT ... ON CONFLICT
  DO UPDATE``), and only when it reached fewer rows than there are VINs (new entities, or
  reissued frames older than the stored state) an ``INSERT ... WHERE NOT EXISTS ... ON
  CONFLICT DO NOTHING`` adds the new ones. A new entity inserted concurrently by another
  writer is skipped by the ON CONFLICT; its next frame brings it up to date.
* without COPY (``upsert_rows``, PGlite): ``INSERT ... SELECT FROM unnest(...) ON CONFLICT DO
  UPDATE`` of the newest row per VIN, sorted by VIN so two writers lock in the same order.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from contract.rows import VehicleRow

__all__ = ["LATEST_COLUMNS", "merge_stage", "newest_per_vehicle", "upsert_rows"]

# (latest_state column, VehicleRow field, SQL type); entity_id is the VIN.
LATEST_COLUMNS: Final = (
    ("entity_id", "vin", "text"),
    ("ts", "ts", "timestamptz"),
    ("received_at", "received_at", "timestamptz"),
    ("edition", "edition", "int2"),
    ("vehicle_state", "vehicle_state", "int2"),
    ("charging_state", "charging_state", "int2"),
    ("run_mode", "run_mode", "int2"),
    ("speed_kmh", "speed_kmh", "float4"),
    ("odometer_km", "odometer_km", "float8"),
    ("total_voltage_v", "total_voltage_v", "float4"),
    ("total_current_a", "total_current_a", "float4"),
    ("soc_pct", "soc_pct", "int2"),
    ("insulation_kohm", "insulation_kohm", "int4"),
    ("position_valid", "position_valid", "bool"),
    ("longitude", "longitude", "float8"),
    ("latitude", "latitude", "float8"),
    ("max_cell_voltage_v", "max_cell_voltage_v", "float4"),
    ("min_cell_voltage_v", "min_cell_voltage_v", "float4"),
    ("max_temp_c", "max_temp_c", "int2"),
    ("min_temp_c", "min_temp_c", "int2"),
    ("max_alarm_level", "max_alarm_level", "int2"),
    ("general_flags", "general_flags", "int8"),
)
_FIELD_INDEX: Final = tuple(VehicleRow._fields.index(f) for _, f, _ in LATEST_COLUMNS)
_ALWAYS: Final = frozenset({"entity_id", "ts", "received_at", "edition"})
_NAMES: Final = tuple(c for c, _, _ in LATEST_COLUMNS)


def _assignments(source: str) -> str:
    return ",\n    ".join(
        f"{c} = {source}.{c}" if c in _ALWAYS else f"{c} = COALESCE({source}.{c}, s.{c})"
        for c in _NAMES
        if c != "entity_id"
    )


def _newest(stage: str, unique: bool) -> str:
    picked = ", ".join("vin" if c == "entity_id" else c for c in _NAMES)
    if unique:
        # One row per VIN already (a pending set, storage/latest_merge.py, or the hot path's
        # native stage, storage.loaders.stages_unique): no sort (~10-20 %
        # of a 50k-200k entity merge), and the planner sees the stage's size - behind
        # DISTINCT ON it guesses 200 rows and never picks a merge join (docs/storage.md).
        return f"(SELECT {picked} FROM {stage})"
    return f"(SELECT DISTINCT ON (vin) {picked} FROM {stage} ORDER BY vin, ts DESC)"


def _update_sql(schema: str, stage: str, unique: bool = False) -> str:
    return f"""
UPDATE {schema}.latest_state AS s SET
    {_assignments("u")},
    updated_at = now()
FROM {_newest(stage, unique)} AS u ({", ".join(_NAMES)})
WHERE s.entity_kind = $1 AND s.entity_id = u.entity_id AND s.ts < u.ts
"""


def _insert_sql(schema: str, stage: str, unique: bool = False) -> str:
    cols = ", ".join(_NAMES)
    return f"""
INSERT INTO {schema}.latest_state AS s (entity_kind, {cols})
SELECT $1, {cols} FROM {_newest(stage, unique)} AS u ({cols})
WHERE NOT EXISTS (
    SELECT 1 FROM {schema}.latest_state AS x WHERE x.entity_kind = $1 AND x.entity_id = u.entity_id
)
ON CONFLICT DO NOTHING
"""


def _upsert_sql(schema: str) -> str:
    cols = ", ".join(_NAMES)
    params = ", ".join(f"${i + 2}::{t}[]" for i, (_, _, t) in enumerate(LATEST_COLUMNS))
    return f"""
INSERT INTO {schema}.latest_state AS s (entity_kind, {cols})
SELECT $1, u.* FROM unnest({params}) AS u({cols})
ON CONFLICT (entity_kind, entity_id) DO UPDATE SET
    {_assignments("EXCLUDED")},
    updated_at = now()
WHERE s.ts < EXCLUDED.ts
"""


_statements: dict[tuple[str, str, bool], str] = {}


def newest_per_vehicle(rows: Iterable[VehicleRow]) -> list[VehicleRow]:
    """The newest row of each VIN, sorted by VIN."""
    best: dict[str, VehicleRow] = {}
    for r in rows:
        b = best.get(r.vin)
        if b is None or r.ts > b.ts:
            best[r.vin] = r
    return [best[v] for v in sorted(best)]


async def upsert_rows(conn: Any, schema: str, entity_kind: str, rows: Iterable[VehicleRow]) -> int:
    """The unnest form: upsert the newest row of each vehicle; returns the entities sent."""
    newest = newest_per_vehicle(rows)
    if not newest:
        return 0
    sql = _statements.get((schema, "", False))
    if sql is None:
        sql = _statements[(schema, "", False)] = _upsert_sql(schema)
    columns = [[r[i] for r in newest] for i in _FIELD_INDEX]
    await conn.execute(sql, entity_kind, *columns)
    return len(newest)


async def merge_stage(
    conn: Any, schema: str, entity_kind: str, stage: str, entities: int, *, unique: bool = False
) -> None:
    """The COPY form: bring in the newest row per VIN of the vehicle rows in ``stage``.

    ``entities``: the distinct VINs staged. When the UPDATE reaches them all (the steady
    state: every vehicle has a row), the INSERT of new entities is not even sent.
    ``unique``: the stage holds one row per VIN, in VIN order (the caller sorted them, so
    two writers still lock latest_state rows in the same order): no DISTINCT ON sort.
    """
    update = _statements.get((schema, stage, unique))
    if update is None:
        update = _statements[(schema, stage, unique)] = _update_sql(schema, stage, unique)
    status = await conn.execute(update, entity_kind)
    if int(status.rsplit(" ", 1)[-1]) < entities:
        insert = _statements.get((schema, stage + "+", unique))
        if insert is None:
            insert = _statements[(schema, stage + "+", unique)] = _insert_sql(schema, stage, unique)
        await conn.execute(insert, entity_kind)
