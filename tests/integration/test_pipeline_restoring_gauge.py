"""Partitions waiting for their stored offsets and alert state (the start of every assignment; a
large restore takes minutes) are held paused, but counted as restoring, not as paused: the
paused-partition gauges, and the alerts on them (NevIngestShardDown, NevIngestPartitionsPaused),
mean a slow or failing database. A real consumer holds the assignment; ``Worker`` is built only
as far as ``_apply_backpressure`` reads it (the restore itself is tested with the service)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry

from ingest.config import Settings
from ingest.pipeline.backpressure import Backpressure
from ingest.pipeline.metrics import PipelineMetrics
from ingest.pipeline.process import worker_options
from ingest.pipeline.worker import Worker

pytestmark = pytest.mark.integration


def _worker(consumer: AIOKafkaConsumer, shards: int) -> Worker:
    w = Worker.__new__(Worker)
    w.options = dataclasses.replace(worker_options(Settings()), shards=shards)
    w.metrics = PipelineMetrics(CollectorRegistry())
    w.bp = Backpressure(1_000_000, resume_ratio=0.5, pause_after_s=1.0, shards=shards)
    w.consumer = consumer
    w.needs_seek = set()
    w._down = set()
    w._full = set()
    return w


def _gauge(w: Worker, name: str, **labels: str) -> float | None:
    return w.metrics.registry.get_sample_value(f"nev_ingest_{name}", labels)


async def test_restoring_partitions_are_held_but_not_counted_as_paused(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic(4, "restore")
    tps = {TopicPartition(topic, p) for p in range(4)}
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(sorted(tps))
        for tp in sorted(tps):  # positions known: the consumer is settled on the assignment
            await consumer.position(tp)
        w = _worker(consumer, shards=2)
        w.needs_seek = set(tps)  # just assigned: offsets and alert state being loaded
        w._apply_backpressure()
        assert consumer.paused() == tps  # held until restored, as before
        assert _gauge(w, "paused_partitions") == 0
        assert _gauge(w, "shard_paused_partitions", shard="0") == 0
        assert _gauge(w, "shard_paused_partitions", shard="1") == 0
        assert _gauge(w, "restoring_partitions") == 4

        # Shard 1 fails (its load failed): its partitions are paused for that, not restoring.
        w.bp.set_sink_healthy(False, 1)
        w._apply_backpressure()
        assert _gauge(w, "restoring_partitions") == 2
        assert _gauge(w, "shard_paused_partitions", shard="1") == 2
        assert _gauge(w, "shard_paused_partitions", shard="0") == 0
        assert _gauge(w, "paused_partitions") == 2

        # Restored, shard 1 back: nothing held.
        w.bp.set_sink_healthy(True, 1)
        w.needs_seek = set()
        w._apply_backpressure()
        assert consumer.paused() == set()
        assert _gauge(w, "restoring_partitions") == 0
        assert _gauge(w, "paused_partitions") == 0

        # Writes slow, every shard healthy: backpressure pauses all, no shard is down (the
        # critical NevIngestShardDown is for a failing shard; NevIngestPartitionsPaused for this).
        w.bp.add(1_000_000)
        w.bp.pause_after_s = 0.0
        w._apply_backpressure()
        assert consumer.paused() == tps
        assert _gauge(w, "paused_partitions") == 4
        assert _gauge(w, "shard_paused_partitions", shard="0") == 0
        assert _gauge(w, "shard_paused_partitions", shard="1") == 0
    finally:
        await consumer.stop()
