"""The ``alerts_outbox`` table (storage/migrations/0051_alerts_outbox.sql) through asyncpg.

``add`` runs in the batch's transaction with ``store.save_changes``: the alerts-topic records
of the batch's alert changes become durable exactly when the changes do. The pipeline
publishes them after the commit and ``delete``\\ s them once Kafka acknowledged them; ``pending``
finds those a crash left unpublished, to send again on assignment (at-least-once).
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


# Ids drawn first, so each record gets a known id in order (RETURNING does not promise order).
_IDS: Final = "SELECT nextval('alerts_outbox_id_seq') FROM generate_series(1, $1)"
_ADD: Final = """
INSERT INTO alerts_outbox (id, kafka_partition, msg_key, msg_value)
SELECT * FROM unnest($1::bigint[], $2::int[], $3::bytea[], $4::bytea[])
"""
_DELETE: Final = "DELETE FROM alerts_outbox WHERE id = ANY($1::bigint[])"
_PENDING: Final = """
SELECT id, kafka_partition, msg_key, msg_value FROM alerts_outbox
WHERE kafka_partition = ANY($1::int[]) OR kafka_partition IS NULL
ORDER BY id
"""


async def add(conn: Connection, records: Sequence[tuple[int | None, bytes, bytes]]) -> list[int]:
    """Insert (partition, key, value) records; returns their ids, in order."""
    if not records:
        return []
    ids = [int(r[0]) for r in await conn.fetch(_IDS, len(records))]
    parts = [r[0] for r in records]
    keys = [r[1] for r in records]
    values = [r[2] for r in records]
    await conn.execute(_ADD, ids, parts, keys, values)
    return ids


async def delete(conn: Connection, ids: Iterable[int]) -> None:
    """Forget records Kafka acknowledged."""
    ids = list(ids)
    if ids:
        await conn.execute(_DELETE, ids)


async def pending(conn: Connection, partitions: Iterable[int]) -> list[OutboxRow]:
    """Records of these partitions (and of none) not acknowledged yet, in send order."""
    rows = await conn.fetch(_PENDING, list(partitions))
    return [
        OutboxRow(r["id"], r["kafka_partition"], bytes(r["msg_key"]), bytes(r["msg_value"]))
        for r in rows
    ]
