"""A worker's Kafka clients are closed within their bound on the way out, even when one of them
cannot close: the broker hangs (it takes connections but answers nothing) while the worker's
producer has a batch in flight and its replacement is starting (a dead letter the broker
refused). ``stop_clients`` used to cancel the producer's stop after 5 s and wait on: the
cancellation was used up inside the stop of the current producer, whose flush cannot end, and
``RenewableProducer.stop``'s ``finally`` then waited for the renewal under way without a bound,
past the supervisor's stop deadline (the worker was killed). Now a client that does not close in
its bound is left behind with one WARNING; the offsets are in the database by then."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from ingest.pipeline.closing import CLIENTS_S, left_behind
from ingest.pipeline.kafka_clients import RenewableProducer, stop_clients
from tests.integration.private_services import PrivateKafka

pytestmark = pytest.mark.integration

# A safety net for the test (a regression fails instead of hanging the suite), far above the
# clients' bound; nothing here asserts how fast anything is.
NET_S = 120.0


async def test_stop_clients_leaves_behind_what_a_hung_broker_keeps_from_closing(
    broker: PrivateKafka, caplog: pytest.LogCaptureFixture, unique_name: Callable[[str], str]
) -> None:
    kafka = broker.bootstrap
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, group_id=unique_name("g"))
    await consumer.start()
    consumer.subscribe(["veh"])
    while not consumer.assignment():  # a member of the group: its close has to leave it
        await consumer.getmany(timeout_ms=200)
    current = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", enable_idempotence=True)
    await current.start()
    await (await current.send("dlq", b"acknowledged"))  # metadata and connection in place
    stuck: list[asyncio.Future[Any]] = []
    with broker.frozen():
        unacked = await current.send("dlq", b"in flight when the broker hung")
        producers = RenewableProducer(
            current,
            # Its start waits for the broker's answer, which does not come.
            lambda: AIOKafkaProducer(bootstrap_servers=kafka, request_timeout_ms=600_000),
        )
        stuck.append(asyncio.ensure_future(producers.renew(current)))
        await asyncio.sleep(0)  # the renewal holds its lock
        stopping = asyncio.ensure_future(stop_clients(consumer, producers))
        stuck.append(stopping)
        try:
            done, _ = await asyncio.wait({stopping}, timeout=NET_S)
            assert stopping in done, "stop_clients waited on past the clients' bound"
            stopping.result()  # nothing raised
            warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            gone = [w for w in warnings if "did not close" in w]
            want = f"the Kafka producer did not close within {CLIENTS_S:g}s"
            assert any(w.startswith(want) for w in gone), warnings
            assert all("nothing is lost" in w for w in gone), gone
            assert not unacked.done()  # never taken for written
        finally:
            stuck += left_behind()
    # What the worker leaves behind goes with its process; here the test closes it.
    for task in stuck:
        task.cancel()
    await asyncio.wait(stuck, timeout=NET_S)
    await asyncio.wait_for(reclaim(consumer, current), NET_S)


async def reclaim(consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
    """Close the connections and tasks of clients whose stop was given up half way (their
    ``stop`` does nothing a second time): what a worker's exit reclaims with its process."""
    sender = producer._sender.sender_task
    sender.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sender
    await producer.client.close()
    # The abandoned consumer's group coordinator keeps heartbeating into the session's event
    # loop otherwise, logging errors into later tests' captured logs (test_closing's).
    coordinator = consumer._coordinator
    coordinator._coordination_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await coordinator._coordination_task
    await coordinator._stop_heartbeat_task()
    await coordinator._stop_commit_offsets_refresh_task()
    await consumer._fetcher.close()
    await consumer._client.close()
