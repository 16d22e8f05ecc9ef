"""Merge one pending set (storage/latest_pending.py) into ``latest_state``, in the caller's
transaction, by the same statements as the per-batch merge (storage/latest.py,
storage/latest_kinds.py), and record where the set's entities not placed yet are read from
(``stamp``, storage/latest_pending.py). With COPY, the vehicles' newest tuples go into the
vehicle staging table (native tuples joined, not encoded) and one ``UPDATE ... FROM`` (plus
an INSERT of new entities when needed) brings latest_state up; without COPY (PGlite), the
unnest upsert.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any, Final

from storage.binary import COPY_SIGNATURE, COPY_TRAILER
from storage.latest import merge_stage, upsert_rows
from storage.latest_kinds import BATTERY, CHARGER, upsert
from storage.latest_pending import Delta, Placements
from storage.params import LoaderKind
from storage.tables import VEHICLES

__all__ = ["VEHICLE_STAGE", "merge", "stamp"]

VEHICLE_STAGE = f"nev_stage_{VEHICLES.name}"  # the COPY loader's stage of vehicle rows
_PIECE = 1000  # tuples per piece of the COPY stream
# From ~200,000 staged vehicles the planner joins by a merge join (below: a nested loop over
# the primary key) and sorts the stage, which spills to disk past ~250,000 at the dev stack's
# 32 MB work_mem (EXPLAIN ANALYZE, docs/storage.md): this transaction gets more for that sort.
_BIG_MERGE = 250_000
_BIG_MERGE_WORK_MEM = "128MB"
# alerts.replay's stamp with the topic per entity (one statement for a merge of several
# partitions' sets); only rows whose placement changed are written, and only where the merged
# tuple is the entity's newest stored time (``u.ts``, NULL: unknown, stamped as before). A
# device that moved on (partitions added) is merged by its old owner after the new owner's
# merge stamped the new partition: that older merge stamped the old partition back (the
# device not placed yet by the old owner's writer), with the new owner's newer time, so
# neither owner's check dropped its copy and both judged the device for good. The ids go
# sorted, but ``UPDATE ... FROM unnest`` locks rows in its join's order, not theirs: two
# writers stamping the same entities (one partition's entities moving to another writer) may
# deadlock. PostgreSQL detects it and aborts one; a batch's write retries the batch (a
# transient error), an idle/revoke merge fails and leaves ``latest_from`` stored (merged
# later, or refilled). Locking first (SELECT ... ORDER BY entity_id FOR UPDATE) would cost a
# statement per merge for a race that needs a rebalance in flight.
_STAMP: Final = """
UPDATE {schema}.latest_state AS s SET kafka_topic = u.t, kafka_partition = u.p
FROM unnest($2::text[], $3::text[], $4::int[], $5::timestamptz[]) AS u(id, t, p, ts)
WHERE s.entity_kind = $1 AND s.entity_id = u.id
  AND (s.kafka_partition IS DISTINCT FROM u.p OR s.kafka_topic IS DISTINCT FROM u.t)
  AND (u.ts IS NULL OR s.ts <= u.ts)
"""


async def stamp(conn: Any, schema: str, placements: Placements, merged: Delta) -> None:
    """Record where the entities' frames are read from (after their merge: a new entity's
    row exists only then), for those whose newest stored time is the one ``merged`` (the
    set just merged) holds: an older merge leaves the placement as it is."""
    sql = _STAMP.format(schema=schema)
    for kind, entities in sorted(placements.items()):
        if not entities:
            continue
        ids = sorted(entities)
        where = [entities[e] for e in ids]
        times = _newest(merged, kind)
        await conn.execute(
            sql, kind, ids, [t for t, _ in where], [p for _, p in where], [times(e) for e in ids]
        )


def _newest(merged: Delta, kind: str) -> Callable[[str], datetime | None]:
    """Entity -> the time of its newest tuple in ``merged`` (its kind's part of the set)."""
    if kind not in (CHARGER.kind, BATTERY.kind):
        vehicles = merged.vehicles
        return lambda e: entry[1].ts if (entry := vehicles.get(e)) is not None else None
    timelines = merged.chargers if kind == CHARGER.kind else merged.packs
    return lambda e: rows[-1][0] if (rows := timelines.get(e)) else None


async def merge(
    conn: Any, schema: str, entity_kind: str, loader: LoaderKind, pending: Delta
) -> int:
    """Bring latest_state up to date with ``pending``; returns the entities sent."""
    copy = loader is LoaderKind.COPY
    n = 0
    if pending.vehicles:
        if copy:
            # One tuple per VIN (the set's key), staged in VIN order: the merge needs no
            # DISTINCT ON sort (a sort of the stage on the server costs more than this one on
            # the client), and two writers still lock latest_state rows in the same order.
            vehicles = pending.vehicles
            entries = [vehicles[vin] for vin in sorted(vehicles)]
            if len(entries) > _BIG_MERGE:
                # the merge join's sort of the stage: in memory, not an external merge
                await conn.execute(f"SET LOCAL work_mem = '{_BIG_MERGE_WORK_MEM}'")
            await _stage_vehicles(conn, schema, entries)
            await merge_stage(conn, schema, entity_kind, VEHICLE_STAGE, len(entries), unique=True)
        else:
            # the upsert orders by VIN itself (newest_per_vehicle)
            entries = list(pending.vehicles.values())
            await upsert_rows(conn, schema, entity_kind, [e[1] for e in entries])
        n += len(entries)
    if pending.chargers:
        n += await upsert(conn, schema, CHARGER, Delta.items(pending.chargers), copy=copy)
    if pending.packs:
        n += await upsert(conn, schema, BATTERY, Delta.items(pending.packs), copy=copy)
    return n


async def _stage_vehicles(conn: Any, schema: str, entries: list[Any]) -> None:
    # The loader's stage (same session table): emptied first, a load of this transaction may
    # have used it.
    await conn.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {VEHICLE_STAGE} "
        f"(LIKE {schema}.{VEHICLES.name}) ON COMMIT DELETE ROWS;"
        f"DELETE FROM {VEHICLE_STAGE}"
    )
    # Each part keeps the VIN order; a set mixing both (Python-built rows are rare: tests,
    # replays) is staged in two runs - at worst a deadlock, which the writer retries.
    native = [e[2] for e in entries if e[2] is not None]
    plain = [e[1] for e in entries if e[2] is None]
    encode = VEHICLES.encode_tuples
    assert encode is not None

    async def pieces() -> AsyncIterator[bytes | bytearray]:
        head: bytes = COPY_SIGNATURE
        for i in range(0, len(native), _PIECE):
            yield head + b"".join(native[i : i + _PIECE])
            head = b""
        tail = bytearray(head)
        if plain:
            encode(tail, plain)
        tail += COPY_TRAILER
        yield tail

    await conn.copy_to_table(
        VEHICLE_STAGE, source=pieces(), columns=list(VEHICLES.columns), format="binary"
    )
