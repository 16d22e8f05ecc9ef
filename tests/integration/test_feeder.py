"""The benchmarks' feeder (``loadtest.feeder``) against the real broker: every built frame
arrives once, on the partition ``send`` would have chosen, in each device's order, with the
gateway headers (``received_at`` = its slice's send time) and its own; paced, the sends spread
over the run instead of leaving at once; past its pre-built chunk it builds the next."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from devtools.loadgen_send import peer_of
from devtools.sim.bench_frames import realtime_frames
from devtools.sim.fleet import Message
from loadtest.feeder import Feeder, FeedResult
from tests.integration.pipeline_support import read_topic

pytestmark = pytest.mark.integration

START_MS = 1_780_000_000_000


def _messages(vehicles: int, per_vehicle: int) -> list[Message]:
    out = []
    for n, (key, value) in enumerate(realtime_frames(vehicles, per_vehicle, start_ms=START_MS)):
        extra = (("interface", b"test"),) if n % 10 == 0 else ()  # the message's own headers
        out.append(Message(0, key, value, "realtime", "vehicle", extra))
    return out


async def _feed(
    kafka: str, topic: str, messages: list[Message], *, rate: float, prebuilt: int
) -> FeedResult:
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all")
    await producer.start()
    try:
        feeder = Feeder(producer, {"vehicle": topic}, gateway="feeder-test", prebuilt=prebuilt)
        return await feeder.run(messages, rate=rate, max_frames=len(messages))
    finally:
        await producer.stop()


def _check_delivery(records: list[Any], messages: list[Message], partitions: int) -> list[int]:
    """Every message once, on send's partition, in order per device; returns received_at."""
    assert len(records) == len(messages)
    ids = list(range(partitions))
    sent: dict[bytes, list[bytes]] = defaultdict(list)
    for msg in messages:
        sent[msg.key].append(msg.value)
    got: dict[bytes, list[bytes]] = defaultdict(list)
    stamps = []
    for rec in records:
        assert rec.partition == DefaultPartitioner()(rec.key, ids, ids)
        got[rec.key].append(rec.value)
        headers = dict(rec.headers)
        assert headers["gateway"] == b"feeder-test"
        assert headers["peer"] == peer_of(rec.key)
        stamps.append(int(headers["received_at"]))
    assert got == sent  # each device's frames, each once, in the order built
    with_own = sum(1 for rec in records if ("interface", b"test") in rec.headers)
    assert with_own == sum(1 for msg in messages if msg.headers)
    return stamps


async def test_paced_feed_delivers_every_frame_spread_over_the_run(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic(3, "feed")
    messages = _messages(40, 30)  # 1,200 frames
    rate = 600.0  # frames/s: 2 s of sending
    result = await _feed(kafka_bootstrap, topic, messages, rate=rate, prebuilt=len(messages))

    assert result.frames == len(messages)
    assert result.by_topic == {topic: len(messages)}
    assert result.batches < result.frames  # a slice's frames of a partition share a batch
    records = await read_topic(kafka_bootstrap, topic, expect=len(messages))
    stamps = _check_delivery(records, messages, 3)
    # Paced: frame k is not sent before k / rate after the clock started, and the first slice
    # (its m frames) left before (m + 1) / rate, so the last frame's stamp is at least
    # (N - m - 1) / rate later, however fast or slow the machine (a stall only makes the span
    # longer; stamps are whole ms: 1 ms slack). Unpaced, the span would be a few ms.
    first = min(stamps)
    m = stamps.count(first)
    span_ms = max(stamps) - first
    assert span_ms >= (len(messages) - m - 1) / rate * 1000 - 1
    assert m < len(messages) // 10
    assert len(set(stamps)) >= 10  # sent in many slices, each stamped with its send time


async def test_a_feed_longer_than_its_prebuilt_chunk_builds_the_next(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic(3, "feed")
    messages = _messages(20, 50)  # 1,000 frames, built 300 at a time
    result = await _feed(kafka_bootstrap, topic, messages, rate=0, prebuilt=300)

    assert result.frames == len(messages)
    records = await read_topic(kafka_bootstrap, topic, expect=len(messages))
    _check_delivery(records, messages, 3)
