"""A batch's rule evaluation, a slice at a time, resumable.

A worker is one event loop: while it runs one lane's rules over a batch (~5 µs a frame: ~12 ms
for the ~2,500-frame lane batch of the default 5,000-frame batch, ~50 ms at 20,000), the other
lane's open transaction waits for its next statement ("idle in transaction") and the database
idles with it. So the frames go through the engines in slices of at most ``SLICE`` frames of
one partition, with the write lanes' turn of the event loop (ingest.pipeline.turns) between
slices; measured in docs/performance.md ("Slices and batch size").

The work left and the changes so far live in the batch (``Batch.alert_work``): a write that is
cancelled between two slices and then retried goes on where it stopped, so no frame moves an
engine's state twice. A slice is evaluated and taken off the list with no ``await`` between,
so a cancellation can only fall between slices.

The shard's waiting changes (a restore's, a rules reload's, and the changes another shard's
batch made to an alert stored on this shard: ``StorageSink``) are taken into the work at its
start. Each slice's changes go through ``route`` at once (ingest/pipeline/waiting.py): those
for another shard's alert, and those of an alert with a change waiting, wait in the engine's
order. A batch abandoned uncommitted takes them along: abandoning happens on a stop, or on a
revoke, and aiokafka's rebalance is eager (every partition goes), so the next owner restores
those alerts from the database and decides them again; ``StorageSink.on_partitions_lost``
drops the changes still waiting for the lost partitions' alerts for the same reason (also
those a committed frame of the other path made: saved after the rebalance they would close
the next owner's row; they are lost, as in a crash between the two commits: docs/alerts.md).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from alerts import AlertChange
from ingest.pipeline.batch import Batch, partition_runs
from ingest.pipeline.turns import lanes_turn
from ingest.pipeline.waiting import Hold, Source

__all__ = ["SLICE", "AlertWork", "Route", "evaluate_batch"]

# Frames per slice: ~5 ms of rules, about what a decode slice costs (ingest.pipeline.worker).
SLICE: Final = 1000


class Engine(Protocol):
    """What this module needs of ``alerts.RuleEngine``."""

    def evaluate(
        self, frames: list[Any], *, now_ms: int | None, partition: int | None, topic: str | None
    ) -> list[AlertChange]: ...


@dataclass(slots=True)
class AlertWork:
    """What is left of a batch's evaluation: (topic, partition, frames) slices in order, and
    the changes of the slices done (the waiting changes of the shard first); ``hold``: its
    changes that wait for another batch (``route``, ingest/pipeline/waiting.py), ready once
    this batch committed."""

    todo: deque[tuple[str, int, list[Any]]]
    changes: list[AlertChange] = field(default_factory=list)
    hold: Hold = field(default_factory=Hold)


# The changes of a slice the batch's own transaction saves (the others wait, behind its hold).
Route = Callable[[int, list[AlertChange], Source, Hold], list[AlertChange]]


def plan(
    batch: Batch, engines: Mapping[str, Engine], kinds: Mapping[str, str]
) -> deque[tuple[str, int, list[Any]]]:
    """The batch's frames by (topic, partition), in offset order, cut into slices."""
    records, frames = batch.records, batch.frames
    if len(records) != len(frames):
        raise ValueError(f"a batch of {len(frames)} frames with {len(records)} records")
    by_partition: dict[tuple[str, int], list[Any]] = {}
    # Each run of one partition's records: its frames taken as one slice.
    for where, at, end in partition_runs(records):
        kind = kinds.get(where[0])
        if kind is not None and kind in engines:
            by_partition.setdefault(where, []).extend(frames[at:end])
    todo: deque[tuple[str, int, list[Any]]] = deque()
    for (topic, partition), found in by_partition.items():
        for i in range(0, len(found), SLICE):
            todo.append((topic, partition, found[i : i + SLICE]))
    return todo


async def evaluate_batch(
    batch: Batch,
    engines: Mapping[str, Engine],
    kinds: Mapping[str, str],
    take_pending: Callable[[int, Hold], list[AlertChange]],
    route: Route | None = None,
) -> list[AlertChange]:
    """The alert changes of ``batch``: ``take_pending(shard, hold)``'s (held by the batch's
    hold till it commits), then its frames' (``kinds``:
    topic -> entity kind), those ``route`` keeps of each slice (by default all). Resumes
    ``batch.alert_work`` when an earlier call was cancelled."""
    work: AlertWork | None = batch.alert_work
    if work is None:
        work = batch.alert_work = AlertWork(plan(batch, engines, kinds))
        work.changes.extend(take_pending(batch.shard, work.hold))
    todo, changes = work.todo, work.changes
    while todo:
        topic, partition, frames = todo[0]
        now_ms = time.time_ns() // 1_000_000
        engine = engines[kinds[topic]]
        made = engine.evaluate(frames, now_ms=now_ms, partition=partition, topic=topic)
        # No await between the evaluation and these: a cancel cannot split them, and the
        # route sees the changes in the engine's order across the lanes.
        if route is not None:
            made = route(batch.shard, made, (topic, partition), work.hold)
        changes.extend(made)
        todo.popleft()
        if todo:
            await lanes_turn()
    return changes
