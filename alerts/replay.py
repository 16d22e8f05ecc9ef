"""The short replay of the last rule window on partition assignment, through asyncpg.

Windowed rules (rate, drop, jump, composite windows, ``for_s`` durations) need the frames just
before the ones a new owner of a partition reads next; the previous owner stored them. So:

* ``stamp`` (in each batch's transaction) records in ``latest_state.kafka_topic/_partition``
  where an entity's frames are read from (migration 0052), once per entity per assignment;
  with ``storage.latest_interval_ms`` > 0 the writer's merge of a partition's pending set
  records them instead (storage/latest_merge.py ``stamp``: the row exists only from then);
* ``entity_page`` (on assignment) pages through the entities of one assigned partition whose
  latest frame was stored since a cutoff (``cutoff``: ``window_s`` seconds of wall clock
  before the restore began), in entity order from a keyset (index ``latest_state_restore``,
  migration 0055), and ``frames_of`` reads a page's stored frames in ``(latest frame time -
  window_s, latest frame time]`` (frame time), vehicle and pack rows, in time order, for
  ``RuleEngine.warm``. A page at a time: the restore of millions of entities holds one page in
  memory, reports progress, and resumes after the last page it applied
  (ingest/pipeline/alert_state.py);
* ``recent_frames``: the same for whole partitions at once (tests and small tools).

The queries are bounded by the page's entities (an index range) and by the window (the
telemetry primary key ``(vin, ts)``, with constant time bounds for partition pruning), not by
the fleet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

from contract.rows import FrameRows, PackRow, VehicleRow

__all__ = [
    "UNREAD",
    "cutoff",
    "entity_page",
    "frames_of",
    "ms_of",
    "recent_entities",
    "recent_frames",
    "stamp",
]


class Connection(Protocol):
    """The part of ``asyncpg.Connection`` used here."""

    async def execute(self, query: str, *args: Any) -> str: ...

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...


# Only rows whose partition changed are written: the steady state writes nothing. Sorted by
# entity so two writers lock latest_state rows in the same order (as storage/latest.py does).
_STAMP: Final = """
UPDATE latest_state AS s SET kafka_topic = $2, kafka_partition = u.p
FROM unnest($3::text[], $4::int[]) AS u(id, p)
WHERE s.entity_kind = $1 AND s.entity_id = u.id
  AND (s.kafka_partition IS DISTINCT FROM u.p OR s.kafka_topic IS DISTINCT FROM $2)
"""
_ENTITIES: Final = """
SELECT entity_id, ts, kafka_partition FROM latest_state
WHERE kafka_topic = $1 AND kafka_partition = ANY($2::int[])
  AND entity_kind = $3 AND updated_at >= now() - make_interval(secs => $4)
"""
# Keyset pages in entity order: each page one index range (latest_state_restore), so a restore
# of N entities costs N, not N per page, and resumes after the last entity it applied.
_PAGE: Final = """
SELECT entity_id, ts FROM latest_state
WHERE kafka_topic = $1 AND kafka_partition = $2 AND entity_kind = $3
  AND entity_id > $4 AND updated_at >= $5
ORDER BY entity_id
LIMIT $6
"""
# The vehicle rows in VehicleRow's order and the frame time in epoch ms: built positionally,
# the restore's per-row cost in Python (by-name lookups of ~40 columns were a third of it).
_VEHICLES: Final = """
SELECT {columns}, (extract(epoch FROM t.ts) * 1000)::bigint
FROM unnest($1::text[], $2::timestamptz[]) AS e(vin, last)
JOIN vehicle_telemetry AS t
  ON t.vin = e.vin AND t.ts > e.last - make_interval(secs => $3) AND t.ts <= e.last
WHERE t.ts > $4 AND t.ts <= $5
ORDER BY t.vin, t.ts
""".replace("{columns}", ", ".join(f"t.{f}" for f in VehicleRow._fields))
_CUTOFF: Final = "SELECT now() - make_interval(secs => $1)"
# The pack rows without their cell and probe arrays: no rule reads single cells (alerts.fields:
# the spreads come from the rows' min/max columns), and decoding the int2[] arrays and turning
# them back into raw bytes was ~1/3 of a worker's CPU while it replayed (docs/performance.md).
UNREAD: Final = frozenset({"cell_voltages_raw", "probe_temps_raw"})  # by no rule
_PACK_COLUMNS: Final = tuple(f for f in PackRow._fields if f not in UNREAD)
_PACKS: Final = """
SELECT {columns} FROM unnest($1::text[], $2::timestamptz[]) AS e(vin, last)
JOIN battery_pack_telemetry AS t
  ON t.vin = e.vin AND t.ts > e.last - make_interval(secs => $3) AND t.ts <= e.last
WHERE t.ts > $4 AND t.ts <= $5
ORDER BY t.vin, t.ts, t.pack
""".replace("{columns}", ", ".join(f"t.{f}" for f in _PACK_COLUMNS))


async def recent_entities(
    conn: Connection, entity_kind: str, topic: str, partitions: Sequence[int], window_s: float
) -> list[Any]:
    """The entities of ``kind`` that ``partitions`` of ``topic`` carried within ``window_s``
    (their latest_state rows: entity_id, ts, kafka_partition); none when there is no window."""
    if window_s <= 0 or not partitions:
        return []
    return list(await conn.fetch(_ENTITIES, topic, list(partitions), entity_kind, window_s))


async def cutoff(conn: Connection, window_s: float) -> datetime:
    """The database's clock ``window_s`` ago: entities stored since then are replayed (fixed
    once per restore, so its pages agree on who is recent)."""
    rows = await conn.fetch(_CUTOFF, window_s)
    value: datetime = rows[0][0]
    return value


async def entity_page(
    conn: Connection,
    entity_kind: str,
    topic: str,
    partition: int,
    *,
    since: datetime,
    after: str,
    limit: int,
) -> list[Any]:
    """Up to ``limit`` latest_state rows (entity_id, ts) of ``partition`` of ``topic`` stored
    since ``since``, with entity ids above ``after``, in entity order."""
    return list(await conn.fetch(_PAGE, topic, partition, entity_kind, after, since, limit))


async def stamp(
    conn: Connection, entity_kind: str, topic: str, placements: Mapping[str, int]
) -> None:
    """Record that these entities' frames come from ``topic`` partition ``placements[id]``."""
    if not placements:
        return
    ids = sorted(placements)
    await conn.execute(_STAMP, entity_kind, topic, ids, [placements[i] for i in ids])


async def recent_frames(
    conn: Connection,
    entity_kind: str,
    topic: str,
    partitions: Sequence[int],
    window_s: float,
) -> dict[int, list[FrameRows]]:
    """Per partition, the stored frames of the last ``window_s`` of its recently active
    entities (see the module docstring), each entity's in time order. Vehicles; chargers and
    packs: ``alerts.replay_kinds.recent_objects``."""
    entities = await recent_entities(conn, entity_kind, topic, partitions, window_s)
    part_of = {r["entity_id"]: r["kafka_partition"] for r in entities}
    out: dict[int, list[FrameRows]] = {}
    for frame in await frames_of(conn, entities, window_s):
        out.setdefault(part_of[frame.vin], []).append(frame)
    return out


async def frames_of(conn: Connection, entities: Sequence[Any], window_s: float) -> list[FrameRows]:
    """The stored frames of ``entities`` (latest_state rows: entity_id, ts) in ``(ts -
    window_s, ts]``, vehicle and pack rows, each entity's in time order."""
    if not entities:
        return []
    # The upper bound stays the entity's latest_state time even when latest_state lags the
    # rows (bounded-lag latest_state, after a crash): the stored frames above it are the
    # refill range's, which the new owner reads from Kafka anyway and warms the engine with
    # (ingest/pipeline/alert_state.py, RefillWarm) - including those of entities first seen
    # since the last merge, which no latest_state row leads this query to. Reading them here
    # too would only be read twice (the engine ignores the second copy as a duplicate).
    vins = [r["entity_id"] for r in entities]
    lasts = [r["ts"] for r in entities]
    lo = min(lasts) - timedelta(seconds=window_s)
    hi = max(lasts)
    args = (vins, lasts, window_s, lo, hi)
    vehicles = await conn.fetch(_VEHICLES, *args)
    packs: dict[tuple[str, datetime], list[PackRow]] = {}
    for r in await conn.fetch(_PACKS, *args):
        packs.setdefault((r["vin"], r["ts"]), []).append(_pack(r))
    out: list[FrameRows] = []
    n = len(VehicleRow._fields)
    for r in vehicles:
        row = VehicleRow._make(r[:n])
        out.append(
            FrameRows(
                edition=row.edition,
                command=row.command,
                vin=row.vin,
                ts_ms=r[n],
                vehicle=row,
                packs=packs.get((row.vin, row.ts)),
            )
        )
    return out


# Column-by-column like alerts/store.py's records: each maps its own query's columns.
def _pack(r: Any) -> PackRow:
    """A stored pack row back in the decoder's form, for the rules: no cells, no probes (the
    query leaves them out, see _PACKS)."""
    return PackRow(
        vin=r["vin"],
        ts=r["ts"],
        pack=r["pack"],
        voltage_v=r["voltage_v"],
        current_a=r["current_a"],
        cell_count=r["cell_count"],
        first_cell=r["first_cell"],
        cell_voltages_raw=b"",
        probe_temps_raw=b"",
        cell_min_mv=r["cell_min_mv"],
        cell_max_mv=r["cell_max_mv"],
        probe_min_c=r["probe_min_c"],
        probe_max_c=r["probe_max_c"],
    )


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def ms_of(ts: datetime) -> int:
    """A stored time as the engine's epoch milliseconds."""
    return (ts - _EPOCH) // timedelta(milliseconds=1)
