"""The Kafka clients the benchmarks share: a consumer reading a topic from the start in a group
of its own, and the producer that preloads topics (one place for their tuning)."""

from __future__ import annotations

import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

__all__ = ["bench_producer", "fresh_consumer"]


def fresh_consumer(kafka: str, topic: str | list[str], group: str, **more: Any) -> AIOKafkaConsumer:
    """A consumer of ``topic`` (or topics) from its first offset, in a new group named
    ``group-<random>`` (so no committed offset of an earlier run applies), committing nothing
    itself."""
    return AIOKafkaConsumer(
        *([topic] if isinstance(topic, str) else topic),
        bootstrap_servers=kafka,
        group_id=f"{group}-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=2 * 1024 * 1024,
        **more,
    )


def bench_producer(kafka: str) -> AIOKafkaProducer:
    """The producer that fills a benchmark's topic: durable (acks=all), in large batches."""
    return AIOKafkaProducer(
        bootstrap_servers=kafka, acks="all", linger_ms=20, max_batch_size=1024 * 1024
    )
