"""Backpressure: a bound on in-flight frames and bytes, and when to pause and resume the
partitions.

In-flight frames are those consumed from Kafka and not yet committed (open batch, queued
batches, the batch being written). The consumer never fetches more than ``room()``, so memory
is bounded by ``max_in_flight`` frames whatever the database does, and by ``max_bytes`` of
records (a frame's value, key and headers, a dead letter's, ``Held``): records may be up to
512 KiB (``kafka.max_record_bytes``), so a bound in frames alone is no bound on memory. The
bytes are known only once fetched: ``room()`` is 0 from the bound on, and one ``getmany`` can
go over it by what it returns, at most a batch's frames (``pipeline.batch_max_frames``) of what
aiokafka holds fetched: one fetch per assigned partition, ``kafka.max_partition_fetch_bytes``
each before decompression, which it holds in any case.

When the bound is reached the consumer first just waits (the writer usually frees room within
one batch time, and aiokafka keeps what it prefetched). If it is still full after
``pause_after_s``, or as soon as the database reports a transient failure, the partitions are
paused: the consumer keeps polling (so the group does not evict it after
``max.poll.interval.ms``) but fetches nothing, and resumes when the database works again and the
in-flight count has fallen to ``resume_ratio`` of the bound (hysteresis, so a slow database does
not make the partitions flap).

Shards (``storage.shards``): each database is a shard with a health of its own. A shard that
fails pauses only its partitions (``unhealthy``: the worker pauses the partitions that map to
those shards) and resumes them as soon as it works again; all partitions pause only when every
shard fails (with one shard: today's behaviour). With several shards the bound is shared out
by what the worker owns (``own``, on every assignment): a shard's share (frames and bytes) is
the bound times the worker's partitions on that shard over all its partitions, at least
``min_share`` frames (a batch: a shard with one partition of many still writes whole
batches; at most ``1/N`` of the bound) and at most what leaves the other shards with
partitions that floor (so one hung shard is held before the whole bound is full), and ``1/N``
before the first assignment. A worker whose partitions all map to one
shard so keeps the whole bound for it; a flat ``1/N`` paused it at half the bound with two
shards. Its write lanes hold what was handed to them (``assign`` when the open batch is
handed to them, ``done(..., shard=)`` when they let go). A shard whose share is
full (a shard that hangs: its lanes free nothing) is ``held``: only its partitions pause, until
its lanes drain to ``resume_ratio`` of the share; the others keep their shares. The whole
bound reached past ``pause_after_s`` still pauses every partition (the open batch and another
slow shard can fill what a held shard leaves; without that pause the consume loop spun at room
0), and that pause ends once the bound is no longer reached and the frames of the shards still
running are down to the resume ratio: the frames of failing and held shards are left out of
that check, they stay until that shard's writes work and must not keep the rest paused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from enum import Enum
from typing import NamedTuple

__all__ = ["Backpressure", "Decision", "Held"]


class Held(NamedTuple):
    """What a batch (or a part of one) holds against the in-flight bounds."""

    frames: int  # records: frames and dead letters
    bytes: int  # their values, keys and headers (a dead letter's as produced)


class Decision(Enum):
    NONE = "none"
    PAUSE = "pause"
    RESUME = "resume"


class Backpressure:
    """In-flight accounting plus the pause/resume state machine (no I/O)."""

    def __init__(
        self,
        max_in_flight: int,
        *,
        max_bytes: int | None = None,
        resume_ratio: float = 0.5,
        pause_after_s: float = 1.0,
        shards: int = 1,
        min_share: int = 1,
        observe: Callable[[int], None] | None = None,
        observe_bytes: Callable[[int], None] | None = None,
    ) -> None:
        """``observe``: called with the in-flight count whenever it changes (the worker's
        ``nev_ingest_in_flight_frames`` gauge: live, so a dashboard and bench_pipeline, whose
        drain starts with the first fetch, see each fetch and commit when it happens);
        ``observe_bytes`` likewise with the bytes. ``max_bytes``: None for no byte bound.
        ``min_share``: the least frames a shard's share holds (its bytes the same fraction of
        the byte bound), whatever few of the worker's partitions map to it."""
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        self.max_in_flight = max_in_flight
        self.resume_ratio = resume_ratio
        self.resume_at = int(max_in_flight * resume_ratio)
        self.max_bytes = max_bytes
        # Both counts must fall to their ratio before a pause ends (hysteresis on each bound).
        self.resume_bytes = None if max_bytes is None else int(max_bytes * resume_ratio)
        self.in_flight_bytes = 0
        self.pause_after_s = pause_after_s
        self.in_flight = 0
        self.shards = max(1, shards)
        self.unhealthy: set[int] = set()  # shards whose last write or load failed
        # Per shard, what its write lanes hold, and the shards over their share (held).
        self.shard_in_flight = [0] * self.shards
        self.shard_bytes = [0] * self.shards
        self.held: set[int] = set()
        self._min_share = min(max_in_flight, max(1, min_share))
        self._share: list[float] = []
        self._share_bytes: list[float] | None = None
        self.own(())  # before the first assignment: 1/N each
        self.paused = False
        self._full_since: float | None = None
        self._room = asyncio.Event()
        self._room.set()
        self._observe = observe
        self._observe_bytes = observe_bytes

    @property
    def full(self) -> bool:
        """Either bound reached."""
        if self.max_bytes is not None and self.in_flight_bytes >= self.max_bytes:
            return True
        return self.in_flight >= self.max_in_flight

    def room(self) -> int:
        """How many more frames may be fetched now."""
        if self.max_bytes is not None and self.in_flight_bytes >= self.max_bytes:
            return 0
        return max(0, self.max_in_flight - self.in_flight)

    def add(self, n: int, nbytes: int = 0) -> None:
        self.in_flight += n
        self.in_flight_bytes += nbytes
        if self.full:
            self._room.clear()
        self._observed()

    def done(self, n: int, nbytes: int = 0, shard: int | None = None) -> None:
        """``n`` frames (``nbytes``) no longer in flight; ``shard``: they were in its lanes."""
        self.in_flight = max(0, self.in_flight - n)
        self.in_flight_bytes = max(0, self.in_flight_bytes - nbytes)
        if shard is not None:
            self.shard_in_flight[shard] = max(0, self.shard_in_flight[shard] - n)
            self.shard_bytes[shard] = max(0, self.shard_bytes[shard] - nbytes)
            self._check_share(shard)
        if not self.full:
            self._room.set()
        self._observed()

    def assign(self, shard: int, n: int, nbytes: int = 0) -> None:
        """``n`` frames in flight (counted by ``add``) handed to ``shard``'s write lanes."""
        self.shard_in_flight[shard] += n
        self.shard_bytes[shard] += nbytes
        self._check_share(shard)

    def own(self, shards_of_partitions: Iterable[int]) -> None:
        """Share the bounds out by what this worker owns: one shard index per assigned
        partition (every raw topic's). A shard's share is the bound times its partitions over
        all of them, at least ``min_share`` (at most ``1/N`` of the bound) and at most what
        leaves the other shards with partitions that floor; with none assigned, ``1/N`` each.
        The held shards are judged again against their new shares."""
        counts = [0] * self.shards
        for shard in shards_of_partitions:
            counts[shard] += 1
        total = sum(counts)
        # The floor as a fraction of the bound (the byte share gets the same one), never above
        # 1/N: a batch as large as the bound would give every shard the whole bound.
        floor = min(self._min_share / self.max_in_flight, 1 / self.shards)
        # A shard with partitions leaves every other such shard its floor: a hung shard is then
        # held before the whole bound is full, and the whole bound's pause (which lasts while
        # the bound is reached) cannot starve the shards that still write.
        owning = sum(1 for c in counts if c)
        cap = 1 - (owning - 1) * floor if owning else 1.0
        fractions = [
            min(max(c / total, floor), cap) if c else floor if total else 1 / self.shards
            for c in counts
        ]
        self._share = [self.max_in_flight * f for f in fractions]
        max_bytes = self.max_bytes
        self._share_bytes = None if max_bytes is None else [max_bytes * f for f in fractions]
        for shard in range(self.shards):
            self._check_share(shard)

    def share(self, shard: int) -> tuple[float, float | None]:
        """``shard``'s share of the frame and byte bounds (None: no byte bound)."""
        share_bytes = self._share_bytes
        return (self._share[shard], None if share_bytes is None else share_bytes[shard])

    def _check_share(self, shard: int) -> None:
        if self.shards == 1:
            return  # the one shard's share is the bound: the pause below is its own
        frames, nbytes = self.shard_in_flight[shard], self.shard_bytes[shard]
        share, share_bytes = self.share(shard)
        if frames >= share or (share_bytes is not None and nbytes >= share_bytes):
            self.held.add(shard)
        elif shard in self.held:
            # The ratio as configured: the rounded ``resume_at`` over the bound is another
            # one (0.3 for 0.39 of 10 frames), applied to the byte share too.
            ratio = self.resume_ratio
            under = share_bytes is None or nbytes <= share_bytes * ratio
            if frames <= share * ratio and under:
                self.held.discard(shard)
                self._room.set()  # wake the consumer so it can resume the shard's partitions

    def _stuck_frames(self) -> tuple[int, int]:
        """Frames and bytes held by failing or held shards (left out of the resume check)."""
        if self.shards == 1:
            return (0, 0)
        out = self.unhealthy | self.held
        return (
            sum(self.shard_in_flight[s] for s in out),
            sum(self.shard_bytes[s] for s in out),
        )

    def wake(self) -> None:
        """Wake a consumer waiting in ``wait_room`` to look again (it waits again, the event
        cleared, if it is still full)."""
        self._room.set()

    def _observed(self) -> None:
        if self._observe is not None:
            self._observe(self.in_flight)
        if self._observe_bytes is not None:
            self._observe_bytes(self.in_flight_bytes)

    @property
    def sink_healthy(self) -> bool:
        """False while every shard fails: nothing can be written (the whole consumer pauses)."""
        return len(self.unhealthy) < self.shards

    @property
    def all_healthy(self) -> bool:
        return not self.unhealthy

    def set_sink_healthy(self, healthy: bool, shard: int = 0) -> None:
        if healthy:
            self.unhealthy.discard(shard)
            self._room.set()  # wake the consumer so it can resume promptly
        else:
            self.unhealthy.add(shard)

    def pause_due_in(self, now: float | None = None) -> float:
        """Seconds until ``decide`` pauses at a bound reached (``pause_after_s`` when none is):
        the consumer's wait for room, which a wake-up may end early, must not start the count
        again, or a pause could come up to twice ``pause_after_s`` late."""
        if self._full_since is None:
            return self.pause_after_s
        now = time.monotonic() if now is None else now
        return max(0.0, self.pause_after_s - (now - self._full_since))

    async def wait_room(self, timeout_s: float) -> None:
        """Wait until there is room or the sink's health changes, at most ``timeout_s``."""
        if self._room.is_set() and not self.full:
            return
        if self.full:
            # A wake-up that freed too little (a commit below the bytes of the fetch that went
            # over the bound) or one for health alone (set_sink_healthy) left the event set:
            # waiting on it would return at once, and the consume loop would spin.
            self._room.clear()
        try:
            await asyncio.wait_for(self._room.wait(), timeout_s)
        except TimeoutError:
            return

    def decide(self, now: float | None = None) -> Decision:
        """Pause or resume? Call once per consumer-loop turn and act on the answer."""
        now = time.monotonic() if now is None else now
        full = self.full
        if full:
            if self._full_since is None:
                self._full_since = now
        else:
            self._full_since = None
        if not self.paused:
            # A bound that stays reached pauses every partition, with shards too (each shard's
            # share pauses its own partitions first, so the whole bound stays reached only when
            # the shards are all slow): without it the consume loop, at room 0 and not paused,
            # spun (wait_room(0) returned at once) and never polled Kafka (a second read: 9.7
            # CPU-s in 10 s with two slow shards).
            stuck = self._full_since is not None and now - self._full_since >= self.pause_after_s
            if not self.sink_healthy or stuck:
                self.paused = True
                return Decision.PAUSE
            return Decision.NONE
        frames, nbytes = self._stuck_frames()
        drained = self.in_flight - frames <= self.resume_at and (
            self.resume_bytes is None or self.in_flight_bytes - nbytes <= self.resume_bytes
        )
        # While every shard is failing or held there is nothing to resume for (each one's
        # partitions would pause again at once, and the bound with them after pause_after_s).
        # Nor while the bound itself is still reached (a pause for the whole bound, one shard
        # held and another slow: resuming at once paused again after pause_after_s, every
        # 2 s, each time a WARNING).
        if (
            self.sink_healthy
            and drained
            and not self.full
            and len(self.unhealthy | self.held) < self.shards
        ):
            self.paused = False
            self._full_since = None
            return Decision.RESUME
        return Decision.NONE
