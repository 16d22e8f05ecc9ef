"""The gateway's batch producer on a real broker: every frame is reported once, acknowledged;
each lands on the partition aiokafka's ``send`` gives its key, and each key's frames keep the
order they were submitted in, also when a lane needs many batches and a frame is larger than
a whole batch."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from ingest.gateway.limits import Budget
from ingest.gateway.metrics import GatewayMetrics
from ingest.gateway.producer import Dispatcher, Pending
from ingest.gateway.renewal import ProducerPool
from tests.integration import pipeline_support as ps

pytestmark = pytest.mark.integration

PARTITIONS = 6
DRAIN_TIMEOUT_S = 60.0  # a bound on a hang, not a speed assertion


@asynccontextmanager
async def dispatching(
    kafka: str, max_frames: int = 100_000, **options: Any
) -> AsyncIterator[tuple[Dispatcher, Any]]:
    # The gateway's producer options (ingest/gateway/server.py), unless a test narrows them.
    gateway = {"acks": "all", "enable_idempotence": True, "linger_ms": 5, "max_batch_size": 1 << 19}

    def make() -> Any:
        return AIOKafkaProducer(bootstrap_servers=kafka, **(gateway | options))

    producer = make()
    await producer.start()
    pool = ProducerPool(producer, make)
    dispatcher = Dispatcher(pool, GatewayMetrics(), Budget(max_frames, 1 << 30), lambda: None)
    task = asyncio.create_task(dispatcher.run())
    try:
        yield dispatcher, producer
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await pool.close()


def submit_all(
    dispatcher: Dispatcher, topic: str, frames: list[tuple[bytes | None, bytes]]
) -> list[BaseException | str | None]:
    """Submit ``frames`` (key, value); the list fills with each one's report, in order."""
    reports: list[BaseException | str | None] = ["unreported"] * len(frames)

    def done(i: int) -> Callable[[BaseException | None], None]:
        def report(exc: BaseException | None) -> None:
            assert reports[i] == "unreported", f"frame {i} reported twice"
            reports[i] = exc

        return report

    for i, (key, value) in enumerate(frames):
        dispatcher.submit(Pending(topic, value, key, [("n", str(i).encode())], done(i), 0.0))
    return reports


def by_key(records: list[Any]) -> dict[bytes | None, list[tuple[int, int]]]:
    """Per key, the (partition, submission number) of its records in offset order."""
    out: dict[bytes | None, list[tuple[int, int]]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        out[r.key].append((r.partition, int(dict(r.headers)["n"])))
    return out


async def test_batches_keep_each_keys_order_on_the_partition_send_would_choose(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic(PARTITIONS, "gwprod")
    keys = [f"LNEVPROD{i:09d}".encode() for i in range(40)]
    frames: list[tuple[bytes | None, bytes]] = [
        (keys[i % len(keys)], b"frame %d " % i + b"x" * 300) for i in range(4_000)
    ]
    frames += [(None, b"keyless %d" % i) for i in range(60)]
    async with dispatching(kafka_bootstrap) as (dispatcher, producer):
        reports = submit_all(dispatcher, topic, frames)
        await asyncio.wait_for(dispatcher.drained(), DRAIN_TIMEOUT_S)
        assert reports == [None] * len(frames)
        assert dispatcher.budget.frames == dispatcher.budget.bytes == 0
        # Where aiokafka's own send() puts each key: the batches must agree.
        placed = {k: (await (await producer.send(topic, b"probe", key=k))).partition for k in keys}

    records = await ps.read_topic(kafka_bootstrap, topic, expect=len(frames) + len(keys))
    got = by_key([r for r in records if r.value != b"probe"])
    for key in keys:
        parts = {p for p, _ in got[key]}
        assert parts == {placed[key]}, key
        numbers = [n for _, n in got[key]]
        assert numbers == sorted(numbers) and len(numbers) == 100, key
    assert len(got[None]) == 60
    assert len({p for p, _ in got[None]}) > 1  # keyless frames are spread


async def test_a_lane_of_many_batches_and_a_frame_larger_than_a_batch(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    topic = unique_topic(2, "gwprod")
    key = b"LNEVPROD000000777"
    values = [b"%05d" % i + b"y" * 330 for i in range(300)]
    values[150] = b"00150" + b"z" * 5_000  # larger than a whole batch: alone in its own
    async with dispatching(kafka_bootstrap, max_batch_size=2048) as (dispatcher, _):
        reports = submit_all(dispatcher, topic, [(key, v) for v in values])
        await asyncio.wait_for(dispatcher.drained(), DRAIN_TIMEOUT_S)
        assert reports == [None] * len(values)

    records = await ps.read_topic(kafka_bootstrap, topic, expect=len(values))
    got = by_key(records)[key]
    assert [n for _, n in got] == list(range(300))
    assert len({p for p, _ in got}) == 1
    assert [r.value for r in sorted(records, key=lambda r: r.offset)] == values


async def test_a_frame_the_broker_refuses_fails_alone_and_the_rest_are_acknowledged(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    """The oversized record is alone in its batch (a batch always takes its first record and
    then refuses what does not fit), so the broker's "too large" refuses that frame only.

    With the gateway's idempotent producer: aiokafka 0.14 has already given the refused batch
    its sequence numbers, and every later batch of the partition was refused
    OutOfOrderSequenceNumber; the producer is replaced and those batches go again, in order."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaError

    topic = unique_name("gwprod")
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": "8000"})]
        )
    finally:
        await admin.close()
    key = b"LNEVPROD000000888"
    values = [b"%05d" % i + b"w" * 300 for i in range(60)]
    values[30] = b"00030" + b"v" * 10_000  # over the topic's 8,000-byte limit
    async with dispatching(kafka_bootstrap, max_batch_size=4096) as (dispatcher, _):
        reports = submit_all(dispatcher, topic, [(key, v) for v in values])
        await asyncio.wait_for(dispatcher.drained(), DRAIN_TIMEOUT_S)
    refused = reports.pop(30)
    assert isinstance(refused, KafkaError) and not refused.retriable
    assert reports == [None] * 59
    records = await ps.read_topic(kafka_bootstrap, topic, expect=59)
    assert [r.value for r in sorted(records, key=lambda r: r.offset)] == values[:30] + values[31:]


async def test_a_topic_without_metadata_does_not_strand_the_frames_routed_before_it(
    kafka_bootstrap: str, unique_topic: Callable[..., str], unique_name: Callable[[str], str]
) -> None:
    # In one routing pass: a frame for a topic that exists, then one for a topic Kafka has no
    # metadata of yet (created only later here; in the field, Kafka away when the first dead
    # letter or the first charger frame comes). The first frame's lane was marked busy but its
    # sender never started: that frame, and every later one of its partition, waited for good.
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic, late_topic = unique_topic(1, "gwprod"), unique_name("gwlate")
    key = b"LNEVPROD000000999"
    async with dispatching(kafka_bootstrap, request_timeout_ms=1000) as (dispatcher, _):
        first = submit_all(dispatcher, topic, [(key, b"before")])
        waiting = submit_all(dispatcher, late_topic, [(key, b"no metadata yet")])
        await ps.until(
            lambda: _done(first), timeout_s=DRAIN_TIMEOUT_S, what="the first frame acknowledged"
        )
        assert waiting == ["unreported"]  # its topic is not there: it waits, at the head
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(late_topic, 1, 1)])
        finally:
            await admin.close()
        later = submit_all(dispatcher, topic, [(key, b"after")])
        await asyncio.wait_for(dispatcher.drained(), DRAIN_TIMEOUT_S)
    assert (first, waiting, later) == ([None], [None], [None])
    records = await ps.read_topic(kafka_bootstrap, topic, expect=2)
    assert [r.value for r in sorted(records, key=lambda r: r.offset)] == [b"before", b"after"]


async def test_steady_traffic_keeps_only_the_unresolved_batches_of_a_lane(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    # Steady traffic: a frame in, each time one is acknowledged, from a start staggered so that
    # some batch of the lane is always unresolved (as with many devices sending unsynchronised).
    # The lane kept every batch it ever sent until all were resolved at once, which steady
    # traffic never gives: it grew by a batch per acknowledgement (frames, memory and the cost
    # of each acknowledgement's scan without limit). Now a batch leaves once it is resolved:
    # when a frame is reported, the lane holds its batch and batches of frames still in flight.
    topic = unique_topic(1, "gwprod")
    key = b"LNEVPROD000000555"
    in_flight, total = 8, 3_000
    values = [b"%06d" % i + b"s" * 200 for i in range(total)]
    reports: list[BaseException | None] = []
    longest = submitted = 0
    async with dispatching(kafka_bootstrap, max_frames=in_flight) as (dispatcher, _):

        def report(exc: BaseException | None) -> None:
            nonlocal longest
            reports.append(exc)
            longest = max(longest, len(dispatcher._lanes[topic, 0].sent))
            submit_next()

        def submit_next() -> None:
            if submitted < total:
                submit()

        def submit() -> None:
            nonlocal submitted
            dispatcher.submit(Pending(topic, values[submitted], key, [], report, 0.0))
            submitted += 1

        async def handed_over() -> bool:  # the frames so far are in batches (or acknowledged)
            lane = dispatcher._lanes.get((topic, 0))
            return not dispatcher._queue and lane is not None and not lane.items

        for _ in range(in_flight):
            submit_next()
            await ps.until(
                handed_over, timeout_s=DRAIN_TIMEOUT_S, what="a frame in a batch", every_s=0.001
            )
        await ps.until(
            lambda: _all(reports, total), timeout_s=DRAIN_TIMEOUT_S, what="every frame reported"
        )
        await asyncio.wait_for(dispatcher.drained(), DRAIN_TIMEOUT_S)
        assert reports == [None] * total
        # Each batch in the lane holds a frame not yet reported, or the one being reported.
        assert longest <= dispatcher.budget.max_frames == in_flight, longest
        assert not dispatcher._lanes[topic, 0].sent
    records = await ps.read_topic(kafka_bootstrap, topic, expect=total)
    assert [r.value for r in sorted(records, key=lambda r: r.offset)] == values


async def _all(reports: list[BaseException | None], total: int) -> bool:
    return len(reports) == total


async def _done(reports: list[BaseException | str | None]) -> bool:
    return "unreported" not in reports
