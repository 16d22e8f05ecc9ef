"""Bounded-lag ``latest_state``: the newest tuple per entity of committed frames, merged later.

Merging latest_state with every batch costs 3.5-5 µs of database time per entity per batch,
about one more table (docs/performance.md, issue 12). With ``storage.latest_interval_ms`` > 0
the writer keeps, per (topic, partition), in memory, the newest value tuple of each entity of
the frames already committed but not yet merged, and merges them inside that partition's
write transaction once the interval has passed (or the set holds ``cap`` entities), when the
partition is revoked and on a graceful stop (``StorageWriter.flush_latest``).

A crash loses the memory, not the tuples: every write transaction also stores, beside the
partition's next offset, ``latest_from`` - the first Kafka offset whose tuple is still
pending (NULL: none). A worker assigned a partition whose ``latest_from`` is below the stored
offset reads that range again only to refill this set (``refill``): no rows, no alerts.

The merge of a partition's set also records in ``latest_state.kafka_topic/_partition`` where
its entities' frames are read from (the alert replay's placement, alerts/replay.py), for the
entities this writer has not placed there since it got the partition (``placements``): once
per entity per assignment, with the merge, instead of the sink's stamp with every batch - a
stamp before the merge finds no row for a new entity and was tried again with each batch
until the merge (issue 12). Recorded only where the merged tuple is the entity's newest stored
time (``latest_merge.stamp``): an older merge leaves another partition's newer placement.

Newest = greatest frame time, as the merge's ``WHERE stored.ts < new.ts``: vehicles keep their
newest frame's tuple (as in one batch: latest_state's vehicle merge takes the newest row per
VIN), one per entity per partition. Connectors and packs keep a tuple per frame time (rows
of one time merged as ``latest_kinds.merge_newest`` merges them; none whose every value newer
ones hold: at most one per column), merged at the merge as one batch's rows are: only those
newer than the stored state (``latest_kinds.upsert``). Their tuples give what merging with
every batch gives: reports of one time in one batch merged (a pack's place going with its
stage), a later batch's only when newer than the entity's newest tuple (``_after_batches``:
a connector's report of a second already here is a duplicate in its tables, which keep the
first), and a pack's last change of stage kept (``_drop_covered``); another partition's set,
merged in the same transaction, is no later batch: its tuples go in time order
(``Delta.combine``). Merged here into one tuple, a late frame's values filled the newer
tuple's empty columns and then overwrote a stored state newer than that late frame (a
connector's ``connected_vin`` going back to the vehicle before).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from contract.battery import PackFrameRows
from contract.charger import ChargerRows
from contract.rows import FrameRows, VehicleRow
from storage.latest_kinds import (
    BATTERY,
    CHARGER,
    _last_non_null,
    _pair_of,
    _paired,
    _time,
    battery_values,
    charger_values,
)
from storage.offsets import OffsetRange, TopicPartition

__all__ = [
    "DEFAULT_CAP",
    "Delta",
    "PartitionLatest",
    "PendingLatest",
    "Placements",
    "VehicleTuple",
]

# Early merge past this many entities in one partition's set: bounds memory (a tuple is a few
# hundred bytes) and the size of one merge statement.
DEFAULT_CAP: Final = 200_000

# A vehicle's pending state: (frame time ms, its row, its native COPY tuple or None).
VehicleTuple = tuple[int, VehicleRow, bytes | None]
Values = tuple[Any, ...]  # a connector's or pack's latest_state values, ts first
# An entity's pending tuples, one per frame time, in time order; none that newer ones cover
Timeline = list[Values]
# entity kind -> {entity id: (topic, partition)}: the placements a merge records
Placements = dict[str, dict[str, TopicPartition]]
# (leader, follower) positions of a kind's paired columns (latest_kinds.KindLatest.paired)
Pair = tuple[int, int] | None
# A pack's place goes with its stage: its tuples are merged and kept with the pair in mind
_PACK_PAIR: Final = _pair_of(BATTERY)


@dataclass(slots=True)
class Delta:
    """The latest tuples of one partition: a batch's (before its commit) or the pending set."""

    vehicles: dict[str, VehicleTuple] = field(default_factory=dict)
    chargers: dict[str, Timeline] = field(default_factory=dict)
    packs: dict[str, Timeline] = field(default_factory=dict)
    first: int | None = None  # the smallest Kafka offset whose tuple is here

    def __len__(self) -> int:
        return len(self.vehicles) + len(self.chargers) + len(self.packs)

    def put_vehicle(self, vin: str, entry: VehicleTuple) -> None:
        old = self.vehicles.get(vin)
        # strictly newer, as the merge's ``s.ts < u.ts``: a frame of the same time keeps the first
        if old is None or entry[0] > old[0]:
            self.vehicles[vin] = entry

    @staticmethod
    def put_values(
        into: dict[str, Timeline], entity: str, values: Values, pair: Pair = None
    ) -> None:
        """Add one batch's tuple (a batch's own rows: a late one is sorted in, one of a time
        already there merged into it); ``pair``: the kind's paired columns."""
        old_rows = into.get(entity)
        if old_rows is None:
            into[entity] = [values]
            return
        # A new list, never the old one changed: sets share timelines (``union``).
        rows = list(old_rows)
        for j, old in enumerate(rows):
            if old[0] == values[0]:  # same time: the later one last, as merge_newest's sort
                rows[j] = _one_time([old, values], pair)
                break
        else:
            rows.append(values)
            if values[0] < rows[-2][0]:
                rows.sort(key=_time)  # a late frame: the timeline stays in time order
        _drop_covered(rows, pair)
        into[entity] = rows

    @staticmethod
    def items(of: dict[str, Timeline]) -> list[tuple[str, Values]]:
        """``(entity, values)`` per pending tuple: what ``latest_kinds.upsert`` takes."""
        return [(entity, values) for entity, rows in of.items() for values in rows]

    def absorb(self, other: Delta) -> None:
        """Take ``other``'s tuples, those of later batches of the same partition (newest wins,
        as above; a pack's only when newer than its newest tuple here, ``_after_batches``)."""
        self._take(other, later=True)

    def combine(self, other: Delta) -> None:
        """Take tuples that are no later batch of the ones here: another partition's, for one
        merge of several partitions' sets (the due partitions of a batch, a revocation's, a
        stop's, the idle merge's), or more of the same batch (``PendingLatest.refill``'s
        polls). A pack's tuples go in time order among its tuples here (``put_values``),
        whichever partition comes first. Taken as later batches,
        a pack's report on one partition older than its newest on another was thrown away
        (stage 2 at a station on partition 4 at t=10, a SOC alone on partition 5 at t=20: the
        stage and station never stored), or kept, by the order the partitions came in."""
        self._take(other, later=False)

    def _take(self, other: Delta, later: bool) -> None:
        mine = self.vehicles
        if not mine:
            self.vehicles = dict(other.vehicles)
        else:
            get = mine.get  # once per entity per batch: no method call per entry
            for vin, entry in other.vehicles.items():
                old = get(vin)
                if old is None or entry[0] > old[0]:
                    mine[vin] = entry
        kinds: tuple[tuple[dict[str, Timeline], dict[str, Timeline], Pair], ...] = (
            (self.chargers, other.chargers, None),
            (self.packs, other.packs, _PACK_PAIR),
        )
        for timelines, theirs, pair in kinds:
            if not timelines:
                timelines.update(theirs)  # shared: a timeline is never changed in place
                continue
            for entity, rows in theirs.items():
                held = timelines.get(entity)
                if held is None:
                    timelines[entity] = rows
                elif later:
                    # A connector's too: a later batch's report of a time already here is a
                    # duplicate in the tables (the first stored stays), so latest_state keeps
                    # the first as well, as merging with every batch does (WHERE stored.ts <
                    # new.ts); merged in, a status 255 of that second showed over the 3 stored.
                    _after_batches(timelines, entity, held, rows, pair)
                else:
                    for values in rows:
                        self.put_values(timelines, entity, values, pair)
        if other.first is not None and (self.first is None or other.first < self.first):
            self.first = other.first

    def union(self, other: Delta) -> Delta:
        """A new set: this one's tuples, then ``other``'s (neither changes)."""
        out = Delta(dict(self.vehicles), dict(self.chargers), dict(self.packs), self.first)
        out.absorb(other)
        return out


def _one_time(rows: list[Values], pair: Pair) -> Values:
    """Tuples of one frame time of one batch (in arrival order) as one: per column the later
    value, and the pair's follower as ``latest_kinds._paired`` leaves it over the same rows -
    a pack's stage changed at that time empties its place (``CLEARED``), as the per-batch
    merge of those rows does, instead of one report's stage beside the other's site."""
    merged = _last_non_null(rows)
    return merged if pair is None else _paired(merged, rows, pair)


def _after_batches(
    into: dict[str, Timeline], entity: str, mine: Timeline, later: Timeline, pair: Pair
) -> None:
    """A pack's or connector's tuples of later batches after ``mine``: only those newer than
    every tuple here. Merging with every batch, the first of two batches stores its newest
    time and the second one's reports of that time or older leave latest_state as it is
    (``WHERE stored.ts < new.ts``); merged here, a report of the same time mixed its stage with
    the other's site, and a late one took part in the pairing of place with stage; a
    connector's status of the same second showed over the one its table kept (the first)."""
    newest = mine[-1][0]
    newer = [v for v in later if v[0] > newest]
    if newer:
        rows = [*mine, *newer]  # a new list: timelines are shared
        _drop_covered(rows, pair)
        into[entity] = rows


def _drop_covered(rows: Timeline, pair: Pair = None) -> None:
    """Drop from ``rows`` (in time order) each tuple whose every value (but its time) newer
    tuples also hold: whenever it takes part in a merge (newer than the stored state) they do
    too, so it can never give a column. Bounds a timeline by the number of columns, however
    many reports an interval holds (a full report, the usual one, leaves one tuple).

    ``pair`` (a pack's stage and place): the leader's value is not all a tuple gives - a
    change of it empties the follower (``latest_kinds._paired``). The newest tuple of another
    leader than the newest one is kept: the change after it, inside the merged tuples, clears
    the place the stored state had (a pack at station A taken into a vehicle and back to a
    station without a site: no site known, not A again). Older tuples' leader and follower can
    never matter (that change comes after them whenever they take part): only their other
    columns may keep them. At most one tuple more than without the pair."""
    if len(rows) < 2:
        return
    covered: set[int] = set()
    kept: list[Values] = []
    newest = None  # the newest tuple's leader (tuples without one say nothing of it)
    changed = False  # the newest tuple of another leader is kept already
    for values in reversed(rows):
        held = {j for j in range(1, len(values)) if values[j] is not None}
        change = False
        if pair is not None and (leader := values[pair[0]]) is not None:
            if newest is None:
                newest = leader
            elif changed:
                held.difference_update(pair)
            elif leader != newest:
                changed = change = True
        if change or not kept or not held <= covered:
            kept.append(values)
            covered |= held
    if len(kept) < len(rows):
        kept.reverse()
        rows[:] = kept


def collect(frames: Iterable[Any], first: int | None) -> Delta:
    """The latest tuples of ``frames`` (one partition's, in offset order); ``first``: the
    offset to replay from to find them again (the batch's start)."""
    d = Delta()
    vehicles = d.vehicles
    statuses: list[Any] = []
    telemetry: list[Any] = []
    packs: list[Any] = []
    for f in frames:
        if type(f) is FrameRows:  # the hot path: one identity test per frame
            v = f.vehicle
            if v is None:
                continue
            ts = f.ts_ms or 0
            old = vehicles.get(f.vin)
            if old is None or ts > old[0]:
                copy = f.copy
                vehicles[f.vin] = (ts, v, copy[0] if copy is not None else None)
        elif isinstance(f, ChargerRows):
            statuses += f.statuses
            telemetry += f.telemetry
        elif isinstance(f, PackFrameRows) and f.telemetry is not None:
            packs.append(f.telemetry)
    if statuses or telemetry:
        for entity, values in charger_values(statuses, telemetry):
            Delta.put_values(d.chargers, entity, values)
    for entity, values in battery_values(packs):
        Delta.put_values(d.packs, entity, values, _PACK_PAIR)
    if len(d):
        d.first = first
    return d


@dataclass(slots=True)
class PartitionLatest:
    """One partition's pending set and what the writer knows of its stored offsets."""

    pending: Delta = field(default_factory=Delta)
    # the next offset stored with the last commit that this set accounts for (None: unknown)
    next: int | None = None
    merged_at: float = field(default_factory=time.monotonic)
    written_at: float = float("-inf")  # the last commit of a batch of this partition
    version: int = 0  # bumped whenever ``pending`` changes
    refill_until: int | None = None  # records below: committed already, refill only
    seek_from: int | None = None  # the assignment's seek (latest_from), taken once


class PendingLatest:
    """The pending sets of the partitions one writer writes; see the module docstring.

    ``interval_s`` 0: nothing waits (the writer merges with every batch, as before this set
    existed); only tuples refilled after a crash pass through here, merged with the next batch.
    """

    def __init__(self, interval_s: float, cap: int = DEFAULT_CAP) -> None:
        if interval_s < 0 or cap < 1:
            raise ValueError("latest interval must be >= 0 and the cap >= 1")
        self.interval_s = interval_s
        self.cap = cap
        self.parts: dict[TopicPartition, PartitionLatest] = {}
        # Whether the merges record the placements of an entity kind: they serve only the
        # alert replay, so a sink without a rule engine for the kind turns them off.
        self.placing: Callable[[str], bool] = lambda kind: True
        # The placements recorded in latest_state by this writer's committed merges since the
        # assignment, per partition (a revoke or a fence drops whole partitions, with no scan
        # of the others: ``forget`` runs per fenced write) and per entity (the partition it
        # is placed on now: an entity that moved is moved out of its old partition's set).
        self._placed: dict[TopicPartition, dict[str, set[str]]] = {}  # tp -> kind -> ids
        self._where: dict[str, dict[str, TopicPartition]] = {}  # kind -> id -> tp

    @property
    def bounded(self) -> bool:
        return self.interval_s > 0

    def part(self, tp: TopicPartition) -> PartitionLatest:
        p = self.parts.get(tp)
        if p is None:
            p = self.parts[tp] = PartitionLatest()
        return p

    def entities(self) -> int:
        return sum(len(p.pending) for p in self.parts.values())

    # -- in a write transaction -----------------------------------------------------------------
    def batch_deltas(
        self,
        frames: Sequence[Any],
        kept: Sequence[int],
        sources: Sequence[TopicPartition],
        ranges: dict[TopicPartition, OffsetRange],
        kafka_offsets: Sequence[int] | None,
    ) -> dict[TopicPartition, Delta]:
        """The latest tuples of a batch's stored frames, per partition (not applied yet)."""
        if len(ranges) == 1:  # one partition (a lane's batch): no grouping pass per frame
            ((tp, rng),) = ranges.items()
            fs = frames if len(kept) == len(frames) else [frames[i] for i in kept]
            if not fs:
                return {}
            start = rng.start
            if start is None:
                start = kafka_offsets[kept[0]] if kafka_offsets is not None else 0
            return {tp: collect(fs, start)}
        per: dict[TopicPartition, list[Any]] = {}
        firsts: dict[TopicPartition, int] = {}
        for i in kept:
            tp = sources[i]
            got = per.get(tp)
            if got is None:
                got = per[tp] = []
                if kafka_offsets is not None:
                    firsts[tp] = kafka_offsets[i]
            got.append(frames[i])
        out: dict[TopicPartition, Delta] = {}
        for tp, fs in per.items():
            start = ranges[tp].start
            out[tp] = collect(fs, start if start is not None else firsts.get(tp, 0))
        return out

    def due(self, tp: TopicPartition, delta: Delta | None, now: float) -> bool:
        """Whether ``tp``'s set (with ``delta``) is to be merged in this transaction."""
        p = self.parts.get(tp)
        held = 0 if p is None else len(p.pending)
        if not self.bounded:
            return held > 0  # refilled tuples only: merged with the first batch
        if held == 0 and not delta:
            return False
        if held + (len(delta) if delta is not None else 0) >= self.cap:
            return True
        return p is None or now - p.merged_at >= self.interval_s

    def to_merge(self, tp: TopicPartition, delta: Delta | None) -> Delta:
        p = self.parts.get(tp)
        base = p.pending if p is not None else Delta()
        return base.union(delta) if delta is not None else base

    def placements(self, tp: TopicPartition, merging: Delta, vehicle_kind: str) -> Placements:
        """The entities of ``tp``'s set being merged whose placement is not recorded yet."""
        placed = self._placed.get(tp, {})
        out: Placements = {}
        for kind, ids in (
            (vehicle_kind, merging.vehicles),
            (CHARGER.kind, merging.chargers),
            (BATTERY.kind, merging.packs),
        ):
            if not ids or not self.placing(kind):
                continue
            have = placed.get(kind)
            new = dict.fromkeys(ids, tp) if not have else {e: tp for e in ids if e not in have}
            if new:
                out[kind] = new
        return out

    def placed_on(self, tp: TopicPartition) -> dict[str, set[str]]:
        """The entities placed on ``tp`` by this writer since the assignment, per kind."""
        return self._placed.get(tp, {})

    def latest_from(self, tp: TopicPartition, delta: Delta | None) -> int | None:
        """What ``consumer_offsets.latest_from`` of ``tp`` holds after a commit without merge."""
        p = self.parts.get(tp)
        sets = (p.pending if p is not None else None, delta)
        firsts = [d.first for d in sets if d is not None and d.first is not None]
        return min(firsts) if firsts else None

    # -- after the commit -----------------------------------------------------------------------
    def committed(
        self,
        deltas: dict[TopicPartition, Delta],
        merged: Iterable[TopicPartition],
        nexts: dict[TopicPartition, int],
        now: float,
        placed: Placements | None = None,
        began: dict[TopicPartition, PartitionLatest | None] | None = None,
    ) -> None:
        """A write committed: ``merged`` partitions' sets are in latest_state (and the
        ``placed`` placements recorded), the others keep their batch's tuples; ``nexts`` is
        what the commit stored. ``began``: each partition's set when the transaction began; a
        partition whose set is not that one any more went meanwhile (lost, fenced): left
        alone - the stored ``latest_from`` covers its tuples for the next owner."""
        gone: set[TopicPartition] = set()
        if began is not None:
            gone = {tp for tp, p in began.items() if p is not None and self.parts.get(tp) is not p}
        done = set(merged)
        for tp, nxt in nexts.items():
            if tp in gone:
                continue
            p = self.part(tp)
            p.next = nxt
            p.written_at = now
            if tp in done:
                p.pending = Delta()
                p.merged_at = now
                p.version += 1
            else:
                delta = deltas.get(tp)
                if delta:
                    p.pending.absorb(delta)
                    p.version += 1
        self.mark_placed(placed, skip=gone)

    def mark_placed(self, placed: Placements | None, skip: Collection[TopicPartition] = ()) -> None:
        """Placements a committed transaction recorded, but those on partitions in ``skip``
        (gone while it ran: placed again by whoever owns them next)."""
        for kind, entities in (placed or {}).items():
            where = self._where.setdefault(kind, {})
            for entity, tp in entities.items():
                if tp in skip:
                    continue
                old = where.get(entity)
                if old == tp:
                    continue
                if old is not None:  # moved: no longer placed on the old partition
                    self._placed.get(old, {}).get(kind, set()).discard(entity)
                where[entity] = tp
                self._placed.setdefault(tp, {}).setdefault(kind, set()).add(entity)

    def unplace(self, kind: str, entities: Iterable[str]) -> None:
        """Entities whose recorded placement another writer changed since (a device whose
        frames moved to another partition, whose alert state the sink dropped): recorded again
        by their partition's next merge if their frames come back to it. Kept, the merge took
        them for placed there and latest_state kept the other partition (the alert replay and
        the other owner's drop check go by it)."""
        where = self._where.get(kind)
        if not where:
            return
        for entity in entities:
            tp = where.pop(entity, None)
            if tp is not None:
                self._placed.get(tp, {}).get(kind, set()).discard(entity)

    def forget(self, tps: Iterable[TopicPartition]) -> None:
        """Partitions no longer this writer's (revoked, fenced): their sets go, and their
        placements (a later owner may have moved the entities; placed again if they come
        back). Costs the forgotten partitions' entities only."""
        for tp in tps:
            self.parts.pop(tp, None)
            for kind, entities in self._placed.pop(tp, {}).items():
                where = self._where.get(kind, {})
                for entity in entities:
                    if where.get(entity) == tp:
                        del where[entity]

    # -- assignment and refill ------------------------------------------------------------------
    def assigned(self, tp: TopicPartition, next_offset: int, latest_from: int | None) -> None:
        """The stored offsets of a partition just assigned; a ``latest_from`` below the
        offset means tuples were pending when the last owner stopped (crash): refill them."""
        p = self.parts[tp] = PartitionLatest(next=next_offset)
        if latest_from is not None and latest_from < next_offset:
            p.refill_until = next_offset
            p.seek_from = latest_from
            p.pending.first = latest_from

    def refill(self, tp: TopicPartition, frames: Iterable[Any]) -> None:
        """Tuples of committed frames read again after a crash (offset order), one poll's
        records at a time. The range is read as one batch (docs/storage.md), so each poll's
        tuples are more of that batch (``Delta.combine``: in time order, a pack's reports of
        one time merged as one batch's rows), not a later batch: taken as one, where the
        consumer's polls happened to cut the range decided what latest_state got (a pack's
        report of a time whose other report came in the poll before was thrown away, and
        its station came back though it was taken into a vehicle at that time). The set holds
        the range's tuples only while the refill runs: it starts empty (``assigned``) and the
        partition's next batch follows the range. Memory: a set's, as before, not the
        frames."""
        p = self.part(tp)
        first = p.pending.first
        p.pending.combine(collect(frames, first))
        p.pending.first = first
        p.version += 1

    def stale(self, now: float, after_s: float) -> list[TopicPartition]:
        """Partitions with tuples that waited ``after_s`` since their last merge and had no
        batch for ``after_s`` - interval (the keeper's tick): idle ones. A partition still
        receiving batches merges with its next one (its interval has passed); merged beside
        it, in a transaction of its own, the set held the partition's consumer_offsets row
        while its lane's next batch waited for it (issue 12: the fence's lock waits)."""
        quiet = after_s - self.interval_s
        return [
            tp
            for tp, p in self.parts.items()
            if len(p.pending) and now - p.merged_at >= after_s and now - p.written_at >= quiet
        ]
