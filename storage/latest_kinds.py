"""``latest_state`` of chargers' connectors and standalone packs (migrations/0008).

The rule is the vehicles' (storage/latest.py): ``ts`` only moves forward, every other column
keeps its last non-null value - except ``received_at``, which goes with ``ts``: connectors'
status rows carry no receive time, and one kept from an older report would make a connector
that just reported look silent since then (NULL: "online" falls back to ``ts``) - and a
pack's ``place_id``, which goes with its ``lifecycle_stage`` (``KindLatest.paired``). What
differs is where the values come from, one column map per kind:

* ``charger``, one row per connector (entity ``operator_id:connector_id``), from its status
  rows (``connector_status``) and its telemetry rows (output, connected vehicle);
* ``battery``, one row per pack code, from standalone pack frames (``pack_telemetry``).

A connector's status row and telemetry row of one frame have the same time (``charger_values``
joins them into one item), and a batch may hold several frames of one entity: they are merged
here, in frame-time order, into one row per entity (the newest time, the last non-null value of
each column; a batch with every entity once needs no merge). Only rows newer
than the stored state may take part, or an old frame's value would overwrite a newer stored
one in a column the newest row leaves empty; so when an entity has rows of more than one time
in the batch (rare: a connector reports every few seconds, a batch lasts a fraction of that),
the stored times of those entities are read first. The merged rows (sorted by entity, so two
writers lock in the same order) then reach latest_state in one of two forms, as the vehicles'
(storage/latest.py), measured in docs/performance.md:

* with COPY (``copy=True``, plain PostgreSQL): asyncpg's binary COPY of records (its compiled
  codecs: 1.7 µs of client CPU per charger row, ``storage.binary_rows.row_encoder`` 2.3) into
  a temporary staging table of
  the kind (``nev_latest_<kind>``, created once per session, ``ON COMMIT DELETE ROWS``), one
  ``UPDATE ... FROM`` the staged rows ``WHERE stored.ts < new.ts``, and only when it reached
  fewer rows than were staged (new entities, or rows not newer than the stored state) an
  ``INSERT ... WHERE NOT EXISTS ... ON CONFLICT DO NOTHING`` of the new entities. An entity
  inserted concurrently by another writer is skipped; its next report brings it up to date.
  It replaces, there, the unnest form, whose encoding of one Python list per column into
  arrays was most of the charger writer's client CPU.
* without COPY (PGlite): one ``INSERT ... SELECT FROM unnest(...) ON CONFLICT DO UPDATE ...
  WHERE stored.ts < new.ts``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
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
    """One kind's latest_state columns (after entity_id; ``ts`` first) and their SQL types.

    ``paired``: (leader, follower) - a column that says nothing without another: the follower
    changes only with a report that has the leader, and is kept (when that report leaves it
    empty) only while the leader's value stays the same. A pack's place_id is a place of the
    kind its lifecycle_stage names: a pack that reports stage 1 (in a vehicle) without a site
    is no longer at the swap station it last named; one that reports stage 2 without a site is
    still at its station (an unknown site is not a new place, as in pack_bindings)."""

    kind: str
    columns: tuple[tuple[str, str], ...]
    paired: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        if self.columns[0] != ("ts", "timestamptz"):
            raise ValueError(f"{self.kind}: the first latest_state column must be ts")

    def index(self, column: str) -> int:
        """``column``'s position in a values tuple."""
        return [c for c, _ in self.columns].index(column)


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
    paired=("lifecycle_stage", "place_id"),
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


def _output(t: ChargerTelemetryRow, status: int | None) -> Values:
    return (
        t.ts, t.received_at, t.operator_id, status, t.voltage_v, t.current_a, t.power_kw,
        t.energy_kwh, t.vin, _soc(t.soc_pct), t.connector_temp_c,
    )  # fmt: skip


def _pack(r: PackTelemetryRow) -> Values:
    # a site without a stage is no place (pack_places: kind 'unknown'): BATTERY.paired
    site = None if r.lifecycle_stage is None else r.site_id
    return (
        r.ts, r.received_at, r.edition, r.soc_pct, r.soh_pct, r.cycle_count, r.voltage_v,
        r.current_a, r.insulation_kohm, r.lifecycle_stage, site, _volts(r.cell_max_mv),
        _volts(r.cell_min_mv), r.probe_max_c, r.probe_min_c, r.max_alarm_level, r.alarm_flags,
    )  # fmt: skip


def charger_values(
    statuses: Iterable[ConnectorStatusRow], telemetry: Iterable[ChargerTelemetryRow]
) -> list[tuple[str, Values]]:
    """(entity, values) of the status and telemetry rows, in CHARGER's column order.

    A telemetry row carries the status of its connector at the same time (the last one, as
    the merge would keep it): a frame's status and output of one connector are one item, so
    an entity with one frame in the batch needs no merge. Statuses without such a telemetry
    row are items of their own."""
    # later rows win, as in the merge; the key needs no entity string
    status_of = {(s.operator_id, s.connector_id, s.ts): s for s in statuses}
    out: list[tuple[str, Values]] = []
    for t in telemetry:
        # popped: a second telemetry row of the same time needs it no more than the merge does
        s = status_of.pop((t.operator_id, t.connector_id, t.ts), None)
        status = None if s is None else s.status
        out.append((connector_entity(t.operator_id, t.connector_id), _output(t, status)))
    out += [
        (connector_entity(s.operator_id, s.connector_id), _status(s)) for s in status_of.values()
    ]
    return out


def battery_values(rows: Iterable[PackTelemetryRow]) -> list[tuple[str, Values]]:
    """(pack code, values) of standalone pack frames, in BATTERY's column order."""
    return [(r.pack_code, _pack(r)) for r in rows]


def several_times(items: Iterable[tuple[str, Values]]) -> set[str]:
    """The entities with rows of more than one frame time."""
    return set(_several_times(_group(items)))


def merge_newest(
    items: Iterable[tuple[str, Values]],
    stored: dict[str, datetime] | None = None,
    spec: KindLatest | None = None,
) -> list[tuple[str, Values]]:
    """One row per entity, sorted by entity: the newest time and, per column, the last non-null
    value in frame-time order, of the rows newer than ``stored[entity]`` (when known); the
    columns ``spec.paired`` names taken together."""
    return _merge(_group(items), stored or {}, _pair_of(spec))


def _group(items: Iterable[tuple[str, Values]]) -> dict[str, list[Values]]:
    per: dict[str, list[Values]] = {}
    for entity, values in items:
        per.setdefault(entity, []).append(values)
    return per


def _several_times(per: dict[str, list[Values]]) -> list[str]:
    return [
        entity
        for entity, rows in per.items()
        if len(rows) > 1 and any(v[0] != rows[0][0] for v in rows)
    ]


def _pair_of(spec: KindLatest | None) -> tuple[int, int] | None:
    if spec is None or spec.paired is None:
        return None
    return spec.index(spec.paired[0]), spec.index(spec.paired[1])


# The follower of a pair emptied by a change of its leader within the merged rows: "no value"
# that the stored one must not fill in (the SQL turns it into NULL, ``_assignment``), where a
# plain NULL keeps the stored value while the leader stays. A pack that went to stage 1 and back
# to stage 2 in one batch, neither time with a site, has no known site, as it would batch by
# batch; the stored station's must not come back.
CLEARED: Final = ""


def _paired(merged: Values, rows: list[Values], pair: tuple[int, int]) -> Values:
    """``merged`` with the follower of ``pair`` as the rows (in time order) leave it: set by
    each report of a new leader value (empty included), kept while the leader stays."""
    lead, follow = pair
    leader = value = None
    changed = False
    for v in rows:
        if v[lead] is None:
            continue
        if v[lead] != leader:
            changed = leader is not None
            leader, value = v[lead], v[follow]
        elif v[follow] is not None:
            value = v[follow]
    if value is None and changed:
        value = CLEARED
    if merged[follow] == value:
        return merged
    return (*merged[:follow], value, *merged[follow + 1 :])


def _merge(
    per: dict[str, list[Values]],
    stored: dict[str, datetime],
    pair: tuple[int, int] | None = None,
) -> list[tuple[str, Values]]:
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
        merged = _with_newest_receipt(_last_non_null(rows), rows)
        out.append((entity, merged if pair is None else _paired(merged, rows, pair)))
    return out


def _with_newest_receipt(merged: Values, rows: list[Values]) -> Values:
    """``merged`` with the received_at (column 1 of every kind) of the newest time's rows: it
    goes with ``ts``, NULL when that report carries none (a status row), never an older
    report's, which would make an idle connector look seen then (``_assignments``)."""
    newest = rows[-1][0]
    receipt = None
    for values in reversed(rows):
        if values[0] != newest:
            break
        if values[1] is not None:
            receipt = values[1]
            break
    if merged[1] is receipt:
        return merged
    return (merged[0], receipt, *merged[2:])


def _last_non_null(rows: list[Values]) -> Values:
    """Per column, the value of the last row where it is not null (rows in frame-time order).

    Newest first, visiting only the columns still null: the newest row usually lacks a column
    or two, so this touches those where a forward merge would visit every column of every row
    (measured: docs/performance.md).
    """
    newest = rows[-1]
    if None not in newest:  # one scan in C
        return newest
    merged = list(newest)
    missing = [j for j, v in enumerate(newest) if v is None]
    for values in reversed(rows[:-1]):
        still = []
        for j in missing:
            v = values[j]
            if v is None:
                still.append(j)
            else:
                merged[j] = v
        if not still:
            break
        missing = still
    return tuple(merged)


_entity: Final = itemgetter(0)
_time: Final = itemgetter(0)
_FOLLOW_TS: Final = frozenset({"ts", "received_at"})


def _assignment(spec: KindLatest, c: str, source: str) -> str:
    # received_at belongs to the report that moved ts: a status row carries none, and an older
    # report's receive time kept beside a newer ts makes "last seen" (queries_online) old.
    if c in _FOLLOW_TS:
        return f"{c} = {source}.{c}"
    if spec.paired is not None and c == spec.paired[1]:
        # SET reads the stored row's values as they were: s.<leader> is the stored leader
        lead = spec.paired[0]
        # '' (CLEARED): emptied within the batch by a change of the leader: NULL, not s.<c>
        return (
            f"{c} = CASE WHEN {source}.{lead} IS NULL THEN s.{c}"
            f" WHEN {source}.{lead} = s.{lead} THEN NULLIF(COALESCE({source}.{c}, s.{c}), '')"
            f" ELSE NULLIF({source}.{c}, '') END"
        )
    return f"{c} = COALESCE({source}.{c}, s.{c})"


def _assignments(spec: KindLatest, source: str) -> str:
    return ",\n    ".join(_assignment(spec, c, source) for c, _ in spec.columns)


def _names(spec: KindLatest) -> str:
    return ", ".join(["entity_id", *(c for c, _ in spec.columns)])


def _inserted(spec: KindLatest, source: str) -> str:
    """The values a new entity's row takes from ``source``: as given, but a follower
    ``CLEARED`` within the batch is NULL."""
    follow = spec.paired[1] if spec.paired is not None else None
    return ", ".join(
        f"NULLIF({source}.{c}, '')" if c == follow else f"{source}.{c}"
        for c in ["entity_id", *(c for c, _ in spec.columns)]
    )


def _upsert_sql(schema: str, spec: KindLatest) -> str:
    cols = _names(spec)
    params = ", ".join(
        f"${i + 2}::{t}[]" for i, (_, t) in enumerate([("entity_id", "text"), *spec.columns])
    )
    return f"""
INSERT INTO {schema}.latest_state AS s (entity_kind, {cols})
SELECT $1, u.* FROM unnest({params}) AS u({cols})
ON CONFLICT (entity_kind, entity_id) DO UPDATE SET
    {_assignments(spec, "EXCLUDED")},
    updated_at = now()
WHERE s.ts < EXCLUDED.ts
"""


def _stage(spec: KindLatest) -> str:
    return f"nev_latest_{spec.kind}"


def _stage_sql(spec: KindLatest) -> str:
    # Created once per session (IF NOT EXISTS costs one catalog lookup afterwards), as the COPY
    # loader's stages; emptied first, for another load of the same transaction (a bisected
    # half, a conflict-skipping redo) has staged its rows already.
    cols = ", ".join(f"{c} {t}" for c, t in [("entity_id", "text"), *spec.columns])
    return (
        f"CREATE TEMP TABLE IF NOT EXISTS {_stage(spec)} ({cols}) ON COMMIT DELETE ROWS;"
        f"DELETE FROM {_stage(spec)}"
    )


def _update_sql(schema: str, spec: KindLatest) -> str:
    return f"""
UPDATE {schema}.latest_state AS s SET
    {_assignments(spec, "u")},
    updated_at = now()
FROM {_stage(spec)} AS u
WHERE s.entity_kind = $1 AND s.entity_id = u.entity_id AND s.ts < u.ts
"""


def _insert_sql(schema: str, spec: KindLatest) -> str:
    cols = _names(spec)
    return f"""
INSERT INTO {schema}.latest_state AS s (entity_kind, {cols})
SELECT $1, {_inserted(spec, "u")} FROM {_stage(spec)} AS u
WHERE NOT EXISTS (
    SELECT 1 FROM {schema}.latest_state AS x WHERE x.entity_kind = $1 AND x.entity_id = u.entity_id
)
ORDER BY u.entity_id
ON CONFLICT DO NOTHING
"""


_STORED = """
SELECT entity_id, ts FROM {schema}.latest_state
WHERE entity_kind = $1 AND entity_id = ANY($2::text[])
"""
_statements: dict[tuple[str, str, str], str] = {}


def _sql(form: str, schema: str, spec: KindLatest) -> str:
    sql = _statements.get((form, schema, spec.kind))
    if sql is None:
        build = {"upsert": _upsert_sql, "update": _update_sql, "insert": _insert_sql}[form]
        sql = _statements[(form, schema, spec.kind)] = build(schema, spec)
    return sql


async def upsert(
    conn: Any,
    schema: str,
    spec: KindLatest,
    items: list[tuple[str, Values]],
    *,
    copy: bool = False,
) -> int:
    """Bring latest_state up to date with ``items`` (from ``charger_values`` /
    ``battery_values``) inside the caller's transaction; returns the entities sent.

    ``copy``: the connection takes ``COPY FROM STDIN`` (the COPY loader's engines); otherwise
    the unnest form, which every engine takes."""
    if not items:
        return 0
    once = dict(items)
    if len(once) == len(items):
        # every entity once (the steady state: a batch lasts less than a report interval):
        # nothing to merge and no older row of the batch to keep out; the SQL moves ts forward
        newest = sorted(once.items(), key=_entity)
    else:
        per = _group(items)
        stored: dict[str, datetime] = {}
        mixed = _several_times(per)
        if mixed:
            rows = await conn.fetch(_STORED.format(schema=schema), spec.kind, sorted(mixed))
            stored = {r["entity_id"]: r["ts"] for r in rows}
        newest = _merge(per, stored, _pair_of(spec))
        if not newest:
            return 0
    if copy:
        await _merge_copy(conn, schema, spec, newest)
    else:
        columns: list[list[Any]] = [[e for e, _ in newest]]
        columns += [[v[j] for _, v in newest] for j in range(len(spec.columns))]
        await conn.execute(_sql("upsert", schema, spec), spec.kind, *columns)
        await _clear_new(conn, schema, spec, newest)
    return len(newest)


async def _clear_new(
    conn: Any, schema: str, spec: KindLatest, newest: list[tuple[str, Values]]
) -> None:
    """The unnest form's new entities keep a ``CLEARED`` follower as given (its SELECT cannot
    turn it into NULL: ON CONFLICT's EXCLUDED would no longer tell it from "not reported"):
    made NULL here, for the rare batch that cleared one (by primary key)."""
    if spec.paired is None:
        return
    follow = spec.paired[1]
    j = spec.index(follow)
    cleared = [e for e, v in newest if v[j] == CLEARED]
    if cleared:
        await conn.execute(
            f"UPDATE {schema}.latest_state SET {follow} = NULL WHERE entity_kind = $1"
            f" AND entity_id = ANY($2::text[]) AND {follow} = ''",
            spec.kind,
            cleared,
        )


async def _merge_copy(
    conn: Any, schema: str, spec: KindLatest, newest: list[tuple[str, Values]]
) -> None:
    await conn.execute(_stage_sql(spec))
    # asyncpg's own binary COPY of records (its compiled codecs; its column introspection is a
    # statement cached per connection): measured 1.7 µs of client CPU per charger row against
    # 2.3 for storage.binary_rows.row_encoder (a Python call per column); docs/performance.md.
    await conn.copy_records_to_table(_stage(spec), records=[(e, *v) for e, v in newest])
    status = await conn.execute(_sql("update", schema, spec), spec.kind)
    if int(status.rsplit(" ", 1)[-1]) < len(newest):
        await conn.execute(_sql("insert", schema, spec), spec.kind)
