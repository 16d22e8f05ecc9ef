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

With ``storage.latest_interval_ms`` > 0 latest_state lags the stored rows: a device first seen
since its old owner's last merge has no row yet, though its open alert is stored (in the
transaction of the batch that raised it). ``open_places`` finds such entities by their open
alerts instead (index ``alerts_one_open``), so their alert is adopted, not raised again. So
it does, with any interval, for an entity whose one latest_state row names another topic (a
connector reporting by both charger paths: the row is the topic's that stamped last).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from alerts.replay import Connection
from alerts.store import REISSUE_HORIZON_S

__all__ = ["move", "open_places", "places", "reclaim"]

# The placement, the latest frame time and how long ago it was stored (the database's clock,
# as the replay's cutoff), of each (kind, entity) that has a latest_state row; the database's
# clock too (what bounds the window read past a lagging latest_state).
_PLACES: Final = """
SELECT s.entity_kind, s.entity_id, s.kafka_topic, s.kafka_partition, s.ts,
       extract(epoch FROM now() - s.updated_at)::float8 AS age_s, now() AS now
FROM unnest($1::text[], $2::text[]) AS u(kind, id)
JOIN latest_state AS s ON s.entity_kind = u.kind AND s.entity_id = u.id
"""
# The same columns from the entities' open alerts of the topic their frames come from now (the
# placement of the one last seen, its time as the latest frame's, stored just now: recent), for
# entities without a latest_state row of that topic. Another topic's alerts stay with that
# topic's owner (a charger reports by two paths): picked across topics, one seen later hid
# this topic's, and the entity was taken for new and its alert raised again. A row of no
# topic (before migration 0053) belongs to any topic of its kind (as in ``_MOVE``), after this
# topic's own.
_OPEN_PLACES: Final = """
SELECT DISTINCT ON (a.entity_kind, a.entity_id)
       a.entity_kind, a.entity_id, coalesce(a.kafka_topic, u.topic) AS kafka_topic,
       a.kafka_partition, a.last_seen_at AS ts, 0.0::float8 AS age_s, now() AS now
FROM unnest($1::text[], $2::text[], $3::text[]) AS u(kind, id, topic)
JOIN alerts AS a ON a.entity_kind = u.kind AND a.entity_id = u.id AND a.cleared_at IS NULL
  AND (a.kafka_topic = u.topic OR a.kafka_topic IS NULL)
ORDER BY a.entity_kind, a.entity_id, a.kafka_topic IS NULL, a.last_seen_at DESC
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

# A worker's check finds an entity it judges placed on another partition of its topic by a
# frame no newer than its own newest (``drop_moved``): the device came back before that
# worker dropped it, so it stamped nothing (it remembers having stamped its partition) and the
# other owner, whose placement stayed, saw no newer frame either. Both judged the device. Its
# placement and alert rows (as ``_MOVE``) go back to the worker's partition, provided the row
# is still what the check read (a merge or stamp since wins); the other owner's check then
# sees a newer frame elsewhere and drops its copy. When that owner holds the same frame time,
# it places the device back in turn once, and the first one drops its copy on finding it
# elsewhere again (``drop_moved``'s claims: else the two flipped it for ever). Returns the
# entities placed back.
_RECLAIM: Final = """
WITH placed AS (
    UPDATE latest_state AS s SET kafka_partition = u.p
    FROM unnest($3::text[], $4::int[], $5::int[], $6::timestamptz[]) AS u(id, p, was, ts)
    WHERE s.entity_kind = $1 AND s.entity_id = u.id AND s.kafka_topic = $2
      AND s.kafka_partition = u.was AND s.ts = u.ts
    RETURNING s.entity_id, s.kafka_partition AS p
), moved AS (
    UPDATE alerts AS a SET kafka_topic = $2, kafka_partition = placed.p
    FROM placed
    WHERE a.entity_kind = $1 AND a.entity_id = placed.entity_id
      AND (a.kafka_topic = $2 OR a.kafka_topic IS NULL)
      AND (a.cleared_at IS NULL OR a.cleared_at >= now() - make_interval(secs => $7))
      AND (a.kafka_partition IS DISTINCT FROM placed.p OR a.kafka_topic IS NULL)
)
SELECT entity_id FROM placed
"""


async def places(conn: Connection, entities: Sequence[tuple[str, str]]) -> list[Any]:
    """The latest_state rows of ``entities`` ((kind, id) pairs): entity_kind, entity_id,
    kafka_topic, kafka_partition, ts, age_s, now. An entity without a row (new, or not merged
    yet with a latest interval: ``open_places``) is not returned."""
    if not entities:
        return []
    kinds = [k for k, _ in entities]
    ids = [i for _, i in entities]
    return list(await conn.fetch(_PLACES, kinds, ids))


async def open_places(conn: Connection, entities: Sequence[tuple[str, str, str]]) -> list[Any]:
    """``places``' columns for those of ``entities`` ((kind, id, topic of its frames)) with an
    open alert of that topic, from the alert last seen (``ts``: its last_seen_at; ``age_s``:
    0): entities latest_state has no row for yet, or a row of another topic."""
    if not entities:
        return []
    kinds, ids, topics = (list(c) for c in zip(*entities, strict=True))
    return list(await conn.fetch(_OPEN_PLACES, kinds, ids, topics))


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


async def reclaim(
    conn: Connection, entity_kind: str, topic: str, rows: Mapping[str, tuple[int, int, Any]]
) -> list[str]:
    """Place these entities (id -> (this worker's partition, the one latest_state has, its
    ``ts`` as read)) and their alert rows back on this worker's partition of ``topic``,
    where the row is unchanged since; returns those placed back."""
    if not rows:
        return []
    ids = sorted(rows)
    got = await conn.fetch(
        _RECLAIM,
        entity_kind,
        topic,
        ids,
        [rows[i][0] for i in ids],
        [rows[i][1] for i in ids],
        [rows[i][2] for i in ids],
        float(REISSUE_HORIZON_S),
    )
    return [r["entity_id"] for r in got]
