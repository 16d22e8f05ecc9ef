"""``latest_state`` of chargers' connectors and standalone packs (migrations/0008).

The rule is the vehicles' (storage/latest.py): ``ts`` only moves forward, every other column
keeps its last non-null value - except ``received_at``, which goes with ``ts``: connectors'
status rows carry no receive time, and one kept from an older report would make a connector
that just reported look silent since then (NULL: "online" falls back to ``ts``). What
differs is where the values come from, one column map per kind:

* ``charger``, one row per connector (entity ``operator_id:connector_id``), from its status
  rows (``connector_status``) and its telemetry rows (output, connected vehicle);
* ``battery``, one row per pack code, from standalone pack frames (``pack_telemetry``).

A connector's status row and telemetry row of one frame are two rows with the same time, and
a batch may hold several frames of one entity: they are merged here, in frame-time order, into
one row per entity (the newest time, the last non-null value of each column). Only rows newer
than the stored state may take part, or an old frame's value would overwrite a newer stored
one in a column the newest row leaves empty; so when an entity has rows of more than one time
in the batch (rare: a connector reports every few seconds, a batch lasts a fraction of that),
the stored times of those entities are read first. Then one ``INSERT ... SELECT FROM
unnest(...) ON CONFLICT DO UPDATE ... WHERE stored.ts < new.ts`` (the form both loaders can
send; sorted by entity so two writers lock in the same order).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from contract.battery import PackTelemetryRow
from contract.charger import ChargerTelemetryRow, ConnectorStatusRow

__all__ = [
    "BATTERY",
    "CHARGER",
    "KindLatest",
    "battery_values",
    "charger_values",
    "connector_entity",
    "merge_newest",
    "upsert",
]

# One latest_state value tuple: (ts, *the kind's other columns), without the entity id.
Values = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class KindLatest:
    """One kind's latest_state columns (after entity_id; ``ts`` first) and their SQL types."""

    kind: str
    columns: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        if self.columns[0] != ("ts", "timestamptz"):
            raise ValueError(f"{self.kind}: the first latest_state column must be ts")


CHARGER: Final = KindLatest(
    "charger",
    (
        ("ts", "timestamptz"),
        ("received_at", "timestamptz"),
        ("operator_id", "text"),
        ("connector_status", "int2"),
        ("total_voltage_v", "float4"),
        ("total_current_a", "float4"),
        ("power_kw", "float4"),
        ("energy_kwh", "float8"),
        ("connected_vin", "text"),
        ("soc_pct", "int2"),
        ("max_temp_c", "int2"),
    ),
)
BATTERY: Final = KindLatest(
    "battery",
    (
        ("ts", "timestamptz"),
        ("received_at", "timestamptz"),
        ("edition", "int2"),
        ("soc_pct", "int2"),
        ("soh_pct", "int2"),
        ("cycle_count", "int4"),
        ("total_voltage_v", "float4"),
        ("total_current_a", "float4"),
        ("insulation_kohm", "int4"),
        ("lifecycle_stage", "int2"),
        ("place_id", "text"),
        ("max_cell_voltage_v", "float4"),
        ("min_cell_voltage_v", "float4"),
        ("max_temp_c", "int2"),
        ("min_temp_c", "int2"),
        ("max_alarm_level", "int2"),
        ("general_flags", "int8"),
    ),
)


def connector_entity(operator_id: str, connector_id: str) -> str:
    """A connector's entity id (the OperatorID has 9 characters: the form is unambiguous)."""
    return f"{operator_id}:{connector_id}"


def _soc(v: float | None) -> int | None:
    # T/CEC reports 0.1 % steps; latest_state keeps whole percent, as for vehicles
    return None if v is None else int(v + 0.5)


def _volts(mv: int | None) -> float | None:
    return None if mv is None else mv / 1000


def _status(s: ConnectorStatusRow) -> Values:
    return (s.ts, None, s.operator_id, s.status, None, None, None, None, None, None, None)


def _output(t: ChargerTelemetryRow) -> Values:
    return (
        t.ts, t.received_at, t.operator_id, None, t.voltage_v, t.current_a, t.power_kw,
        t.energy_kwh, t.vin, _soc(t.soc_pct), t.connector_temp_c,
    )  # fmt: skip


def _pack(r: PackTelemetryRow) -> Values:
    return (
        r.ts, r.received_at, r.edition, r.soc_pct, r.soh_pct, r.cycle_count, r.voltage_v,
        r.current_a, r.insulation_kohm, r.lifecycle_stage, r.site_id, _volts(r.cell_max_mv),
        _volts(r.cell_min_mv), r.probe_max_c, r.probe_min_c, r.max_alarm_level, r.alarm_flags,
    )  # fmt: skip


def charger_values(
    statuses: Iterable[ConnectorStatusRow], telemetry: Iterable[ChargerTelemetryRow]
) -> list[tuple[str, Values]]:
    """(entity, values) of every status and telemetry row, in CHARGER's column order."""
    out = [(connector_entity(s.operator_id, s.connector_id), _status(s)) for s in statuses]
    out += [(connector_entity(t.operator_id, t.connector_id), _output(t)) for t in telemetry]
    return out


def battery_values(rows: Iterable[PackTelemetryRow]) -> list[tuple[str, Values]]:
    """(pack code, values) of standalone pack frames, in BATTERY's column order."""
    return [(r.pack_code, _pack(r)) for r in rows]


def several_times(items: Iterable[tuple[str, Values]]) -> set[str]:
    """The entities with rows of more than one frame time."""
    first: dict[str, datetime] = {}
    out: set[str] = set()
    for entity, values in items:
        ts = first.setdefault(entity, values[0])
        if ts != values[0]:
            out.add(entity)
    return out


def merge_newest(
    items: Iterable[tuple[str, Values]], stored: dict[str, datetime] | None = None
) -> list[tuple[str, Values]]:
    """One row per entity, sorted by entity: the newest time and, per column, the last non-null
    value in frame-time order, of the rows newer than ``stored[entity]`` (when known)."""
    per: dict[str, list[Values]] = {}
    for entity, values in items:
        per.setdefault(entity, []).append(values)
    stored = stored or {}
    out: list[tuple[str, Values]] = []
    for entity in sorted(per):
        rows = per[entity]
        after = stored.get(entity)
        if after is not None:
            rows = [v for v in rows if v[0] > after]
            if not rows:
                continue
        if len(rows) == 1:
            out.append((entity, rows[0]))
            continue
        rows.sort(key=_time)  # stable: rows of one time keep their order
        merged = list(rows[0])
        for values in rows[1:]:
            for j, v in enumerate(values):
                if v is not None:
                    merged[j] = v
        out.append((entity, tuple(merged)))
    return out


def _time(values: Values) -> datetime:
    ts: datetime = values[0]
    return ts


_FOLLOW_TS: Final = frozenset({"ts", "received_at"})


def _upsert_sql(schema: str, spec: KindLatest) -> str:
    names = [c for c, _ in spec.columns]
    cols = ", ".join(["entity_id", *names])
    params = ", ".join(
        f"${i + 2}::{t}[]" for i, (_, t) in enumerate([("entity_id", "text"), *spec.columns])
    )
    # received_at belongs to the report that moved ts: a status row carries none, and an older
    # report's receive time kept beside a newer ts makes "last seen" (queries_online) old.
    sets = ",\n    ".join(
        f"{c} = EXCLUDED.{c}" if c in _FOLLOW_TS else f"{c} = COALESCE(EXCLUDED.{c}, s.{c})"
        for c in names
    )
    return f"""
INSERT INTO {schema}.latest_state AS s (entity_kind, {cols})
SELECT $1, u.* FROM unnest({params}) AS u({cols})
ON CONFLICT (entity_kind, entity_id) DO UPDATE SET
    {sets},
    updated_at = now()
WHERE s.ts < EXCLUDED.ts
"""


_STORED = """
SELECT entity_id, ts FROM {schema}.latest_state
WHERE entity_kind = $1 AND entity_id = ANY($2::text[])
"""
_statements: dict[tuple[str, str], str] = {}


async def upsert(conn: Any, schema: str, spec: KindLatest, items: list[tuple[str, Values]]) -> int:
    """Bring latest_state up to date with ``items`` (from ``charger_values`` /
    ``battery_values``) inside the caller's transaction; returns the entities sent."""
    if not items:
        return 0
    stored: dict[str, datetime] | None = None
    mixed = several_times(items)
    if mixed:
        rows = await conn.fetch(_STORED.format(schema=schema), spec.kind, sorted(mixed))
        stored = {r["entity_id"]: r["ts"] for r in rows}
    newest = merge_newest(items, stored)
    if not newest:
        return 0
    sql = _statements.get((schema, spec.kind))
    if sql is None:
        sql = _statements[(schema, spec.kind)] = _upsert_sql(schema, spec)
    columns: list[list[Any]] = [[e for e, _ in newest]]
    columns += [[v[j] for _, v in newest] for j in range(len(spec.columns))]
    await conn.execute(sql, spec.kind, *columns)
    return len(newest)
