"""A worker's Kafka clients: started with a backoff while no broker answers, stopped best
effort, the producer that a broker's refusal replaces (``RenewableProducer``), and the
rebalance listener that hands aiokafka's callbacks to the worker.

A worker restarted during a broker outage waits for the broker, as a running one does, instead
of crash-looping; a stop requested meanwhile ends the wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import ProducerClosed

from ingest.pipeline.closing import CLIENTS_S, close_within
from ingest.pipeline.logs import RateLimiter
from ingest.pipeline.metrics import PipelineMetrics
from ingest.pipeline.publish import TRANSIENT_KAFKA, Producer, retriable

__all__ = [
    "RebalanceListener",
    "RenewableProducer",
    "as_producer",
    "start_client",
    "stop_clients",
    "stop_quietly",
]

log = logging.getLogger(__name__)


class _RebalanceHandler(Protocol):
    async def on_revoked(self, revoked: set[Any]) -> None: ...

    async def on_assigned(self, assigned: set[Any]) -> None: ...


class RebalanceListener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    """Hands aiokafka's rebalance callbacks to the worker (it awaits them before rejoining)."""

    def __init__(self, handler: _RebalanceHandler) -> None:
        self._handler = handler

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._handler.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._handler.on_assigned(set(assigned))


async def start_client(
    what: str,
    make: Callable[[], Any],
    stop: asyncio.Event,
    *,
    metrics: PipelineMetrics,
    backoff_initial_s: float,
    backoff_max_s: float,
) -> Any | None:
    """A started Kafka client (``what`` names it in the log); while no broker answers,
    retried with a doubling backoff. None when ``stop`` is set first."""
    backoff = backoff_initial_s
    limiter = RateLimiter(30.0)
    while not stop.is_set():
        # Each attempt is the start making progress: the heartbeat says so (the consume loop
        # stamps it once running), so a worker waiting for the broker is not taken for stalled.
        metrics.heartbeat.set(time.time())
        client = make()
        try:
            await client.start()
            return client
        except TRANSIENT_KAFKA as exc:
            if not retriable(exc):
                raise
            await stop_quietly(client)
            metrics.kafka_connected.set(0)
            if limiter.allow(what) is not None:
                log.warning(
                    "Kafka does not answer (%r); starting the %s again in %.1fs",
                    exc,
                    what,
                    backoff,
                )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), backoff)
        backoff = min(backoff * 2, backoff_max_s)
    return None


# The producer's in-flight alert messages are not re-read from Kafka: their alerts_outbox rows
# stay (deleted only once acknowledged) and the next owner of their partitions sends them.
_PRODUCER_UNDONE = (
    "nothing is lost: the alert messages it had in flight stay in alerts_outbox and the next "
    "owner of their partitions sends them"
)


async def stop_quietly(client: Any) -> None:
    """Stop a half-started or replaced client, best effort, within ``CLIENTS_S``."""
    await close_within("a Kafka client", client.stop, CLIENTS_S, quiet=True)


async def stop_clients(consumer: Any, producer: Any) -> None:
    """Stop both clients on the way out, together, within ``CLIENTS_S``; one that fails
    or does not close in time is logged (one WARNING) and left behind, never raised: the
    offsets are committed and the rows durable before this (or what was not is given up and
    read again), so abandoning a client loses nothing."""
    await asyncio.gather(
        close_within("the Kafka consumer", consumer.stop, CLIENTS_S),
        close_within("the Kafka producer", producer.stop, CLIENTS_S, undone=_PRODUCER_UNDONE),
    )


class RenewableProducer:
    """The worker's producer (dead letters and alerts), replaced by a new one on ``renew``.

    A batch the broker refuses (a dead letter over the dead-letter topic's max.message.bytes)
    leaves a gap in the idempotent producer's sequence on that partition: aiokafka numbers a
    batch when it sends it and never takes the number back, so the broker answers every later
    batch there with OutOfOrderSequenceNumber. Only a new producer (a new producer id, whose
    sequence starts afresh) can write there again (ingest.pipeline.publish).

    Several write lanes send at once: each borrows the current producer with ``use`` for a
    send and its acknowledgements. A replaced producer is stopped only when the last send
    using it is done: stopping it earlier would fail those sends (ProducerClosed, or an alert
    waiting for its topic's metadata left waiting for ever) and have them all sent again,
    while each of them, but for those behind the gap, was going through."""

    def __init__(
        self, producer: Any, make: Callable[[], Any], on_renew: Callable[[], object] = lambda: None
    ) -> None:
        self._current = producer
        self._make = make
        self._on_renew = on_renew  # counts the replacements (PipelineMetrics)
        self._lock = asyncio.Lock()
        self._stopped = False
        self._users: dict[Any, int] = {}  # producer -> sends using it now
        self._retired: set[Any] = set()  # replaced, stopped when their last user is done
        self._stopping: set[asyncio.Task[None]] = set()  # replaced producers being stopped

    @property
    def current(self) -> Producer:
        return as_producer(self._current)

    @contextlib.contextmanager
    def use(self) -> Iterator[Producer]:
        """The current producer, for one send and its acknowledgements; a renewal meanwhile
        does not stop it under them. ``ProducerClosed`` after ``stop``."""
        if self._stopped:
            raise ProducerClosed()
        producer = self._current
        self._users[producer] = self._users.get(producer, 0) + 1
        try:
            yield as_producer(producer)
        finally:
            self._users[producer] -= 1
            if not self._users[producer]:
                del self._users[producer]
                if producer in self._retired:
                    self._retired.discard(producer)
                    self._stop_later(producer)

    async def renew(self, failed: Producer) -> bool:
        """Replace ``failed`` by a new, started producer, unless that happened already (several
        sends see the same gap; one new producer serves them all): True when this call
        replaced it. Raises what starting the new one raised (the broker away: retriable);
        ``failed`` is then still the current one, and the next attempt renews it again;
        ``ProducerClosed`` once ``stop`` was called (before or while the new one started: it
        is stopped, not left running). The old producer is stopped once the sends using it
        are done: their messages go through, but for those behind the gap, which fail
        (OutOfOrderSequenceNumber) and which their senders send again with the new one."""
        async with self._lock:
            if self._stopped:  # the worker's stop: no new producer to leave running
                raise ProducerClosed()
            if failed is not self._current:
                return False
            fresh = self._make()
            try:
                await fresh.start()
            except BaseException:
                self._stop_later(fresh)
                raise
            if self._stopped:  # stop() came while it started: stop() already stopped the old
                self._stop_later(fresh)
                raise ProducerClosed()
            self._current = fresh
        self._on_renew()
        log.warning(
            "the Kafka producer was replaced by a new one: a batch the broker refused left a "
            "gap in its sequence numbers, which the broker would refuse every later batch for"
        )
        if failed in self._users:
            self._retired.add(failed)
        else:
            self._stop_later(failed)
        return True

    def _stop_later(self, producer: Any) -> None:
        """Stop ``producer`` in a task of its own, not the caller's: a caller cancelled meanwhile
        (``Writer.abandon`` cancels a lane's attempt on a revoke) would leave it half-stopped,
        its sender or connections running, and aiokafka's stop() does nothing a second time.
        ``stop`` waits for these."""
        task = asyncio.ensure_future(stop_quietly(producer))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def stop(self) -> None:
        self._stopped = True
        try:
            await self._current.stop()
        finally:
            # A renewal under way ends first (it sees _stopped and stops its new producer),
            # then every replaced producer's stop, those still in use too (the worker is
            # going): when this stop completes, none is left running. When it does not (the
            # worker's close_within gives up on it, a broker that does not answer), they are
            # left behind with it and end with the process.
            async with self._lock:
                pass
            for producer in self._retired:
                self._stop_later(producer)
            self._retired.clear()
            await asyncio.gather(*self._stopping, return_exceptions=True)


def as_producer(producer: Any) -> Producer:
    return producer  # type: ignore[no-any-return]
