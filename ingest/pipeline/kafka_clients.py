"""A worker's Kafka clients: started with a backoff while no broker answers, stopped best
effort, and the rebalance listener that hands aiokafka's callbacks to the worker.

A worker restarted during a broker outage waits for the broker, as a running one does, instead
of crash-looping; a stop requested meanwhile ends the wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from aiokafka.abc import ConsumerRebalanceListener

from ingest.pipeline.logs import RateLimiter
from ingest.pipeline.metrics import PipelineMetrics
from ingest.pipeline.publish import TRANSIENT_KAFKA, Producer, retriable

__all__ = ["RebalanceListener", "as_producer", "start_client", "stop_clients", "stop_quietly"]

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


async def stop_quietly(client: Any) -> None:
    with contextlib.suppress(Exception):  # a half-started client: best effort
        await asyncio.wait_for(client.stop(), 5)


async def stop_clients(consumer: Any, producer: Any) -> None:
    """Stop both clients on the way out, each within 5 s; a failure is logged, not raised."""
    for what, closer in (("consumer", consumer.stop), ("producer", producer.stop)):
        try:
            await asyncio.wait_for(closer(), 5)
        except Exception as exc:  # best effort on the way out
            log.warning("stopping the Kafka %s failed: %r", what, exc)


def as_producer(producer: Any) -> Producer:
    return producer  # type: ignore[no-any-return]
