"""The ``alerts_outbox`` table (storage/migrations/0051_alerts_outbox.sql) through asyncpg.

``add`` runs in the batch's transaction with ``store.save_changes``: the alerts-topic records
of the batch's alert changes become durable exactly when the changes do. The pipeline
publishes them after the commit and ``delete``\\ s them once Kafka acknowledged them; ``pending``
finds those a crash left unpublished, to send again on assignment (at-least-once).

A record belongs to the (topic, partition) of the frame that raised its alert (migration 0053),
also when a frame of another partition updated or cleared it: only
the owner of that partition sends it again, so two workers owning partition N of two topics
(chargers' binary and T/CEC topics) do not both send it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final, NamedTuple, Protocol

__all__ = ["OutboxRow", "add", "delete", "pending"]


class Connection(Protocol):
    """The part of ``asyncpg.Connection`` used here."""

    async def execute(self, query: str, *args: Any) -> str: ...

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...


class OutboxRow(NamedTuple):
    id: int
    partition: int | None
    key: bytes
    value: bytes
    topic: str | None = None  # None: written before 0053, or of no partition


# Ids drawn first, so each record gets a known id in order (RETURNING does not promise order).
_IDS: Final = "SELECT nextval('alerts_outbox_id_seq') FROM generate_series(1, $1)"
_ADD: Final = """
INSERT INTO alerts_outbox (id, kafka_topic, kafka_partition, msg_key, msg_value)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::int[], $4::bytea[], $5::bytea[])
"""
_DELETE: Final = "DELETE FROM alerts_outbox WHERE id = ANY($1::bigint[])"
# Rows of no topic (written before 0053) go by their partition number alone, as they did then.
_PENDING: Final = """
SELECT o.id, o.kafka_topic, o.kafka_partition, o.msg_key, o.msg_value
FROM alerts_outbox o
WHERE o.kafka_partition IS NULL
   OR (o.kafka_topic IS NULL AND o.kafka_partition = ANY($2::int[]))
   OR (o.kafka_topic, o.kafka_partition) IN (
        SELECT * FROM unnest($1::text[], $2::int[]))
ORDER BY o.id
"""


async def add(
    conn: Connection, records: Sequence[tuple[str | None, int | None, bytes, bytes]]
) -> list[int]:
    """Insert (topic, partition, key, value) records; returns their ids, in order."""
    if not records:
        return []
    ids = [int(r[0]) for r in await conn.fetch(_IDS, len(records))]
    topics, parts, keys, values = (list(c) for c in zip(*records, strict=True))
    await conn.execute(_ADD, ids, topics, parts, keys, values)
    return ids


async def delete(conn: Connection, ids: Iterable[int]) -> None:
    """Forget records Kafka acknowledged."""
    ids = list(ids)
    if ids:
        await conn.execute(_DELETE, ids)


async def pending(conn: Connection, sources: Iterable[tuple[str, int]]) -> list[OutboxRow]:
    """Records of these (topic, partition)s (and of none) not acknowledged yet, in send order."""
    pairs = list(sources)
    rows = await conn.fetch(_PENDING, [t for t, _ in pairs], [p for _, p in pairs])
    return [
        OutboxRow(
            r["id"],
            r["kafka_partition"],
            bytes(r["msg_key"]),
            bytes(r["msg_value"]),
            r["kafka_topic"],
        )
        for r in rows
    ]
