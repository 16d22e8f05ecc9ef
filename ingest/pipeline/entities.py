"""The entities of a batch's alert-topic frames and where they come from, found in one pass.

Two steps of a write need them: before the evaluation, the entities the engines have no
state for (``ingest.pipeline.moved.unknown``: moved here from another partition?); after it,
the placements to stamp in latest_state (``StorageSink._placements``: what the next
assignment's replay finds the entities by). Each used to walk every frame of the batch in
Python, on the worker's hot path (docs/performance.md), so the batch is walked once
(``entities_of``), kept on the batch (``Batch.alert_entities``: a retried write does not walk
it again), and each step derives its answer from that.

Vehicle frames are read column by column with C-level iterators (``map`` over attribute
getters, ``dict(zip(...))``), not a Python statement per frame; the tests against the
engine's entities and the stamped placements are dict-view comparisons, in C as well. A
charger's or a pack's frames go through ``subjects_of`` (its connectors, its pack code), a
frame at a time, as the engine reads them.

The two steps differ in what they take from an entity's frames, each as it needs:

* the moved lookup takes the entity's *first* (topic, partition) in the batch, by kind: the
  engine keeps an entity's state on the partition it was created with (``RuleEngine._entity``)
  and the restore creates it before the evaluation, under that partition. It counts only
  frames the engine evaluates: a vehicle frame without a time creates no state, so it needs
  no lookup;
* the stamp takes the entity's *last* partition, by (topic, kind): where its frames come
  from now, stamped unless it is stamped there already (an earlier frame of the batch on
  another partition is no placement to stamp). A vehicle frame without a time counts too:
  the vehicle's latest_state row, which the stamp updates, is there all the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, compress, filterfalse, repeat
from operator import attrgetter, eq, is_not
from typing import Any, Final, Protocol

from alerts.subjects import subjects_of
from ingest.pipeline.batch import Batch

__all__ = ["BatchEntities", "entities_of", "unstamped"]

Where = tuple[str, int]  # (topic, partition)

_TOPIC: Final = attrgetter("topic")
_PARTITION: Final = attrgetter("partition")
_VIN: Final = attrgetter("vin")
_VEHICLE: Final = attrgetter("vehicle")
_TS_MS: Final = attrgetter("ts_ms")


class Engine(Protocol):
    """What ``BatchEntities.unknown`` needs of ``alerts.RuleEngine``."""

    def unknown(self, entity_ids: Iterable[str]) -> set[str]: ...


@dataclass(slots=True, frozen=True)
class _Topic:
    """The frames about an entity of one topic of the batch, in batch order."""

    kind: str
    ids: list[str]  # the entity of each (a charger frame: one per connector it reports on)
    parts: list[int]  # its partition
    at: Sequence[int]  # its index in the batch (which topic's frame came first)
    timed: list[bool] | None  # whether the engine evaluates it (it has a time); None: all
    last: dict[str, int]  # entity -> the partition of its last frame

    def timed_ids(self) -> Iterable[str]:
        return self.last if self.timed is None else compress(self.ids, self.timed)

    def first(self) -> dict[str, int]:
        """Entity -> the batch index of its first frame with a time."""
        at: Iterable[int] = self.at
        ids: Iterable[str] = self.ids
        if self.timed is not None:
            ids, at = compress(ids, self.timed), compress(at, self.timed)
        # Backwards: the first frame's index is the one left.
        return dict(zip(reversed(list(ids)), reversed(list(at)), strict=True))


@dataclass(slots=True, frozen=True)
class BatchEntities:
    """A batch's entities on the alert topics; see the module docstring."""

    topics: dict[str, _Topic]
    records: Sequence[Any]  # the batch's: where an unknown entity's first frame comes from

    def unknown(self, kind: str, engine: Engine) -> dict[str, Where]:
        """Entity -> (topic, partition) of its first frame the engine evaluates, for the
        entities of ``kind`` that ``engine`` has no state for."""
        mine = [t for t in self.topics.values() if t.kind == kind]
        if not mine:
            return {}
        ids = mine[0].timed_ids() if len(mine) == 1 else chain(*(t.timed_ids() for t in mine))
        missing = engine.unknown(ids)
        if not missing:  # the steady state
            return {}
        # New entities, or moved ones: rarely many, so taken one by one.
        firsts = [t.first() for t in mine]
        out: dict[str, Where] = {}
        for eid in missing:
            rec = self.records[min(f[eid] for f in firsts if eid in f)]
            out[eid] = (rec.topic, rec.partition)
        return out

    def placed(self) -> Iterable[tuple[tuple[str, str], dict[str, int]]]:
        """((topic, kind), {entity: partition of its last frame}) of each topic."""
        return (((topic, t.kind), t.last) for topic, t in self.topics.items())


def entities_of(batch: Batch, kinds: Mapping[str, str]) -> BatchEntities:
    """``batch``'s entities (``kinds``: alert topic -> entity kind), walked on the first
    call and kept on the batch for the others."""
    found: BatchEntities | None = batch.alert_entities
    if found is None:
        found = batch.alert_entities = _walk(batch, kinds)
    return found


def unstamped(
    found: BatchEntities, placed: Mapping[str, Mapping[str, int]]
) -> dict[tuple[str, str], dict[str, int]]:
    """(topic, kind) -> {entity: partition} of ``found``'s entities whose last partition is
    not the one stamped (``placed``: topic -> {entity: partition stamped since the
    assignment}). The dicts are read, not changed: one may be the batch's own."""
    out: dict[tuple[str, str], dict[str, int]] = {}
    for (topic, kind), last in found.placed():
        stamped = placed.get(topic)
        if not stamped:
            new: dict[str, int] = last
        elif last.items() <= stamped.items():  # the steady state: one comparison in C
            continue
        else:
            # C-level: an (entity, partition) pair is in the view only with that partition.
            new = dict(filterfalse(stamped.items().__contains__, last.items()))
        if new:
            out[(topic, kind)] = new
    return out


def _walk(batch: Batch, kinds: Mapping[str, str]) -> BatchEntities:
    records, frames = batch.records, batch.frames
    # The builder counts each topic's frames (``Batch.decoded``): the topics without reading
    # every record, unless the counts do not cover the frames (a batch made otherwise).
    decoded = batch.decoded
    if sum(decoded.values()) == len(frames):
        names = {topic for topic, n in decoded.items() if n}
    else:
        names = set(map(_TOPIC, records))
    topics: dict[str, _Topic] = {}
    for topic in sorted(names):
        kind = kinds.get(topic)
        if kind is None:
            continue
        at: Sequence[int]
        if len(names) == 1:
            recs, objs, at = records, frames, range(len(frames))
        else:
            mask = list(map(eq, map(_TOPIC, records), repeat(topic)))
            recs, objs = list(compress(records, mask)), list(compress(frames, mask))
            at = list(compress(range(len(frames)), mask))
        if kind == "vehicle":
            topics[topic] = _vehicles(recs, objs, at)
        else:
            topics[topic] = _subjects(kind, recs, objs, at)
    return BatchEntities(topics, records)


def _vehicles(recs: Sequence[Any], frames: Sequence[Any], at: Sequence[int]) -> _Topic:
    """The vehicle topic's frames (``FrameRows``: its decoder's) about a vehicle: those with
    a vehicle row. ``all`` over the rows and times is the quick test that none lacks one
    (a row is a non-empty tuple, a time an int: false only when None, or a time of 0, which
    goes the exact way)."""
    ids = list(map(_VIN, frames))
    parts = list(map(_PARTITION, recs))
    if not all(map(_VEHICLE, frames)):
        rows = list(map(is_not, map(_VEHICLE, frames), repeat(None)))
        frames = list(compress(frames, rows))
        ids, parts = list(compress(ids, rows)), list(compress(parts, rows))
        at = list(compress(at, rows))
    timed = None
    if not all(map(_TS_MS, frames)):
        timed = list(map(is_not, map(_TS_MS, frames), repeat(None)))
        if all(timed):
            timed = None
    return _Topic("vehicle", ids, parts, at, timed, dict(zip(ids, parts, strict=True)))


def _subjects(kind: str, recs: Sequence[Any], frames: Sequence[Any], at: Sequence[int]) -> _Topic:
    """A charger's connectors, a pack's code (the engine's entity ids) with a time."""
    ids: list[str] = []
    parts: list[int] = []
    index: list[int] = []
    for i, rec, frame in zip(at, recs, frames, strict=True):
        for s in subjects_of(kind, (frame,)):
            if s[1] is not None:
                ids.append(s[0])
                parts.append(rec.partition)
                index.append(i)
    return _Topic(kind, ids, parts, index, None, dict(zip(ids, parts, strict=True)))
