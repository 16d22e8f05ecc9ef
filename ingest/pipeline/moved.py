"""Entities whose frames moved to another partition of their topic (partitions added to it).

On assignment a worker restores the state of the entities latest_state places on its
partitions and the alerts stored with them (ingest/pipeline/alert_state.py). When partitions
are added to a topic, the producers' partitioners send some devices to other partitions: the
worker that owns the new one has no state for such a device, and without it would raise its
open alert a second time and judge its history rules without their window. So, per batch,
before its evaluation (``restore_moved``):

* the entities of the batch the engines have no state for are looked up in latest_state, one
  query for all of them (none when every entity is known: the steady state costs nothing, a
  new device one lookup in its first batch); those whose row names another topic (a
  connector on both charger paths: one row, the topic that stamped last) and, with a latest
  interval, those without a row are looked up by their open alerts of the batch's topic
  (``alerts.moves.open_places``: the old owner's merge may not have run since their first
  frame), and their window read up to the lag past the row's time (``_upto``);
* those placed on another partition of the same topic are restored from the database as on
  assignment: the frames of their last rule window (``engine.warm``), then their open alerts
  and recent clears (``engine.restore``), under the partition their frames come from now;
* their alert rows are moved to that partition in the batch's transaction
  (``alerts.moves.move``), next to a stamp of the new placement, so the partition's next
  owner restores them.

A placement on another *topic* is not a move: a charger's connector reporting by both paths
(binary profile and T/CEC 102) is judged by each topic's owner (docs/alerts.md). A connector
this worker knows by one path whose other path moved here is looked up by that path's alerts
all the same (ingest/pipeline/moved_paths.py).

The old owner keeps its copy, which gets no more frames, so nothing would ever clear it (its
``alerts_open`` gauge would count the alert forever). ``drop_moved``, from housekeeping,
looks up where the entities with an open alert are placed now and forgets those placed on
another partition of their topic by a newer frame than their engine has seen. Those placed
there by a frame no newer (the device came back before this check dropped it: the worker,
which still had it, restored and stamped nothing) are placed back on its partition with their
alert rows (``alerts.moves.reclaim``): the other owner's check then drops its copy.

Placed elsewhere at exactly its watermark, both owners may hold that frame time (a resend or a
reissue on the new partition, warmed by its owner's restore, or a clock stepped back): each
would find the other's placement no newer and place the device back, for ever (the alert
counted by both, its row's partition flipping at every check). So a worker places a device
back at its watermark only once (``claims``): found elsewhere again at that same time, another
owner placed it since, and this one drops its copy. Whoever placed it last keeps it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Final

from alerts import AlertChange, RuleEngine, moves, replay
from alerts.model import AlertRecord
from alerts.replay_kinds import entity_objects
from alerts.store import load_open
from ingest.pipeline.batch import Batch
from ingest.pipeline.entities import entities_of
from ingest.pipeline.moved_paths import Checked, OtherPaths, read_other_paths
from storage.errors import ErrorKind, classify

__all__ = ["CHECK_TIMEOUT_S", "MOVED_CHECK_S", "Claims", "Moved", "drop_moved", "restore_moved"]

log = logging.getLogger(__name__)

# The old owner's check is housekeeping: a database slow to answer skips a turn.
CHECK_TIMEOUT_S: Final = 5.0
# How often the old owner checks (StorageSink.drop_moved): its copy counts in the open-alerts
# gauge until then, and the check's query covers every entity with an open alert.
MOVED_CHECK_S: Final = 10.0

_Where = tuple[str, int]  # (topic, partition)
# (kind, entity) -> the watermark at which this worker placed it back on its partition
# (``drop_moved``), kept by the caller from one check to the next.
Claims = dict[tuple[str, str], float]


@dataclass(slots=True)
class Moved:
    """What a batch's restore of moved entities leaves for the batch's transaction."""

    changes: list[AlertChange] = field(default_factory=list)  # of ``restore`` (rules removed)
    moves: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)  # (topic, kind)

    async def apply(self, conn: Any, fenced: set[tuple[str, int]]) -> None:
        """Move the restored entities' alert rows to their new partitions and stamp the new
        placement in latest_state (in the batch's transaction), but for the ``fenced``
        partitions (another consumer wrote them: not ours any more, as their alert changes).
        Stamped here whatever the sink and the writer remember having stamped: a device that
        comes back to a partition it left was stamped there before it left, and without a
        stamp now latest_state kept the other partition, whose owner never dropped its copy
        of the alert (two workers judged the device)."""
        for (topic, kind), partitions in self.moves.items():
            mine = {e: p for e, p in partitions.items() if (topic, p) not in fenced}
            await moves.move(conn, kind, topic, mine)
            await replay.stamp(conn, kind, topic, mine)


def unknown(
    batch: Batch, engines: Mapping[str, RuleEngine], kinds: Mapping[str, str]
) -> dict[tuple[str, str], _Where]:
    """(kind, entity) -> where its first frame in ``batch`` comes from, for the entities
    with something to evaluate that their kind's engine has no state for. The batch's
    entities are walked once, shared with the placement stamp (ingest/pipeline/entities.py);
    the test against the engine is a set difference, nothing per frame."""
    found = entities_of(batch, kinds)
    out: dict[tuple[str, str], _Where] = {}
    for kind, engine in engines.items():
        out.update(((kind, eid), where) for eid, where in found.unknown(kind, engine).items())
    return out


async def restore_moved(
    conn: Any,
    batch: Batch,
    engines: Mapping[str, RuleEngine],
    kinds: Mapping[str, str],
    lag_s: float = 0.0,
    checked: Checked | None = None,
) -> Moved:
    """Restore the state of ``batch``'s entities that moved here from another partition of
    their topic (see the module docstring). Everything is read before anything is applied:
    a failed read (raised: the batch is retried) changes no engine. ``lag_s``: how far
    latest_state may lag the stored rows (bounded-lag latest_state, as the assignment's
    ``Replay.lag_s``), 0 when it is merged with every batch. ``checked``: the (entity, topic)
    pairs looked up already for a connector's other path (moved_paths), kept by the caller;
    None: not looked up."""
    seen = unknown(batch, engines, kinds)
    others = None
    if checked is not None:
        found = entities_of(batch, kinds)
        others = await read_other_paths(conn, found, engines, kinds, checked, seen)
    if not seen:
        return _adopt(Moved(), others, engines, checked)
    by_kind: dict[str, list[Any]] = {}
    out = Moved()
    placed = await moves.places(conn, list(seen))
    rows = [r for r in placed if r["kafka_topic"] == seen[(r["entity_kind"], r["entity_id"])][0]]
    have = {(r["entity_kind"], r["entity_id"]) for r in rows}
    # latest_state has one row per entity, naming the topic that stamped it last: a connector
    # reporting by both charger paths may have the other topic's. Its alert of this topic is
    # then found by its open alerts, as an entity without a row (else taken for new and its
    # open alert raised a second time), with any latest interval.
    ask = {(r["entity_kind"], r["entity_id"]) for r in placed} - have
    if lag_s > 0:
        # The old owner's merge may not have run since the device's first frame: no row, but
        # its open alert is stored (with the batch that raised it). Without this, taken for
        # new and its open alert raised a second time. Merged with every batch, no row means
        # no alert either: no query.
        ask = set(seen) - have
    if ask:
        # By the topic its frames come from now: another topic's alert is not this one's.
        rows += await moves.open_places(conn, [(k, i, seen[(k, i)][0]) for k, i in sorted(ask)])
    for r in rows:
        kind, eid = r["entity_kind"], r["entity_id"]
        topic, partition = seen[(kind, eid)]
        if r["kafka_topic"] != topic or r["kafka_partition"] in (None, partition):
            continue  # stamped here (new since the assignment), or another topic's alert
        by_kind.setdefault(kind, []).append(r)
        out.moves.setdefault((topic, kind), {})[eid] = partition
    reads: list[tuple[str, list[tuple[str, Any]], list[AlertRecord]]] = []
    for kind, placed in by_kind.items():
        window_s = engines[kind].rules.window_s
        # The assignment's replay criterion: stored within the last window (wall clock), and
        # its lag allowance (alert_state.Replay): a lagging row's updated_at is older.
        recent = [
            _upto(r, lag_s) for r in placed if window_s > 0 and r["age_s"] <= window_s + lag_s
        ]
        # The window ends ``lag_s`` past the row's time (``_upto``): starts where it did.
        span = window_s + lag_s
        frames: list[tuple[str, Any]]
        if kind == "vehicle":
            frames = [(f.vin, f) for f in await replay.frames_of(conn, recent, span)]
        else:
            frames = await entity_objects(conn, kind, recent, span)
        ids = [r["entity_id"] for r in placed]
        records = await load_open(conn, entity_kind=kind, entity_ids=ids)
        reads.append((kind, frames, records))
    for kind, frames, records in reads:
        try:
            out.changes.extend(_apply(engines[kind], kind, seen, frames, records))
        except Exception:  # a bug must not stop the batch: these entities start blind, loudly
            log.exception("restoring entities moved from another partition failed")
            engines[kind].forget(entity_ids=[r["entity_id"] for r in by_kind[kind]])
    _adopt(out, others, engines, checked)  # after: the first path's restore
    if out.moves:
        log.info(
            "alert state of entities moved from another partition restored",
            extra={
                "entities": sum(len(m) for m in out.moves.values()),
                "alerts": sum(r.cleared_ms is None for _, _, recs in reads for r in recs),
            },
        )
    return out


def _adopt(
    out: Moved,
    others: OtherPaths | None,
    engines: Mapping[str, RuleEngine],
    checked: Checked | None,
) -> Moved:
    """``out`` with what ``read_other_paths`` found applied (a connector's other path's
    alerts adopted, their rows' moves added to the batch's)."""
    if others is not None and checked is not None:
        out.changes.extend(others.apply(engines, checked))
        for key, parts in others.moves.items():
            out.moves.setdefault(key, {}).update(parts)
    return out


def _upto(row: Any, lag_s: float) -> dict[str, Any]:
    """``row`` (entity_id, ts, now) with ``ts`` moved ``lag_s`` on, but not past the database's
    clock (nor before ``ts``: a device clock ahead): the frames the old owner stored since
    its last merge of latest_state (one interval and a tick at most) are its window's latest,
    and the assignment's refill, which reads them again after a crash, does nothing here."""
    ts = row["ts"]
    if lag_s > 0:
        ts = max(ts, min(ts + timedelta(seconds=lag_s), row["now"]))
    return {"entity_id": row["entity_id"], "ts": ts}


def _apply(
    engine: RuleEngine,
    kind: str,
    seen: Mapping[tuple[str, str], _Where],
    frames: list[tuple[str, Any]],
    records: list[AlertRecord],
) -> list[AlertChange]:
    """Warm ``engine`` with the moved entities' window, then restore their alerts, under
    the partitions their frames come from now (``seen``)."""
    groups: dict[_Where, list[Any]] = {}
    for eid, frame in frames:
        groups.setdefault(seen[(kind, eid)], []).append(frame)
    for (topic, partition), objects in groups.items():
        engine.warm(objects, partition=partition, topic=topic)
    adopted = []
    for rec in records:
        topic, partition = seen[(kind, rec.entity_id)]
        if rec.topic in (None, topic):  # another topic's alert stays with its owner
            adopted.append(replace(rec, topic=topic, partition=partition))
    return engine.restore(adopted)


async def drop_moved(
    engines: Mapping[str, RuleEngine],
    acquire: Callable[[int], AbstractAsyncContextManager[Any]],
    shard_of: Callable[[int], int],
    claims: Claims,
) -> dict[str, list[str]]:
    """Forget the entities with an open alert that latest_state now places on another
    partition of their topic with a newer frame than their engine has seen: their frames go
    to that partition's owner, which restored their alerts (``restore_moved``). ``acquire``:
    a connection to a shard's database. Those placed on another partition of their topic by
    a frame no newer than their watermark are placed back here (``_reclaim``), but at their
    watermark once only (``claims``, kept by the caller across checks: the module docstring):
    found there again, they are forgotten too. Returns the forgotten ones (kind -> ids: the
    caller forgets where it stamped them too); a database away or slow skips the check (the
    next housekeeping turn tries again)."""
    asked: dict[int, list[tuple[str, str]]] = {}
    for kind, engine in engines.items():
        for eid, (_, partition, _) in engine.alerting_entities().items():
            asked.setdefault(shard_of(partition or 0), []).append((kind, eid))
    rows: list[tuple[int, Any]] = []  # (shard, latest_state row)
    try:
        for shard, entities in asked.items():
            async with asyncio.timeout(CHECK_TIMEOUT_S), acquire(shard) as conn:
                rows.extend((shard, r) for r in await moves.places(conn, entities))
    except Exception as exc:
        if classify(exc) is not ErrorKind.TRANSIENT:  # a timeout, a connection lost too
            raise
        log.debug("the check for entities moved elsewhere is skipped: %r", exc)
        return {}
    gone: dict[str, list[str]] = {}
    back: dict[tuple[int, str, str], dict[str, tuple[int, int, Any]]] = {}
    ties: Claims = {}  # those of ``back`` placed elsewhere at their very watermark
    # Read again after the query: a frame evaluated meanwhile moved the watermark on.
    current = {kind: engine.alerting_entities() for kind, engine in engines.items()}
    # A claim holds while the watermark it was made at does: a newer frame settles the tie.
    for key, mark in list(claims.items()):
        now_ = current.get(key[0], {}).get(key[1])
        if now_ is None or now_[2] != mark:
            del claims[key]
    for shard, r in rows:
        owner = engines.get(r["entity_kind"])
        now = current.get(r["entity_kind"], {}).get(r["entity_id"])
        if owner is None or now is None or r["kafka_partition"] is None:
            continue
        topic, partition, watermark = now
        if r["kafka_topic"] != topic or r["kafka_partition"] == partition:
            continue
        order = owner.order_of(r["ts"])  # the watermark's unit: µs for subjects
        if order > watermark or (
            # Placed back here at this very watermark, and elsewhere again since: the other
            # owner holds that frame time too and placed it last; it keeps the device.
            order == watermark and claims.get((r["entity_kind"], r["entity_id"])) == watermark
        ):
            owner.forget(entity_ids=[r["entity_id"]])
            gone.setdefault(r["entity_kind"], []).append(r["entity_id"])
        elif topic is not None and partition is not None:
            # This worker has the newest frame: the device came back (``moves.reclaim``).
            where = (partition, r["kafka_partition"], r["ts"])
            back.setdefault((shard, r["entity_kind"], topic), {})[r["entity_id"]] = where
            if order == watermark:
                ties[(r["entity_kind"], r["entity_id"])] = watermark
    if gone:
        log.info(
            "alert state of entities moved to another partition dropped",
            extra={"entities": sum(map(len, gone.values()))},
        )
    if back:
        claims.update((key, ties[key]) for key in await _reclaim(back, acquire) if key in ties)
    return gone


async def _reclaim(
    back: Mapping[tuple[int, str, str], Mapping[str, tuple[int, int, Any]]],
    acquire: Callable[[int], AbstractAsyncContextManager[Any]],
) -> list[tuple[str, str]]:
    """Place the entities that came back here before this worker dropped them (see
    ``moves.reclaim``) on its partitions again; a database away or slow: the next turn.
    Returns those placed back ((kind, id))."""
    placed: list[tuple[str, str]] = []
    try:
        for (shard, kind, topic), entities in sorted(back.items()):
            async with asyncio.timeout(CHECK_TIMEOUT_S), acquire(shard) as conn:
                placed += ((kind, e) for e in await moves.reclaim(conn, kind, topic, entities))
    except Exception as exc:
        if classify(exc) is not ErrorKind.TRANSIENT:  # a timeout, a connection lost too
            raise
        log.debug("placing entities back on this worker's partitions is skipped: %r", exc)
    if placed:
        log.info(
            "entities back on this worker's partitions placed here again",
            extra={"entities": len(placed)},
        )
    return placed
