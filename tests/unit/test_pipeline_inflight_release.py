"""What leaves flight without a commit gives back exactly the frames and bytes it took: the
writer's abandon (a revoke that timed out, a stop), the writer's and the worker's drops after a
fence, the revoke's reset of the open batch. A byte count that drifted up would keep a worker
paused for good (pipeline.max_in_flight_bytes); the commit path is covered by
tests/integration/test_pipeline_inflight_bytes.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from contract.rows import FrameRows
from ingest.pipeline.backpressure import Backpressure, Held
from ingest.pipeline.batch import Batch, BatchBuilder
from ingest.pipeline.metrics import PipelineMetrics
from ingest.pipeline.worker import Worker
from ingest.pipeline.writer import Writer
from tests.unit.kafka_records import Rec

pytestmark = pytest.mark.unit

TOPIC = "nev.vehicle.raw"
TPS = [TopicPartition(TOPIC, p) for p in range(4)]


def _decode(value: bytes, received_ms: int) -> FrameRows:
    return FrameRows(edition=2016, command=2, vin=value[:17].decode(), ts_ms=received_ms)


def _fill(builder: BatchBuilder, bp: Backpressure) -> dict[TopicPartition, Held]:
    """Records of each partition, of sizes that differ per partition, added as the worker
    adds them; what each partition took."""
    took = {}
    headers: list[tuple[str, Any]] = [("gateway", b"gw"), ("peer", None)]  # Kafka allows None
    for tp in TPS:
        values = [b"V" * 17 + b"x" * (100 * tp.partition + i) for i in range(5)]
        recs = [Rec(TOPIC, tp.partition, i, v, headers=headers) for i, v in enumerate(values)]
        held = builder.add(tp, recs, start=0)
        bp.add(*held)
        took[tp] = held
    return took


def _writer(bp: Backpressure, *, lanes: int = 2, shards: int = 1) -> Writer:
    # Its lanes are never started (but in the wake-up test): what is submitted stays queued,
    # as behind a stalled write.
    return Writer(
        sink=None,  # type: ignore[arg-type]  # not reached: no lane runs
        producers=None,  # type: ignore[arg-type]  # not reached: nothing is published
        metrics=PipelineMetrics(CollectorRegistry()),
        backpressure=bp,
        dlq_topic="dlq",
        alerts_topic="alerts",
        commit=lambda offsets: None,
        on_fenced=lambda fenced: None,
        lanes=lanes,
        shards=shards,
    )


def test_abandon_gives_back_every_byte_of_the_queued_parts() -> None:
    bp = Backpressure(1000, max_bytes=10**6)
    builder = BatchBuilder({TOPIC: _decode})
    _fill(builder, bp)
    assert bp.in_flight == 20 and bp.in_flight_bytes > 0
    writer = _writer(bp)
    writer.submit(builder.take())  # split over the two lanes
    assert writer.abandon("revoked") == 20
    assert (bp.in_flight, bp.in_flight_bytes) == (0, 0)


def test_abandon_gives_back_the_bytes_of_the_batch_being_written() -> None:
    bp = Backpressure(1000, max_bytes=10**6)
    builder = BatchBuilder({TOPIC: _decode})
    _fill(builder, bp)
    writer = _writer(bp)
    writer.submit(builder.take())
    lane = writer._lanes[0]  # its write under way (the lanes never run here)
    lane.current = lane.queue.popleft()
    assert writer.abandon("stopped") == 20
    assert (bp.in_flight, bp.in_flight_bytes) == (0, 0)


def test_a_fence_in_the_writer_gives_back_that_partition_s_bytes() -> None:
    bp = Backpressure(1000, max_bytes=10**6)
    builder = BatchBuilder({TOPIC: _decode})
    took = _fill(builder, bp)
    before = bp.in_flight_bytes
    writer = _writer(bp)
    writer.submit(builder.take())
    writer.drop_partitions([TPS[2]])
    assert (bp.in_flight, bp.in_flight_bytes) == (15, before - took[TPS[2]].bytes)


def _worker(bp: Backpressure, builder: BatchBuilder) -> Worker:
    w = Worker.__new__(Worker)  # only what the fence and the reset touch
    w.bp, w.builder, w.owned = bp, builder, set()
    return w


def test_a_fence_in_the_worker_gives_back_that_partition_s_bytes() -> None:
    bp = Backpressure(1000, max_bytes=10**6)
    builder = BatchBuilder({TOPIC: _decode})
    took = _fill(builder, bp)
    before = bp.in_flight_bytes
    _worker(bp, builder)._on_fenced({(TOPIC, 1): 3})
    assert (bp.in_flight, bp.in_flight_bytes) == (15, before - took[TPS[1]].bytes)


class _Sink:
    """The sink calls a revoke makes once its writer drained (nothing pending here)."""

    async def delete_published(self) -> None:
        return None

    def on_partitions_lost(self, partitions: Any) -> None:
        return None


class _Committer:
    async def flush(self) -> None:
        return None


async def test_a_revoke_gives_back_the_open_batch_s_bytes() -> None:
    bp = Backpressure(1000, max_bytes=10**6)
    builder = BatchBuilder({TOPIC: _decode})
    w = _worker(bp, builder)
    writer = _writer(bp)
    w.writer, w.sink, w.committer = writer, _Sink(), _Committer()  # type: ignore[assignment]
    w.metrics = PipelineMetrics(CollectorRegistry())
    w.options = type("Options", (), {"revoke_timeout_s": 0.01})()
    w.moves, w.positions, w.stored, w.rewind = {}, {}, {}, {}
    w.needs_seek, w.restored, w.lag = set(), set(), None
    w._seal = lambda: None  # type: ignore[method-assign]  # the open batch stays open: fetched while the writer drained
    _fill(builder, bp)
    await asyncio.wait_for(w.on_revoked(set(TPS)), 5)
    assert (bp.in_flight, bp.in_flight_bytes) == (0, 0)


def test_at_a_bound_the_open_batch_is_sealed_only_with_the_healthy_lanes_idle() -> None:
    # Sealed while a healthy lane writes, the open batch would be cut to what each commit
    # frees; not sealed while only a failing shard's lane retries, the healthy shards' frames
    # would wait out pause_after_s and then pause every partition.
    bp = Backpressure(20, max_bytes=10**6, shards=2)
    builder = BatchBuilder({TOPIC: _decode})
    _fill(builder, bp)
    writer = _writer(bp, lanes=1, shards=2)
    w = _worker(bp, builder)
    w.writer, w.positions = writer, {}
    busy = Batch(0, shard=0)
    writer._lanes[0].current = busy  # shard 0 (healthy) writing
    w._seal_at_bound()
    assert builder.size == 20  # not sealed
    writer._lanes[0].current = None
    writer._lanes[1].current = Batch(0, shard=1)  # only shard 1 busy ...
    bp.set_sink_healthy(False, 1)  # ... retrying: its database is down
    w._seal_at_bound()
    assert builder.size == 0  # sealed: the healthy shard's lane takes its part
    assert sum(len(lane.queue) for lane in writer._lanes) == 2


async def test_a_lane_that_ends_without_a_commit_wakes_a_consumer_at_the_bound() -> None:
    # A batch a fence emptied ends with no commit (nor its wake-up): the consumer waiting at
    # the bound must still look again, or its open batch waits out pause_after_s and pauses.
    bp = Backpressure(20, max_bytes=10**6)
    bp.add(20, 100)  # full
    writer = _writer(bp)
    running = asyncio.create_task(writer.run())
    waiter = asyncio.create_task(bp.wait_room(30))
    try:
        for _ in range(5):
            await asyncio.sleep(0)
        assert not waiter.done()
        writer.submit(Batch(0))  # nothing left in it: the lane ends it without the sink
        await asyncio.wait_for(waiter, 5)
    finally:
        writer.close()
        await asyncio.wait_for(running, 5)
