"""The gateway's one path to Kafka: frames of every connection, produced in the order they were
read per partition, each reported back when Kafka acknowledged it (acks=all) or failed for good.

Frames are grouped into one batch per topic-partition (aiokafka ``create_batch`` /
``send_batch``) rather than handed to ``send`` one by one: ``send`` costs ~15-20 µs of Python
per frame (metadata wait, size estimate, a pure-Python murmur2, a future per message), the
batch API ~2 µs. The partition is the one Kafka's default partitioner gives the key
(``storage.shards.kafka_partition``, the same murmur2 as aiokafka's ``DefaultPartitioner``;
tests/unit/test_gateway_producer.py checks them against each other), so a device's frames go
where ``send`` would have put them.

What this relies on in aiokafka 0.14 (producer/message_accumulator.py, producer/sender.py):

- ``send_batch`` appends the batch to the partition's queue in the accumulator, waiting first
  until the partition's previous queued batch was drained by the sender; batches of one
  partition leave in the order they were submitted;
- with ``enable_idempotence`` the producer id, epoch and sequence numbers are set on a batch
  when the sender drains it (``_pop_batch``), as for ``send``'s batches, and a partition has at
  most one produce request in flight (it is muted until the answer): per-partition order holds
  across the sender's own retries;
- the batch's future resolves once for all its records: acknowledged (acks=all) or failed;
- a record that does not fit ``max_batch_size`` is refused by a batch (``append`` returns None)
  unless it is the batch's first: an oversized frame ends up alone in its batch, so a broker's
  "too large" refuses that frame only, as with ``send``. (A batch of several frames refused as
  too large, the topic's max.message.bytes being below the batch size, goes again one frame
  per batch: only a frame too large by itself is refused.)

One lane per topic-partition holds the frames routed to it in read order; one task per busy
lane fills batches from it and submits them, so a partition waiting for its previous batch to
drain holds back only its own frames. Any failure of a batch the producer accepted means the
batch had its sequence numbers and the partition's sequence now has a gap: the producer is
replaced (``ingest.gateway.renewal``), or every later batch of the partition would be refused
``OutOfOrderSequenceNumber``. A frame refused for good (too large for the topic, not
authorised) is reported to its connection, which answers with the error flag; the frames of a
batch that was never written (behind the gap, expired without a leader, the broker away) go
again with the new producer, ahead of the frames read after them, once every batch of the lane
still with the old producer is resolved: per-partition order holds, an outage of any length
loses nothing, their answers wait. The in-flight budget counts a frame from ``submit`` until it
is reported (once), whatever number of producers it took.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from aiokafka.errors import (
    BrokerNotAvailableError,
    KafkaError,
    KafkaTimeoutError,
    KafkaUnavailableError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)

from ingest.gateway.limits import Budget
from ingest.gateway.metrics import GatewayMetrics
from ingest.gateway.renewal import NOT_WRITTEN, ProducerPool
from storage.shards import murmur2

__all__ = ["Dispatcher", "Pending", "batch_bytes", "retriable"]

log = logging.getLogger(__name__)

# Not flagged retriable by aiokafka, yet what a broker that is away looks like. The pipeline's
# ingest.pipeline.publish.retriable says the same and must stay in step. The gateway may import
# the pipeline (ingest.gateway sits above ingest.pipeline; tcec/server.py imports that module),
# but ingest.pipeline.publish brings the alert engine and most of the pipeline with it, which
# the GB/T 32960 gateway does not otherwise load: this copy is kept instead (one shared home
# would be a small module below both, such as ingest.transport_errors).
_AWAY: Final = (KafkaTimeoutError, BrokerNotAvailableError, KafkaUnavailableError)
_TOO_LARGE: Final = (MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError)
_BACKOFF_MAX_S: Final = 2.0
_MAX_BATCH_BYTES: Final = 512 * 1024


def batch_bytes(max_request_size: int) -> int:
    """The producer's ``max_batch_size``: how many bytes of frames one batch holds at most
    (a batch always takes its first record, so a larger frame goes alone)."""
    return min(_MAX_BATCH_BYTES, max_request_size)


def retriable(exc: BaseException) -> bool:
    """True for an error another attempt can get past (connection, timeout, leadership)."""
    if isinstance(exc, KafkaError):
        return bool(exc.retriable) or isinstance(exc, _AWAY)
    return isinstance(exc, (OSError, TimeoutError))


def _refused(exc: BaseException) -> bool:
    """A batch's failure that sending it again cannot get past (too large for the topic, not
    authorised), as opposed to one that was never written: behind another batch's gap
    (OutOfOrderSequenceNumber, fine with a new producer), caught by a producer's stop, or
    retriable."""
    if isinstance(exc, (*NOT_WRITTEN, asyncio.CancelledError)):
        return False
    return not retriable(exc)


class Pending:
    """One frame on its way to Kafka and whom to tell when it got there."""

    __slots__ = ("alone", "done", "headers", "key", "read_at", "topic", "value")

    def __init__(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: list[tuple[str, bytes]],
        done: Callable[[BaseException | None], None],
        read_at: float,
    ) -> None:
        self.topic = topic
        self.value = value
        self.key = key
        self.headers = headers
        self.done = done
        self.read_at = read_at
        # Goes in a batch of its own: its batch was refused as too large for the topic (whose
        # max.message.bytes is below the batch size), which may be this frame's doing or not.
        self.alone = False


# Keys are device identities, and a device sends every few seconds: murmur2 in Python costs
# ~3 µs, a dict hit ~0.1. One entry per device (a process plans 100,000): bounded at ~260,000
# (~30 MB at most), cleared when full.
_HASH_CACHE: Final = 1 << 18


class _Sent:
    """One batch handed to a producer, until Kafka resolves it."""

    __slots__ = ("again", "items", "producer", "resolved")

    def __init__(self, items: list[Pending], producer: Any) -> None:
        self.items = items
        self.producer = producer
        self.resolved = False
        self.again = False  # failed, never written: its frames go again


class _Lane:
    """One topic-partition's frames waiting to be batched, in read order, and its batches that
    Kafka has not resolved yet (and those that failed, waiting to go again)."""

    __slots__ = ("busy", "items", "sent", "unresolved")

    def __init__(self) -> None:
        self.items: list[Pending] = []
        self.busy = False  # a task is batching and submitting this lane's frames
        # In submission order: the unresolved batches, the failed ones whose frames go again
        # once those are resolved, and acknowledged ones only while one of those is ahead of
        # them. Never every batch sent under steady traffic: each costs its frames' memory.
        self.sent: collections.deque[_Sent] = collections.deque()
        # How many of ``sent`` are unresolved: counted, as scanning ``sent`` at every
        # acknowledgement costs its length each time.
        self.unresolved = 0


class Dispatcher:
    """The queue in front of the producer, and the budget of what is in flight."""

    def __init__(
        self,
        producers: ProducerPool,
        metrics: GatewayMetrics,
        budget: Budget,
        on_free: Callable[[], None],
    ) -> None:
        self.producers = producers
        self._metrics = metrics
        self.budget = budget
        self._on_free = on_free
        self._queue: collections.deque[Pending] = collections.deque()
        self._lanes: dict[tuple[str, int], _Lane] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._hashes: dict[bytes, int] = {}
        self._spread = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        # Progress clock: the last acknowledgement, or when frames started waiting (``stalled``).
        self._progress = time.monotonic()

    def submit(self, item: Pending) -> None:
        """Queue a frame (the caller pauses reading when ``budget.full``)."""
        if self.budget.frames == 0:
            self._progress = time.monotonic()
        self.budget.take(len(item.value))
        self._idle.clear()
        self._queue.append(item)
        self._wake.set()

    async def drained(self) -> None:
        """Return once nothing is queued or waiting for an acknowledgement."""
        await self._idle.wait()

    async def run(self) -> None:
        """Route queued frames to their partitions' lanes, in order, until cancelled."""
        backoff = 0.05
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._queue:
                    try:
                        await self._route()
                    except Exception as exc:
                        # Only the metadata of the (new) head frame's topic can fail here.
                        if not retriable(exc):
                            self._finish(self._queue.popleft(), exc, time.monotonic())
                            continue
                        log.warning("Kafka does not take frames (%r); again in %.2fs", exc, backoff)
                        await asyncio.sleep(backoff)  # the queue head stays: order is kept
                        backoff = min(backoff * 2, _BACKOFF_MAX_S)
                        continue
                    backoff = 0.05
        finally:
            for task in self._tasks:
                task.cancel()

    def stalled(self, after_s: float) -> bool:
        """True when frames wait and Kafka acknowledged none for ``after_s`` seconds (a broker
        away: aiokafka keeps retrying its batches, so no error says so)."""
        return self.budget.frames > 0 and time.monotonic() - self._progress > after_s

    async def _route(self) -> None:
        """Move every queued frame to its partition's lane; start the lanes' senders."""
        queue, lanes, hashes = self._queue, self._lanes, self._hashes
        partitions: dict[str, list[int]] = {}  # per topic, read once per pass from metadata
        started: list[tuple[tuple[str, int], _Lane]] = []
        try:
            while queue:
                item = queue[0]
                topic, key = item.topic, item.key
                ids = partitions.get(topic)
                if ids is None:
                    producer = self.producers.current
                    ids = partitions[topic] = sorted(await producer.partitions_for(topic))
                if key is None:
                    # No key (a dead letter without identity): spread, as aiokafka does at random.
                    part = ids[self._spread % len(ids)]
                    self._spread += 1
                else:
                    h = hashes.get(key)
                    if h is None:
                        if len(hashes) >= _HASH_CACHE:
                            hashes.clear()
                        h = hashes[key] = murmur2(key) & 0x7FFFFFFF
                    part = ids[h % len(ids)]
                queue.popleft()
                lane = lanes.get((topic, part))
                if lane is None:
                    lane = lanes[topic, part] = _Lane()
                lane.items.append(item)
                if not lane.busy:
                    lane.busy = True
                    started.append(((topic, part), lane))
        finally:
            # Also when a later frame's topic has no metadata (Kafka away, a topic missing):
            # a lane marked busy above sends only by its task; without one, its frames (and
            # the in-flight budget they hold) stayed stuck for good, every socket paused.
            for tp, lane in started:
                self._start_lane(tp, lane)

    def _start_lane(self, tp: tuple[str, int], lane: _Lane) -> None:
        lane.busy = True
        task = asyncio.get_running_loop().create_task(self._send_lane(tp, lane))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_lane(self, tp: tuple[str, int], lane: _Lane) -> None:
        """Batch and submit the lane's frames until it is empty, or until it must wait for
        batches still with a replaced producer (the last of them starts the lane again)."""
        topic, partition = tp
        backoff = 0.05
        try:
            while lane.items:
                producer = await self.producers.ready()
                if lane.unresolved and lane.sent[-1].producer is not producer:
                    # Batches of this partition are still with the producer that was replaced
                    # (the lane's unresolved batches all have one producer: it changes only
                    # once none is left): if they fail, they go again before these frames
                    # (read order). The last of them to resolve starts the lane again.
                    return
                batch = producer.create_batch()
                items = lane.items
                n = 0
                for item in items:
                    if item.alone and n:
                        break
                    if (
                        batch.append(
                            key=item.key, value=item.value, timestamp=None, headers=item.headers
                        )
                        is None
                    ):
                        break  # full (a batch always takes its first record)
                    n += 1
                    if item.alone:
                        break
                sent = _Sent(items[:n], producer)
                del items[:n]
                batch.close()  # ours to fill: aiokafka must neither add to it nor linger
                # In the lane before the await: a batch of the lane resolving meanwhile must see
                # that this one is still to come (frames to go again wait for it, in order).
                lane.sent.append(sent)
                lane.unresolved += 1
                self.producers.use(producer)
                try:
                    fut = await producer.send_batch(batch, topic, partition=partition)
                except Exception as exc:
                    # The last of the lane (only this task appends to it): no scan.
                    lane.sent.pop()
                    lane.unresolved -= 1
                    self.producers.release(producer)
                    if not retriable(exc):
                        self._failed(sent.items, exc)
                        self._settle(tp, lane)
                        continue
                    lane.items[:0] = sent.items  # this batch first: order is kept
                    # An earlier batch of the lane may have failed while this one waited for
                    # it to drain: its frames go again before these (in _settle, now that no
                    # batch of the lane is unresolved). Without this, nothing resolved later
                    # to settle the lane, and it waited for the old producer for good.
                    self._settle(tp, lane)
                    log.warning("Kafka does not take frames (%r); again in %.2fs", exc, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, _BACKOFF_MAX_S)
                    continue
                backoff = 0.05
                fut.add_done_callback(functools.partial(self._delivered, tp, lane, sent))
        finally:
            lane.busy = False

    def _delivered(
        self, tp: tuple[str, int], lane: _Lane, sent: _Sent, fut: asyncio.Future[Any]
    ) -> None:
        exc = asyncio.CancelledError() if fut.cancelled() else fut.exception()
        sent.resolved = True
        lane.unresolved -= 1
        self.producers.release(sent.producer)
        if exc is None:
            self._progress = now = time.monotonic()
            for item in sent.items:
                self._finish(item, None, now)
        else:
            # Accepted by the producer, then failed: the batch had its sequence numbers, the
            # partition's sequence has a gap (ingest.gateway.renewal). A new producer.
            self.producers.broken(sent.producer)
            if isinstance(exc, _TOO_LARGE) and len(sent.items) > 1:
                # The topic's limit is below the batch: each frame again alone, so that only
                # a frame too large by itself is refused.
                for item in sent.items:
                    item.alone = True
                sent.again = True
            elif _refused(exc):
                self._failed(sent.items, exc)
            else:  # never written (behind the gap, expired, the broker away): again, in order
                sent.again = True
                self._metrics.produce_retries.inc(len(sent.items))
        self._settle(tp, lane)

    def _settle(self, tp: tuple[str, int], lane: _Lane) -> None:
        """Drop the batches done with (acknowledged or refused for good) from the front of the
        lane's; once every batch of the lane is resolved, the frames of those that failed go
        back to the head of the lane (in their batches' order, before frames read after them).
        O(1) per resolution, amortised: each batch is dropped once."""
        sent = lane.sent
        # Under steady traffic some batch of the lane is always unresolved: without this, the
        # lane kept every batch it ever sent (and their frames) until a lull.
        while sent and sent[0].resolved and not sent[0].again:
            sent.popleft()
        if lane.unresolved:
            return
        again = [item for s in sent if s.again for item in s.items]
        sent.clear()
        if again:
            lane.items[:0] = again
        if lane.items and not lane.busy:
            self._start_lane(tp, lane)

    def _failed(self, items: list[Pending], exc: BaseException) -> None:
        log.error(
            "Kafka refused %d frames for good: %r; their senders get the error flag",
            len(items),
            exc,
            extra={"topic": items[0].topic},
        )
        now = time.monotonic()
        for item in items:
            self._finish(item, exc, now)

    def _finish(self, item: Pending, exc: BaseException | None, now: float) -> None:
        if exc is None:
            self._metrics.produce_latency.observe(now - item.read_at)
        freed = self.budget.give(len(item.value))
        if self.budget.frames == 0:
            self._idle.set()
        try:
            item.done(exc)
        finally:
            if freed:
                self._on_free()
