"""The worker's RenewableProducer against a real broker: whatever happens to a renewal (the
worker stopping while the new producer starts, the renewing send cancelled by a revoke), no
producer is left running, its sender or connections open."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import ProducerClosed

from ingest.pipeline.kafka_clients import RenewableProducer
from tests.integration.pipeline_support import until
from tests.integration.test_publish_letters import make_topic

pytestmark = pytest.mark.integration


def closed(producer: AIOKafkaProducer) -> bool:
    """Stopped all the way: its sender ended and no connection is left open."""
    sender = producer._sender.sender_task
    conns = producer.client._conns.values()
    return bool(producer._closed and (sender is None or sender.done())) and not any(
        c.connected() for c in conns
    )


async def test_a_stop_while_a_new_producer_starts_leaves_none_running(
    kafka_bootstrap: str,
) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    made: list[AIOKafkaProducer] = []

    class Held(AIOKafkaProducer):  # type: ignore[misc]  # aiokafka is untyped
        """A real start, then held until the test has stopped the worker's producer."""

        async def start(self) -> None:
            await super().start()
            started.set()
            await release.wait()

    def make() -> AIOKafkaProducer:
        made.append(Held(bootstrap_servers=kafka_bootstrap, enable_idempotence=True))
        return made[-1]

    first = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await first.start()
    producers = RenewableProducer(first, make)
    renewal = asyncio.ensure_future(producers.renew(producers.current))
    await asyncio.wait_for(started.wait(), 30)
    stopping = asyncio.ensure_future(producers.stop())  # the worker's _close
    await until(lambda: asyncio.sleep(0, first._closed), timeout_s=10, what="the stop")
    release.set()  # the new producer's start returns, after the stop
    await asyncio.wait_for(stopping, 30)
    with pytest.raises(ProducerClosed):
        await renewal
    (fresh,) = made
    assert producers.current is first  # not replaced once stopped
    assert closed(first)
    assert closed(fresh), "the producer started during the stop is left running"
    with pytest.raises(ProducerClosed):  # and none is started after it
        await producers.renew(first)
    assert len(made) == 1


async def test_a_renewal_cancelled_while_the_old_producer_stops_still_stops_it(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("renew")
    await make_topic(kafka_bootstrap, topic, 1)
    stopping, release = asyncio.Event(), asyncio.Event()

    class Flushing(AIOKafkaProducer):  # type: ignore[misc]  # aiokafka is untyped
        """Its stop waits, as aiokafka's does while it flushes pending messages to a broker."""

        async def stop(self) -> None:
            stopping.set()
            await release.wait()
            await super().stop()

    def make() -> AIOKafkaProducer:
        return AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)

    first = Flushing(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await first.start()
    await first.send_and_wait(topic, b"x")  # connected to the partition's leader
    producers = RenewableProducer(first, make)
    try:
        renewal = asyncio.ensure_future(producers.renew(first))
        await asyncio.wait_for(stopping.wait(), 30)  # the old producer is being stopped
        renewal.cancel()  # Writer.abandon cancelling the lane's attempt on a revoke
        with contextlib.suppress(asyncio.CancelledError):  # or it was done already
            await renewal
        release.set()
        await until(
            lambda: asyncio.sleep(0, closed(first)),
            timeout_s=15,
            what="the replaced producer to be stopped all the way",
        )
    finally:
        release.set()
        await producers.stop()
