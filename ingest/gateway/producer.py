"""The gateway's one path to Kafka: frames of every connection, produced in the order they were
read, each reported back when Kafka acknowledged it (acks=all) or failed for good.

One sender task takes frames from a queue in order and hands them to aiokafka's ``send``
(which batches them); per-frame tasks would not keep order, as ``send`` may wait for metadata
or buffer space. A frame whose delivery failed for a retriable reason (broker away, leader
moving, a batch expired unsent: what a broker outage looks like) is queued again, so an outage
of any length loses nothing; its answer waits. A frame refused for good (too large, not
authorised, topic missing) is reported to its connection, which answers with the error flag.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from aiokafka.errors import (
    BrokerNotAvailableError,
    KafkaError,
    KafkaTimeoutError,
    KafkaUnavailableError,
)

from ingest.gateway.limits import Budget
from ingest.gateway.metrics import GatewayMetrics

__all__ = ["Dispatcher", "Pending", "retriable"]

log = logging.getLogger(__name__)

# Not flagged retriable by aiokafka, yet what a broker that is away looks like. (The pipeline's
# ingest.pipeline.publish.retriable says the same; the gateway, a peer of the pipeline, cannot
# import it.)
_AWAY: Final = (KafkaTimeoutError, BrokerNotAvailableError, KafkaUnavailableError)
_BACKOFF_MAX_S: Final = 2.0


def retriable(exc: BaseException) -> bool:
    """True for an error another attempt can get past (connection, timeout, leadership)."""
    if isinstance(exc, KafkaError):
        return bool(exc.retriable) or isinstance(exc, _AWAY)
    return isinstance(exc, (OSError, TimeoutError))


class Pending:
    """One frame on its way to Kafka and whom to tell when it got there."""

    __slots__ = ("done", "headers", "key", "read_at", "topic", "value")

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


class Dispatcher:
    """The queue in front of the producer, and the budget of what is in flight."""

    def __init__(
        self,
        producer: Any,
        metrics: GatewayMetrics,
        budget: Budget,
        on_free: Callable[[], None],
    ) -> None:
        self._producer = producer
        self._metrics = metrics
        self.budget = budget
        self._on_free = on_free
        self._queue: collections.deque[Pending] = collections.deque()
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
        """Send queued frames in order until cancelled."""
        backoff = 0.05
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                item = self._queue[0]
                try:
                    fut = await self._producer.send(
                        item.topic, value=item.value, key=item.key, headers=item.headers
                    )
                except Exception as exc:
                    if not retriable(exc):
                        self._queue.popleft()
                        self._finish(item, exc)
                        continue
                    log.warning("Kafka does not take frames (%r); again in %.2fs", exc, backoff)
                    await asyncio.sleep(backoff)  # the queue head stays: order is kept
                    backoff = min(backoff * 2, _BACKOFF_MAX_S)
                    continue
                backoff = 0.05
                self._queue.popleft()
                fut.add_done_callback(lambda f, item=item: self._delivered(item, f))

    def stalled(self, after_s: float) -> bool:
        """True when frames wait and Kafka acknowledged none for ``after_s`` seconds (a broker
        away: aiokafka keeps retrying its batches, so no error says so)."""
        return self.budget.frames > 0 and time.monotonic() - self._progress > after_s

    def _delivered(self, item: Pending, fut: asyncio.Future[Any]) -> None:
        exc = None if fut.cancelled() else fut.exception()
        if fut.cancelled():
            exc = asyncio.CancelledError()
        if exc is not None and retriable(exc):
            self._metrics.produce_retries.inc()
            self._queue.append(item)  # after the outage, in the order the failures came back
            self._wake.set()
            return
        self._finish(item, exc)

    def _finish(self, item: Pending, exc: BaseException | None) -> None:
        if exc is None:
            self._progress = now = time.monotonic()
            self._metrics.produce_latency.observe(now - item.read_at)
        else:
            log.error(
                "Kafka refused a frame for good: %r; its sender gets the error flag",
                exc,
                extra={"topic": item.topic},
            )
        freed = self.budget.give(len(item.value))
        if self.budget.frames == 0:
            self._idle.set()
        try:
            item.done(exc)
        finally:
            if freed:
                self._on_free()
