"""The pipeline's side of bounded-lag latest_state (storage/latest_pending.py).

The writers (one per shard) keep each partition's pending latest_state tuples and merge them in
the partition's write transactions once per ``storage.latest_interval_ms``. What the worker
adds, through the hooks below (each a no-op for a sink without a keeper):

* ``seek_target``: on assignment, a partition whose stored ``latest_from`` is below its stored
  offset (the last owner crashed with tuples pending) is read from ``latest_from``;
* ``take_refill``: the records below the stored offset are decoded only to refill the pending
  tuples - no rows, no alerts, no dead letters, no metrics - and the rest go on as usual; the
  same frames warm the partition's rule engine (``on_refill``: alert_state.RefillWarm), as
  the replay from the database ends at the stale latest_state; ``end_refills`` completes a
  refill whose range ends in a gap, once the consumer's position passed it;
* ``flush_latest``: on revocation and on a graceful stop, after the writer drained, the
  partitions' sets are merged, so a clean stop or a rebalance leaves latest_state complete;
* ``LatestKeeper.run``: a partition that stopped receiving frames has no write transaction to
  merge in; its set is merged on its own once it waited the interval plus a tick and the
  partition had no batch for a tick (``PendingLatest.stale``; a busy one merges with its batch).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

from storage.latest_pending import PartitionLatest, PendingLatest
from storage.offsets import TopicPartition

__all__ = ["LatestKeeper", "end_refills", "flush_latest", "seek_target", "take_refill"]

log = logging.getLogger(__name__)

# How long a merge left behind goes on: the revoke and the stop give every shard's merge
# closing.FLUSH_LATEST_S (3 s) together and go on without it past that; this bound ends the
# merge itself later, so an abandoned one does not hold a connection for a stall's length.
FLUSH_TIMEOUT_S = 10.0


class _Writer(Protocol):
    latest: PendingLatest

    async def flush_latest(
        self, partitions: Iterable[TopicPartition], *, skip_locked: bool = ...
    ) -> int: ...


class _Decoder(Protocol):
    def decode_stored(self, topic: str, records: Sequence[Any]) -> list[Any]: ...


def _key(tp: Any) -> TopicPartition:
    return (str(tp[0]), int(tp[1])) if isinstance(tp, tuple) else (tp.topic, tp.partition)


# (partition, its refilled frames in offset order, whether its refill is complete) -> False
# when the hook could not finish a complete refill's work (called again with the next records)
OnRefill = Callable[[TopicPartition, list[Any], bool], bool | None]


class LatestKeeper:
    """The writers' pending sets seen per partition (``writer_of(partition)``)."""

    def __init__(
        self,
        writers: Callable[[], Sequence[_Writer]],
        shard_of: Callable[[int], int],
        on_refill: OnRefill | None = None,
    ):
        self._writers = writers
        self._shard_of = shard_of
        self.on_refill = on_refill
        self._unrestored: set[TopicPartition] = set()  # complete, but on_refill not done

    def _writer(self, tp: TopicPartition) -> _Writer:
        return self._writers()[self._shard_of(tp[1])]

    def _part(self, tp: Any) -> PartitionLatest | None:
        key = _key(tp)
        return self._writer(key).latest.parts.get(key)

    def seek_from(self, tp: Any, offset: int | None) -> int | None:
        """Where to read ``tp`` from after the assignment's seek to ``offset`` (once)."""
        p = self._part(tp)
        if p is None or p.seek_from is None or offset is None or p.seek_from >= offset:
            return offset
        start, p.seek_from = p.seek_from, None
        log.info(
            "latest_state tuples were pending when the last owner stopped: reading them again",
            extra={"topic": _key(tp)[0], "partition": _key(tp)[1], "from": start, "to": offset},
        )
        return start

    def refilling(self, tp: Any) -> bool:
        """Whether ``tp`` has records to read again before its new ones (a crash left tuples
        pending); known once its stored offsets were loaded."""
        p = self._part(tp)
        return p is not None and p.refill_until is not None

    def take_refill(self, tp: Any, records: Sequence[Any], decoder: _Decoder) -> Sequence[Any]:
        """``records`` past the refill range of ``tp``; the ones in it refill its set."""
        key = _key(tp)
        if key in self._unrestored and records:  # before these records are evaluated
            self._notify(key, [], True)
        p = self._part(tp)
        if p is None or p.refill_until is None or not records:
            return records
        until = p.refill_until
        cut = 0
        while cut < len(records) and records[cut].offset < until:
            cut += 1
        frames = decoder.decode_stored(key[0], records[:cut]) if cut else []
        if cut:
            self._writer(key).latest.refill(key, frames)
        complete = cut < len(records) or records[cut - 1].offset >= until - 1
        if complete:
            self._complete(key, p)
        self._notify(key, frames, complete)
        return records[cut:]

    def reached(self, tp: Any, position: int) -> None:
        """The consumer's next offset for ``tp`` is ``position`` (``end_refills``)."""
        p = self._part(tp)
        if p is not None and p.refill_until is not None and position >= p.refill_until:
            key = _key(tp)
            self._complete(key, p)
            self._notify(key, [], True)

    def _complete(self, key: TopicPartition, p: PartitionLatest) -> None:
        # Before ``on_refill``, so that a failing hook cannot leave the refill half done.
        # These tuples are older than the interval already: merged with the next write (or by
        # the idle merge) rather than an interval after the restart.
        p.refill_until = None
        p.merged_at = float("-inf")
        log.info(
            "latest_state tuples refilled",
            extra={"topic": key[0], "partition": key[1], "entities": len(p.pending)},
        )

    def _notify(self, key: TopicPartition, frames: list[Any], complete: bool) -> None:
        """``on_refill``, guarded: the consume loop must not die of it. A complete refill whose
        hook did not finish (False, or raised) is notified again with the partition's next
        records (``take_refill``)."""
        if self.on_refill is None:
            return
        try:
            done = self.on_refill(key, frames, complete) is not False
        except Exception:
            log.exception(
                "the refill's alert hook failed: the partition goes on; retried with its next "
                "records",
                extra={"topic": key[0], "partition": key[1]},
            )
            done = False
        if complete and not done:
            self._unrestored.add(key)
        else:
            self._unrestored.discard(key)

    async def flush(self, partitions: Iterable[Any], *, skip_locked: bool = False) -> None:
        """Merge the sets of ``partitions`` now (bounded; a failure leaves ``latest_from``
        stored, so the next owner refills them)."""
        by_writer: dict[int, list[TopicPartition]] = {}
        for tp in partitions:
            key = _key(tp)
            by_writer.setdefault(self._shard_of(key[1]), []).append(key)
        # Every shard at once, each on its own shard's pool: the caller's one bound
        # (closing.FLUSH_LATEST_S) covers them together, so a stalled shard does not use up
        # the others' time before their turn.
        await asyncio.gather(
            *(
                self._flush_shard(shard, keys, skip_locked)
                for shard, keys in sorted(by_writer.items())
            )
        )

    async def _flush_shard(self, shard: int, keys: list[TopicPartition], skip_locked: bool) -> None:
        try:
            n = await asyncio.wait_for(
                self._writers()[shard].flush_latest(keys, skip_locked=skip_locked),
                FLUSH_TIMEOUT_S,
            )
        except Exception as exc:  # the stored latest_from still covers them
            log.warning(
                "latest_state not merged before the partitions go (%r); their next owner "
                "reads the pending range again (consumer_offsets.latest_from)",
                exc,
                extra={"shard": shard, "partitions": len(keys)},
            )
            return
        if n:
            log.info("latest_state merged", extra={"shard": shard, "entities": n})

    def forget(self, partitions: Iterable[Any]) -> None:
        keys = [_key(tp) for tp in partitions]
        self._unrestored.difference_update(keys)
        for writer in self._writers():
            writer.latest.forget(keys)

    async def run(
        self,
        interval_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Merge the sets of partitions no write came to merge (idle), every quarter interval:
        a set waits at least the interval and less than 1.5 intervals (plus the merge).
        ``clock`` and ``sleep``: the writers' clock (time.monotonic) and a wait, replaceable
        so a test can step through the ticks without waiting for them."""
        tick = interval_s / 4
        while True:
            await sleep(tick)
            now = clock()
            for writer in self._writers():
                stale = writer.latest.stale(now, interval_s + tick)
                if stale:
                    await self.flush(stale, skip_locked=True)


def _keeper(sink: Any) -> LatestKeeper | None:
    keeper = getattr(sink, "latest", None)
    return keeper if isinstance(keeper, LatestKeeper) else None


def seek_target(sink: Any, tp: Any, offset: int | None) -> int | None:
    """The worker's hook on the assignment's seek (see the module docstring)."""
    keeper = _keeper(sink)
    return offset if keeper is None else keeper.seek_from(tp, offset)


def take_refill(sink: Any, decoder: _Decoder, tp: Any, records: Sequence[Any]) -> Sequence[Any]:
    """The worker's hook before a partition's records enter the batch."""
    keeper = _keeper(sink)
    return records if keeper is None else keeper.take_refill(tp, records, decoder)


async def end_refills(
    sink: Any, tps: Iterable[Any], position: Callable[[Any], Awaitable[int]]
) -> bool:
    """The worker's hook after each fetch: ``tps`` are its sought partitions, ``position`` the
    consumer's. A refill completes on seeing offset ``until - 1`` or later (``take_refill``),
    but a range that ends in a gap (compaction, a transaction marker) may never show it, and
    if the partition then goes quiet no record comes to complete it. The consumer's position
    is exact where a time bound would guess: it moves past a record only once ``getmany``
    returned it (and ``take_refill`` saw it) and past a gap on its own, so position >= until
    means every record of the range was seen. Only a partition still refilling is asked (a
    few after a crash, none otherwise). Returns whether one was (the worker's restore wait)."""
    keeper = _keeper(sink)
    if keeper is None:
        return False
    asked = False
    for tp in tps:
        if keeper.refilling(tp):
            asked = True
            try:
                at = await position(tp)
            except Exception as exc:  # revoked meanwhile: its next owner refills it
                log.debug("no position for a refilling partition (%r)", exc)
                continue
            keeper.reached(tp, at)
    return asked


async def flush_latest(sink: Any, partitions: Iterable[Any]) -> None:
    """The worker's hook after the writer drained, on revocation and on a graceful stop."""
    keeper = _keeper(sink)
    if keeper is not None:
        await keeper.flush(list(partitions))
