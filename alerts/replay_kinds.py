"""The short replay on assignment (alerts/replay.py) for chargers and standalone packs.

Same selection as for vehicles: the entities of the assigned partitions whose latest report was
stored within the last ``window_s`` (latest_state, stamped by ``replay.stamp``), and their
stored rows in ``(latest time - window_s, latest time]``, in time order, rebuilt into the
decoded objects the engine evaluates: ``PackFrameRows`` from ``pack_telemetry``, ``ChargerRows``
from ``charger_telemetry`` joined with ``connector_status_events`` by connector and time.
Bounded like the vehicles' replay: an index range over the partitions' entities, then one
primary-key range per entity (``(pack_code, ts)``, ``(operator_id, connector_id, ts, ...)``).
``objects_of`` reads one page of entities (``replay.entity_page``) for the paged restore.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Final

from alerts.replay import UNREAD, Connection, ms_of, recent_entities
from contract.battery import PackFrameRows, PackTelemetryRow
from contract.charger import ChargerRows, ChargerTelemetryRow, ConnectorStatusRow

__all__ = ["entity_objects", "objects_of", "recent_objects"]

# Without the cell and probe arrays, which no rule reads (as alerts.replay's pack rows).
_PACKS: Final = """
SELECT {columns} FROM unnest($1::text[], $2::timestamptz[]) AS e(id, last)
JOIN pack_telemetry AS t
  ON t.pack_code = e.id AND t.ts > e.last - make_interval(secs => $3) AND t.ts <= e.last
WHERE t.ts > $4 AND t.ts <= $5
ORDER BY t.pack_code, t.ts
""".replace("{columns}", ", ".join(f"t.{f}" for f in PackTelemetryRow._fields if f not in UNREAD))
_CONNECTORS: Final = """
SELECT t.* FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS e(op, cid, last)
JOIN {table} AS t ON t.operator_id = e.op AND t.connector_id = e.cid
  AND t.ts > e.last - make_interval(secs => $4) AND t.ts <= e.last
WHERE t.ts > $5 AND t.ts <= $6
ORDER BY t.operator_id, t.connector_id, t.ts
"""
_OP_LEN: Final = 9  # OperatorID: the charger entity id is OperatorID ":" ConnectorID


async def recent_objects(
    conn: Connection, entity_kind: str, topic: str, partitions: Sequence[int], window_s: float
) -> dict[int, list[Any]]:
    """Per partition, the stored objects of the last ``window_s`` of its recently active
    chargers' connectors or packs, each entity's in time order."""
    entities = await recent_entities(conn, entity_kind, topic, partitions, window_s)
    part_of = {r["entity_id"]: r["kafka_partition"] for r in entities}
    out: dict[int, list[Any]] = {}
    for eid, obj in await entity_objects(conn, entity_kind, entities, window_s):
        out.setdefault(part_of[eid], []).append(obj)
    return out


async def objects_of(
    conn: Connection, entity_kind: str, entities: Sequence[Any], window_s: float
) -> list[Any]:
    """The stored objects of ``entities`` (latest_state rows: entity_id, ts) in ``(ts -
    window_s, ts]``, each entity's in time order."""
    return [obj for _, obj in await entity_objects(conn, entity_kind, entities, window_s)]


async def entity_objects(
    conn: Connection, entity_kind: str, entities: Sequence[Any], window_s: float
) -> list[tuple[str, Any]]:
    """``objects_of`` with each object's entity id (a charger's objects are per connector)."""
    if not entities:
        return []
    ids = [r["entity_id"] for r in entities]
    lasts = [r["ts"] for r in entities]
    bounds = (window_s, min(lasts) - timedelta(seconds=window_s), max(lasts))
    if entity_kind == "battery":
        out: list[tuple[str, Any]] = []
        for r in await conn.fetch(_PACKS, ids, lasts, *bounds):
            row = _pack_row(r)
            out.append(
                (
                    row.pack_code,
                    PackFrameRows(
                        edition=row.edition,
                        command=row.command,
                        pack_code=row.pack_code,
                        ts_ms=ms_of(row.ts),
                        telemetry=row,
                    ),
                )
            )
        return out
    keys = ([i[:_OP_LEN] for i in ids], [i[_OP_LEN + 1 :] for i in ids], lasts, *bounds)
    joined: dict[tuple[str, str, Any], ChargerRows] = {}
    tel = await conn.fetch(_CONNECTORS.format(table="charger_telemetry"), *keys)
    for r in tel:
        t = ChargerTelemetryRow(*(r[f] for f in ChargerTelemetryRow._fields))
        _object(joined, t.operator_id, t.connector_id, t.ts).telemetry.append(t)
    for r in await conn.fetch(_CONNECTORS.format(table="connector_status_events"), *keys):
        s = ConnectorStatusRow(*(r[f] for f in ConnectorStatusRow._fields))
        _object(joined, s.operator_id, s.connector_id, s.ts).statuses.append(s)
    # Each connector's objects in time order (status-only times sort in with the others).
    return [
        (f"{op}:{cid}", rows) for (op, cid, _), rows in sorted(joined.items(), key=lambda kv: kv[0])
    ]


def _object(
    joined: dict[tuple[str, str, Any], ChargerRows], op: str, cid: str, ts: Any
) -> ChargerRows:
    key = (op, cid, ts)
    obj = joined.get(key)
    if obj is None:
        obj = joined[key] = ChargerRows(operator_id=op, command=0x02, ts_ms=ms_of(ts))
    return obj


def _pack_row(r: Any) -> PackTelemetryRow:
    """A stored pack row back in the decoder's form, for the rules: no cells, no probes."""
    values = {f: r[f] for f in PackTelemetryRow._fields if f not in UNREAD}
    return PackTelemetryRow(**values, cell_voltages_raw=b"", probe_temps_raw=b"")
