"""Bounded-lag latest_state in the writer's transactions (storage/latest_pending.py): what a
batch's transaction merges and stores as ``latest_from``, and the merge of a partition's set
in a transaction of its own (revocation, graceful stop, an idle partition)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any, Final

from storage import offsets as offsets_sql
from storage.batch import Decoded
from storage.isolate import Attempt
from storage.latest_merge import merge, stamp
from storage.latest_pending import Delta, PartitionLatest, PendingLatest, Placements
from storage.offsets import OffsetRange, TopicPartition
from storage.params import LoaderKind, WriterParams

__all__ = ["flush", "in_transaction"]

log = logging.getLogger(__name__)

Planned = tuple[
    dict[TopicPartition, Delta],
    list[TopicPartition],
    dict[TopicPartition, int | None],
    Placements,
]


async def in_transaction(
    conn: Any,
    params: WriterParams,
    loader: LoaderKind,
    latest: PendingLatest,
    frames: Sequence[Decoded],
    kept: list[int],
    sources: list[TopicPartition],
    ranges: dict[TopicPartition, OffsetRange],
    kafka_offsets: Sequence[int] | None,
    live: list[TopicPartition],
    state: Attempt,
    early: dict[TopicPartition, Delta] | None = None,
) -> Planned:
    """In a batch's transaction, after its rows: the batch's tuples per partition (``early``
    when they were taken while the rows loaded; applied to ``latest`` only once the
    transaction commits), the partitions whose sets are merged now
    (interval passed, cap reached, or tuples refilled after a crash), and each partition's
    ``latest_from`` to store with its offset, and the placements the merge recorded (with an
    interval; without one the sink stamps them, once per entity per assignment)."""
    if not latest.bounded:
        deltas = {}
    elif early is not None:
        deltas = early  # taken while the rows loaded (storage.writer._Early), still true
    else:
        deltas = latest.batch_deltas(frames, kept, sources, ranges, kafka_offsets)
    now = time.monotonic()
    merged = [tp for tp in live if latest.due(tp, deltas.get(tp), now)]
    placed: Placements = {}
    if merged:
        combined = Delta()
        for tp in merged:
            merging = latest.to_merge(tp, deltas.get(tp))
            combined.combine(merging)
            if latest.bounded:
                _add(placed, latest.placements(tp, merging, params.entity_kind))
        state.latest += await merge(conn, params.schema, params.entity_kind, loader, combined)
        await stamp(conn, params.schema, placed, combined)
    done = set(merged)
    latest_from = {
        tp: None if tp in done else latest.latest_from(tp, deltas.get(tp)) for tp in live
    }
    return deltas, merged, latest_from, placed


# The offset rows of the partitions (a partition with a pending set has its row: the commit
# that left the set stored it), locked in partition order as the writer's fence locks them.
_LOCK: Final = """
SELECT o.topic, o.partition, o.next_offset FROM {schema}.consumer_offsets AS o
JOIN unnest($2::text[], $3::int4[]) AS u(t, p) ON o.topic = u.t AND o.partition = u.p
WHERE o.consumer_group = $1
ORDER BY o.topic, o.partition
FOR UPDATE OF o"""


async def _lock(
    conn: Any, schema: str, group: str, partitions: Iterable[TopicPartition], skip_locked: bool
) -> dict[TopicPartition, int]:
    """The stored next offsets of ``partitions``, their rows locked; with ``skip_locked`` only
    of those no other transaction holds."""
    tps = sorted(partitions)
    sql = _LOCK.format(schema=schema) + (" SKIP LOCKED" if skip_locked else "")
    rows = await conn.fetch(sql, group, [t for t, _ in tps], [p for _, p in tps])
    return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}


def _add(into: Placements, more: Placements) -> None:
    for kind, entities in more.items():
        into.setdefault(kind, {}).update(entities)


async def flush(
    pool: Any,
    params: WriterParams,
    loader: LoaderKind,
    latest: PendingLatest,
    partitions: Iterable[TopicPartition],
    *,
    skip_locked: bool = False,
) -> int:
    """Merge the pending sets of ``partitions`` in a transaction of their own; returns the
    entities merged.

    Only a partition whose stored offset is still the one this writer committed last is
    merged and its ``latest_from`` cleared: had a commit come between (a write of another
    lane, an abandoned one that committed after all), the stored ``latest_from`` covers its
    tuples. A partition still refilling after a crash waits until its refill is complete.

    ``skip_locked`` (the idle merge, ``LatestKeeper.run``): a partition whose offset row
    another transaction holds (its lane writing a batch, which merges the set when due) is
    skipped, not waited for: waiting, this transaction held the rows it had locked already,
    and their lanes' next batches waited behind it (issue 12). Without it (revocation, a
    graceful stop: latest_state is to be complete when the partitions go) the merge waits for
    the rows (bounded by the callers: the revoke and the stop go on without it after
    ``closing.FLUSH_LATEST_S``, and ``latest_keeper.FLUSH_TIMEOUT_S`` ends it) and logs the
    partitions it could not merge anyway (their next owner refills them from
    ``latest_from``).
    """
    wanted = [tp for tp in partitions if (p := latest.parts.get(tp)) is not None and len(p.pending)]
    parts = {
        tp: p
        for tp in wanted
        if (p := latest.parts[tp]).next is not None and p.refill_until is None
    }
    n = await _merge(pool, params, loader, latest, parts, skip_locked) if parts else 0
    if not skip_locked:
        left = sorted(
            tp for tp in wanted if (p := latest.parts.get(tp)) is not None and len(p.pending)
        )
        if left:
            log.warning(
                "latest_state of %d partitions not merged before they go (refilling, or another "
                "commit came between): their next owner reads the pending range again "
                "(consumer_offsets.latest_from)",
                len(left),
                extra={"partitions": [f"{t}:{p}" for t, p in left]},
            )
    return n


async def _merge(
    pool: Any,
    params: WriterParams,
    loader: LoaderKind,
    latest: PendingLatest,
    parts: dict[TopicPartition, PartitionLatest],
    skip_locked: bool,
) -> int:
    group, schema = params.consumer_group, params.schema
    mine: dict[TopicPartition, int] = {}
    placed: Placements = {}
    n = 0
    async with pool.acquire() as conn, conn.transaction():
        stored = await _lock(conn, schema, group, parts, skip_locked)
        mine = {tp: p.version for tp, p in parts.items() if stored.get(tp) == p.next}
        if mine:
            combined = Delta()
            for tp in mine:
                combined.combine(parts[tp].pending)
                if latest.bounded:
                    _add(placed, latest.placements(tp, parts[tp].pending, params.entity_kind))
            n = await merge(conn, schema, params.entity_kind, loader, combined)
            await stamp(conn, schema, placed, combined)
            await offsets_sql.clear_latest_from(conn, schema, group, mine)
    # A partition lost or forgotten while this ran (its set is not the one merged) is placed
    # again by whoever owns it next.
    latest.mark_placed(
        placed, skip={tp for tp, p in parts.items() if latest.parts.get(tp) is not p}
    )
    now = time.monotonic()
    for tp, version in mine.items():
        p = parts[tp]
        if p.version == version and latest.parts.get(tp) is p:  # nothing came meanwhile
            p.pending = Delta()
            p.merged_at = now
            p.version += 1
    return n
