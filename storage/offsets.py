"""Kafka offsets stored with the rows: the fence at the start of a batch, the store at its end.

Exactly-once into the database rests on three statements of the batch's own transaction:

1. ``fence`` locks the batch's partitions' rows of ``consumer_offsets`` (creating missing ones)
   in (topic, partition) order and returns what is stored, and the transaction's id (a retry
   asks the server whether an attempt whose COMMIT got no answer committed: storage/unsure.py).
   A partition whose stored offset is past the batch's start was written by someone else
   since this consumer read it (a stale consumer after a rebalance, or a replay): its frames
   are not written again.
2. the rows themselves (plain COPY: nothing can be in the way, because every offset this batch
   covers is after the stored one);
3. ``store`` moves the partitions' offsets to the batch's ``next``, and sets ``latest_from``:
   the first offset whose latest_state tuple is still pending in the writer's memory (NULL:
   none; storage/latest_pending.py, migration 0054).

A consumer seeks to ``load`` on assignment (to ``latest_from`` when it is below: the records
in between are read again only to refill the pending latest_state tuples). The row lock of
step 1 serialises two writers of the same partition: the second sees the first's committed
offset and is fenced.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "NONE_STORED",
    "Fence",
    "OffsetRange",
    "Stored",
    "TopicPartition",
    "clear_latest_from",
    "fence",
    "load",
    "load_stored",
    "store",
]

TopicPartition = tuple[str, int]
# next_offset of a row created by the fence of a batch for a partition without a stored
# offset; the same transaction overwrites it, so it is never visible once committed.
NONE_STORED: Final = -1


@dataclass(frozen=True, slots=True)
class OffsetRange:
    """The part of one partition a batch covers.

    ``start``: the offset the consumer believes is stored (where it began reading), None when
    it found none stored; ``next``: the offset after the batch's last record.
    """

    start: int | None
    next: int

    def __post_init__(self) -> None:
        if self.start is not None and self.next < self.start:
            raise ValueError(f"offset range ends ({self.next}) before it starts ({self.start})")


def _fence_sql(schema: str) -> str:
    return f"""
INSERT INTO {schema}.consumer_offsets AS o (consumer_group, topic, partition, next_offset)
SELECT $1, u.t, u.p, {NONE_STORED} FROM unnest($2::text[], $3::int4[]) AS u(t, p)
ORDER BY u.t, u.p
ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET next_offset = o.next_offset
RETURNING o.topic, o.partition, o.next_offset, txid_current() AS xact
"""


def _store_sql(schema: str) -> str:
    return f"""
UPDATE {schema}.consumer_offsets AS o SET next_offset = u.n, latest_from = u.l, updated_at = now()
FROM unnest($2::text[], $3::int4[], $4::int8[], $5::int8[]) AS u(t, p, n, l)
WHERE o.consumer_group = $1 AND o.topic = u.t AND o.partition = u.p
"""


def _clear_sql(schema: str) -> str:
    return f"""
UPDATE {schema}.consumer_offsets AS o SET latest_from = NULL
FROM unnest($2::text[], $3::int4[]) AS u(t, p)
WHERE o.consumer_group = $1 AND o.topic = u.t AND o.partition = u.p
"""


def _load_sql(schema: str) -> str:
    return f"""
SELECT o.topic, o.partition, o.next_offset, o.latest_from
FROM {schema}.consumer_offsets o
JOIN unnest($2::text[], $3::int4[]) AS u(t, p) ON o.topic = u.t AND o.partition = u.p
WHERE o.consumer_group = $1 AND o.next_offset >= 0
"""


@dataclass(frozen=True, slots=True)
class Fence:
    """What ``fence`` found: the stored next offset of each partition (None: none stored), and
    the id of the transaction holding the locks (``txid_current()``, epoch-qualified: it does
    not wrap; None when there were no partitions, so no query)."""

    stored: dict[TopicPartition, int | None]
    xact: int | None


async def fence(conn: Any, schema: str, group: str, partitions: Iterable[TopicPartition]) -> Fence:
    """Lock the partitions' offset rows; what is stored, and the transaction's id (a column of
    the same statement: no round trip of its own)."""
    tps = sorted({(str(t), int(p)) for t, p in partitions})
    if not tps:
        return Fence({}, None)
    rows = await conn.fetch(_fence_sql(schema), group, [t for t, _ in tps], [p for _, p in tps])
    stored = {
        (r["topic"], r["partition"]): (
            None if r["next_offset"] == NONE_STORED else r["next_offset"]
        )
        for r in rows
    }
    return Fence(stored, int(rows[0]["xact"]) if rows else None)


async def store(
    conn: Any,
    schema: str,
    group: str,
    offsets: Mapping[TopicPartition, int],
    latest_from: Mapping[TopicPartition, int | None] | None = None,
) -> None:
    """Set the next offsets of ``offsets``' partitions (their rows exist: ``fence`` made them)
    and their ``latest_from`` (absent: NULL, nothing pending)."""
    if not offsets:
        return
    tps = sorted(offsets)
    pending = latest_from or {}
    await conn.execute(
        _store_sql(schema),
        group,
        [t for t, _ in tps],
        [p for _, p in tps],
        [offsets[tp] for tp in tps],
        [pending.get(tp) for tp in tps],
    )


async def clear_latest_from(
    conn: Any, schema: str, group: str, partitions: Iterable[TopicPartition]
) -> None:
    """Nothing pending any more for ``partitions`` (their tuples were just merged)."""
    tps = sorted(partitions)
    if tps:
        await conn.execute(_clear_sql(schema), group, [t for t, _ in tps], [p for _, p in tps])


@dataclass(frozen=True, slots=True)
class Stored:
    """A partition's stored offsets: the next one to write, and where pending latest_state
    tuples begin (None: none pending)."""

    next: int
    latest_from: int | None


async def load_stored(
    conn: Any, schema: str, group: str, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, Stored]:
    """The stored offsets of each of ``partitions`` that has them."""
    tps = sorted({(str(t), int(p)) for t, p in partitions})
    if not tps:
        return {}
    rows = await conn.fetch(_load_sql(schema), group, [t for t, _ in tps], [p for _, p in tps])
    return {(r["topic"], r["partition"]): Stored(r["next_offset"], r["latest_from"]) for r in rows}


async def load(
    conn: Any, schema: str, group: str, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, int]:
    """The stored next offset of each of ``partitions`` that has one (seek there on assign)."""
    stored = await load_stored(conn, schema, group, partitions)
    return {tp: s.next for tp, s in stored.items()}
