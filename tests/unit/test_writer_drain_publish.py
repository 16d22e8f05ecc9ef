"""``Writer.drain`` covers the alert messages a lane still publishes after its commit. With two
lanes, the other lane's empty queue once set the drained event while the first waited for
Kafka's acknowledgement: a graceful stop or a revoke then deleted the acknowledged outbox rows
too early (the next owner sent the messages a second time), and with Kafka away the stop's
deadline never cancelled the publish (``abandon`` was not reached)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from ingest.pipeline.backpressure import Backpressure
from ingest.pipeline.batch import Batch, lane_of
from ingest.pipeline.metrics import PipelineMetrics
from ingest.pipeline.sink import AlertMessage, SinkResult
from ingest.pipeline.writer import Writer

pytestmark = pytest.mark.unit

TOPIC = "nev.vehicle.raw"


class _Sink:
    """The writer's sink as far as a commit goes: one partition's batch raised two alerts."""

    def __init__(self, alerting: TopicPartition) -> None:
        self.alerting = alerting  # the partition whose batch raised them
        self.published: list[int | None] = []

    async def write(self, batch: Batch, before_commit: Any) -> SinkResult:
        await before_commit([])
        if self.alerting not in batch.next:
            return SinkResult()
        return SinkResult(
            alerts=[
                AlertMessage("vehicle", "r", "critical", "raised", b"VIN", b"{}", i) for i in (1, 2)
            ]
        )

    def alerts_published(self, alerts: list[AlertMessage]) -> None:
        self.published.extend(a.outbox_id for a in alerts)


class _Producer:
    """Kafka acknowledges the alert messages only once ``ack`` is set."""

    def __init__(self, ack: asyncio.Event) -> None:
        self._ack = ack

    async def send(self, topic: str, value: bytes | None = None, **_: Any) -> Any:
        async def acknowledged() -> None:
            await self._ack.wait()

        return asyncio.ensure_future(acknowledged())


class _Producers:
    def __init__(self, ack: asyncio.Event) -> None:
        self._producer = _Producer(ack)

    @contextlib.contextmanager
    def use(self) -> Iterator[_Producer]:
        yield self._producer

    async def renew(self, failed: Any) -> bool:  # pragma: no cover - nothing fails here
        return True


async def test_drain_waits_for_the_alert_messages_a_lane_still_publishes() -> None:
    ack = asyncio.Event()
    lanes: dict[int, TopicPartition] = {}
    for p in range(8):  # a partition for each lane
        lanes.setdefault(lane_of(TOPIC, p, 2), TopicPartition(TOPIC, p))
    assert sorted(lanes) == [0, 1]
    sink = _Sink(alerting=lanes[0])
    writer = Writer(
        sink=sink,  # type: ignore[arg-type]  # the part of the sink a commit uses
        producers=_Producers(ack),  # type: ignore[arg-type]
        metrics=PipelineMetrics(CollectorRegistry()),
        backpressure=Backpressure(1000, max_bytes=10**6),
        dlq_topic="dlq",
        alerts_topic="alerts",
        commit=lambda offsets: None,
        on_fenced=lambda fenced: None,
        lanes=2,
    )
    run = asyncio.create_task(writer.run())
    for lane, tp in lanes.items():
        batch = Batch(0)
        batch.next, batch.start, batch.changes_only = {tp: 1}, {tp: 0}, True
        writer._lanes[lane].queue.append(batch)
        writer._lanes[lane].wakeup.set()
    writer._idle.clear()
    try:
        # Lane 1 is done at once; lane 0 waits for Kafka: the writer is not drained yet.
        assert await writer.drain(0.5) is False
        assert sink.published == []
        ack.set()
        assert await writer.drain(30) is True
        assert sink.published == [1, 2]  # acknowledged before drain said so
    finally:
        ack.set()
        writer.close()
        await run
