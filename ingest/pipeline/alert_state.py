"""What a worker reads when partitions are assigned to it, before their first batch: the open
alerts of those partitions, their unpublished alerts-topic messages (``alerts_outbox``), and
the frames of the last rule window to replay (docs/alerts.md, "after a rebalance"). Read per
shard, from the database that holds each partition (``storage.shards``); everything is read
before anything is applied, so a failed read (retried with the partitions paused) changes
nothing in the rule engines.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from alerts import RuleEngine, outbox, replay
from alerts.model import AlertRecord
from alerts.replay_kinds import recent_objects
from alerts.store import load_open
from storage.errors import ErrorKind, classify

__all__ = ["AssignedState"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class AssignedState:
    """The alert state of newly assigned partitions, gathered shard by shard."""

    records: dict[str, list[AlertRecord]] = field(default_factory=dict)  # by entity kind
    unsent: list[tuple[int, outbox.OutboxRow]] = field(default_factory=list)  # (shard, row)
    recent: dict[tuple[str, str, int], list[Any]] = field(default_factory=dict)

    async def read(
        self,
        conn: Any,
        shard: int,
        partitions: Sequence[Any],
        topics: Mapping[str, Sequence[int]],
        alert_topics: Mapping[str, str],
        engines: Mapping[str, RuleEngine],
    ) -> None:
        """Add the state of ``partitions`` (TopicPartitions of ``shard``, whose database
        ``conn`` is); ``topics``: the alert topics being assigned (raw topic -> partitions)."""
        numbers_of = {
            t: sorted({tp.partition for tp in partitions if tp.topic == t}) for t in topics
        }
        for topic, numbers in numbers_of.items():
            kind = alert_topics[topic]
            if kind in engines and numbers:
                got = await load_open(conn, entity_kind=kind, partitions=numbers, topic=topic)
                # A row stored before topics were (0053) is this topic's from now on.
                got = [r if r.topic else replace(r, topic=topic) for r in got]
                self.records.setdefault(kind, []).extend(got)
        keys = sorted((t, p) for t, ps in numbers_of.items() for p in ps)
        self.unsent.extend((shard, row) for row in await outbox.pending(conn, keys))
        self.recent.update(await _recent(conn, partitions, alert_topics, engines))


async def _recent(
    conn: Any,
    partitions: Sequence[Any],
    alert_topics: Mapping[str, str],
    engines: Mapping[str, RuleEngine],
) -> dict[tuple[str, str, int], list[Any]]:
    """The replay's frames, per (kind, topic, partition). The database unreachable: raised (the
    partitions stay paused and it is retried); anything else (a bug, a schema surprise) must
    not stall them: the windowed rules then start without history, said loudly."""
    recent: dict[tuple[str, str, int], list[Any]] = {}
    try:
        for topic, kind in alert_topics.items():
            engine = engines.get(kind)
            parts = sorted({tp.partition for tp in partitions if tp.topic == topic})
            if engine is None or not parts:
                continue
            window_s = engine.rules.window_s
            if kind == "vehicle":
                got = await replay.recent_frames(conn, kind, topic, parts, window_s)
            else:
                got = await recent_objects(conn, kind, topic, parts, window_s)
            for partition, frames in got.items():
                recent.setdefault((kind, topic, partition), []).extend(frames)
    except Exception as exc:
        if classify(exc) is ErrorKind.TRANSIENT:  # unreachable, restarting, timed out
            raise
        log.exception("replay of the last rule window failed: windowed rules start blind")
        return {}
    return recent
