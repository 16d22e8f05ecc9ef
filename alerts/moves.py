"""Entities whose frames moved to another partition of their topic, through asyncpg.

Partitions added to a topic make the producers' partitioners send some keys elsewhere: a
device's frames then come from another partition, owned by another worker, than the one
``latest_state`` places it on (``replay.stamp``) and its alerts belong to
(``alerts.kafka_partition``). The new owner was not given the entity's state on assignment
(the replay and ``load_open`` go by partition), so before evaluating a batch it looks up the
entities its engines have no state for (``places``: one query per batch, only when there are
such entities), restores those placed on another partition of the same topic, and moves their
alert rows to the partition their frames come from now (``move``, in the batch's
transaction) so the next owner of that partition restores them. ``places`` also serves the
old owner's check that drops its copy of a moved entity (ingest/pipeline/moved.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from alerts.replay import Connection
from alerts.store import REISSUE_HORIZON_S

__all__ = ["move", "places"]

# The placement, the latest frame time and how long ago it was stored (the database's clock,
# as the replay's cutoff), of each (kind, entity) that has a latest_state row.
_PLACES: Final = """
SELECT s.entity_kind, s.entity_id, s.kafka_topic, s.kafka_partition, s.ts,
       extract(epoch FROM now() - s.updated_at)::float8 AS age_s
FROM unnest($1::text[], $2::text[]) AS u(kind, id)
JOIN latest_state AS s ON s.entity_kind = u.kind AND s.entity_id = u.id
"""
# The rows load_open would read (open, or cleared within the reissue horizon) of that topic
# (or of none: stored before migration 0053), sorted by entity so that two writers lock the
# rows in the same order.
_MOVE: Final = """
UPDATE alerts AS a SET kafka_topic = $2, kafka_partition = u.p
FROM unnest($3::text[], $4::int[]) AS u(id, p)
WHERE a.entity_kind = $1 AND a.entity_id = u.id
  AND (a.kafka_topic = $2 OR a.kafka_topic IS NULL)
  AND (a.cleared_at IS NULL OR a.cleared_at >= now() - make_interval(secs => $5))
  AND (a.kafka_partition IS DISTINCT FROM u.p OR a.kafka_topic IS NULL)
"""


async def places(conn: Connection, entities: Sequence[tuple[str, str]]) -> list[Any]:
    """The latest_state rows of ``entities`` ((kind, id) pairs): entity_kind, entity_id,
    kafka_topic, kafka_partition, ts, age_s. An entity without a row is new: not returned."""
    if not entities:
        return []
    kinds = [k for k, _ in entities]
    ids = [i for _, i in entities]
    return list(await conn.fetch(_PLACES, kinds, ids))


async def move(
    conn: Connection, entity_kind: str, topic: str, partitions: Mapping[str, int]
) -> None:
    """Move the alerts of these entities to ``topic`` partition ``partitions[id]``."""
    if not partitions:
        return
    ids = sorted(partitions)
    await conn.execute(
        _MOVE, entity_kind, topic, ids, [partitions[i] for i in ids], float(REISSUE_HORIZON_S)
    )
