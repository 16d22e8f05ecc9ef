"""A write whose COMMIT was sent but whose answer never came: committed or not?

The COMMIT reached the server, and then the connection dropped (``storage.write_timeout_s``
cutting it in that window, a reset, a failover): the transaction may have committed. The
retry's fence tells: the partitions' offsets are exactly where that attempt stored them, so
the database holds that attempt - rows, alerts, outbox rows, offsets and ``latest_from``.
Taken for another consumer's work (fenced), the batch was counted abandoned, the partitions'
pending latest_state tuples were dropped (never merged while the worker kept the partitions:
its next merge cleared ``latest_from``) and its alert messages waited in the outbox for the
next assignment. Recognised, the retry finishes the batch as that attempt left it (``Sent``):
committed, its tuples pending or merged as the commit said.

One transaction stores every partition of a batch, or none: the attempt committed only when
each of its partitions is at its end offset or past it (another consumer went on since).
A partition short of its end (nothing stored, at the batch's start, or in between: offsets
only move forward) says it did not: the retry writes the batch as usual, and a partition
found at the end offset then is someone else's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from storage.batch import WriteResult
from storage.latest_pending import Delta, PartitionLatest, Placements
from storage.offsets import OffsetRange, TopicPartition

__all__ = ["KEEP", "Sent", "Unsure", "UnsureWrites", "committed_by", "ranges_key"]

# Batches whose outcome stays unknown after write_batch gave up (the database away past the
# retries): their next write_batch looks again. A few at most are retried at a time (one per
# lane); older ones were abandoned (revoked, stopped) and only hold memory.
KEEP: Final = 16

RangesKey = tuple[tuple[TopicPartition, int | None, int], ...]


@dataclass(slots=True)
class Sent:
    """What an attempt had done when it sent its COMMIT: applied to the writer's memory once
    that commit is known to have happened (``StorageWriter._transaction``)."""

    result: WriteResult  # attempts and seconds not filled in
    deltas: dict[TopicPartition, Delta]
    merged: list[TopicPartition]
    placed: Placements
    began: dict[TopicPartition, PartitionLatest | None]
    committed: dict[TopicPartition, int] = field(default_factory=dict)


@dataclass(slots=True)
class Unsure:
    """A batch's last attempt that sent its COMMIT without getting the answer (None: none, or
    its outcome is known); each attempt sets it right before its COMMIT, and clears it when
    its fence shows that attempt did not commit."""

    sent: Sent | None = None


def committed_by(
    sent: Sent | None,
    ranges: Mapping[TopicPartition, OffsetRange],
    stored: Mapping[TopicPartition, int | None],
) -> set[TopicPartition] | None:
    """The partitions whose stored offset is ``sent``'s end offset, when the fence's
    ``stored`` offsets say that attempt committed; None when it did not (or none was sent).

    A partition before that attempt's end offset (nothing stored, stored at or before the
    batch's start, or in between) proves it did not commit: its commit would have moved every
    partition it wrote to its end, and offsets only move forward."""
    if sent is None or not sent.committed:
        return None
    done: set[TopicPartition] = set()
    for tp, rng in ranges.items():
        have = stored.get(tp)
        end = sent.committed.get(tp)  # None: that attempt had found the partition fenced
        if have is None or (rng.start is not None and have <= rng.start):
            return None
        if end is not None and have < end:
            return None
        if end == have:
            done.add(tp)
    return done or None


def ranges_key(ranges: Mapping[TopicPartition, OffsetRange]) -> RangesKey:
    """A batch by what it covers: its retry (the caller's, after ``StorageUnavailable``)
    covers the same ranges."""
    return tuple(sorted((tp, r.start, r.next) for tp, r in ranges.items()))


class UnsureWrites:
    """Attempts whose outcome was still unknown when ``write_batch`` gave up, by batch."""

    def __init__(self) -> None:
        self._sent: dict[RangesKey, Sent] = {}

    def take(self, key: RangesKey) -> Sent | None:
        return self._sent.pop(key, None)

    def keep(self, key: RangesKey, sent: Sent) -> None:
        self._sent[key] = sent
        while len(self._sent) > KEEP:
            del self._sent[next(iter(self._sent))]  # the oldest: dicts keep insertion order
