"""A connector's other charger path moved to another partition, on a worker that knows it.

``moved.restore_moved`` looks up the entities an engine has no state for. A connector that
reports by both charger paths (binary frames, T/CEC 102 pushes: two topics) has one state per
worker, created by the first frame of either path. When the other path's frames move to
another partition of their topic (partitions added) that this worker owns, the connector was
known already and nothing was looked up: that path's open alert stayed with the old owner and
its first frame here raised it a second time (a second ``raised`` message on the alerts
topic, merged in the database by ``alerts_one_open``).

So for a kind with several alert topics, each (entity, topic) is checked once while this
worker holds it (``Checked``, forgotten with the partitions lost and the entities dropped):
the batch's entities of a topic not checked for it yet, that the engine knows under another
topic (or that the batch's restore takes up by another topic's frame), are looked up by
their open alerts of this topic (``alerts.moves.open_places``); those stored under another
partition of the topic are adopted (``restore``: their open alerts and recent clears of that
topic, under the partition their frames come from now), and their rows move to it in the
batch's transaction with the other moves (``Moved.moves``). No window is replayed: the
connector's state, and its history, are here already. The steady state is one set
difference per topic and batch.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from alerts import AlertChange, RuleEngine, moves
from alerts.model import AlertRecord
from alerts.store import load_open
from ingest.pipeline.entities import BatchEntities

__all__ = ["Checked", "OtherPaths", "read_other_paths"]

log = logging.getLogger(__name__)

# topic -> the entities this worker checked for that topic's alerts since the assignment (or
# holds under that topic).
Checked = dict[str, set[str]]
_Key = tuple[str, str, str]  # (kind, entity, topic)


class OtherPaths:
    """What the read found: the alerts to adopt, and the entities checked per topic."""

    def __init__(self) -> None:
        self.records: dict[str, list[AlertRecord]] = {}  # kind -> records, moved already
        self.moves: dict[tuple[str, str], dict[str, int]] = {}  # (topic, kind) -> {id: part}
        self.checked: dict[str, set[str]] = {}

    def apply(self, engines: Mapping[str, RuleEngine], checked: Checked) -> list[AlertChange]:
        """Restore the adopted alerts; the checked entities are checked from now on."""
        out: list[AlertChange] = []
        for kind, records in self.records.items():
            try:
                out.extend(engines[kind].restore(records))
            except Exception:  # a bug must not stop the batch: raised again, merged, loudly
                log.exception("adopting the alerts of a connector's other path failed")
        for topic, ids in self.checked.items():
            checked.setdefault(topic, set()).update(ids)
        return out


def _candidates(
    found: BatchEntities,
    engines: Mapping[str, RuleEngine],
    kinds: Mapping[str, str],
    checked: Checked,
    seen: Mapping[tuple[str, str], tuple[str, int]],
    out: OtherPaths,
) -> dict[_Key, int]:
    """(kind, entity, topic) -> the partition of its first frame of that topic in the batch,
    for the entities to look up (the module docstring); records the others as checked."""
    paths = Counter(kinds.values())  # kind -> how many alert topics it has
    ask: dict[_Key, int] = {}
    for topic, t in found.topics.items():
        engine = engines.get(t.kind)
        if engine is None or paths[t.kind] < 2:
            continue
        new = set(t.timed_ids()).difference(checked.get(topic, ()))
        if not new:  # the steady state
            continue
        placed = engine.topics_of(new)
        firsts = t.first()
        for eid in new:
            where = seen.get((t.kind, eid))
            if (where is not None and where[0] == topic) or placed.get(eid) == topic:
                # Restored by its first frame's topic, or held under this one: this topic's
                # alerts are the ones it restored.
                out.checked.setdefault(topic, set()).add(eid)
            elif where is not None or eid in placed:
                ask[(t.kind, eid, topic)] = found.records[firsts[eid]].partition
    return ask


async def read_other_paths(
    conn: Any,
    found: BatchEntities,
    engines: Mapping[str, RuleEngine],
    kinds: Mapping[str, str],
    checked: Checked,
    seen: Mapping[tuple[str, str], tuple[str, int]],
) -> OtherPaths:
    """Read what ``apply`` adopts (``seen``: the entities the batch's restore looks up, by
    their first frame's (topic, partition)). Changes nothing: a failed read is retried."""
    out = OtherPaths()
    ask = _candidates(found, engines, kinds, checked, seen, out)
    if not ask:
        return out
    rows = await moves.open_places(conn, sorted(ask))
    moved: dict[tuple[str, str], dict[str, int]] = {}  # (kind, topic) -> {id: part}
    for r in rows:
        key = (r["entity_kind"], r["entity_id"], r["kafka_topic"])
        partition = ask.get(key)
        if partition is not None and r["kafka_partition"] not in (None, partition):
            moved.setdefault((key[0], key[2]), {})[key[1]] = partition
    for (kind, topic), parts in moved.items():
        records = await load_open(conn, entity_kind=kind, entity_ids=sorted(parts), topic=topic)
        out.records.setdefault(kind, []).extend(
            replace(rec, topic=topic, partition=parts[rec.entity_id])
            for rec in records
            if rec.topic in (None, topic)
        )
        out.moves.setdefault((topic, kind), {}).update(parts)
    for _kind, eid, topic in ask:
        out.checked.setdefault(topic, set()).add(eid)
    return out
