"""A refill whose range ends in a gap completes (issue 12 review): a transactional producer's
commit marker takes an offset no consumer ever sees as a record, so when the stored offset lies
past it and the partition then goes quiet, no record at ``until - 1`` or later comes to
complete the refill (``LatestKeeper.take_refill``). The worker's ``end_refills`` completes it
from the real consumer's position, which aiokafka moves past the marker on its own."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from ingest.pipeline.latest_keeper import LatestKeeper, end_refills
from storage.latest_pending import PendingLatest
from tests.integration import pipeline_support as ps

pytestmark = pytest.mark.integration


class _Writer:
    def __init__(self) -> None:
        self.latest = PendingLatest(60.0)

    async def flush_latest(self, partitions: Any, *, skip_locked: bool = False) -> int:
        return 0


class _Offsets:
    """``decode_stored``: records the offsets handed over for the refill (decoding is not what
    is tested here: no frames)."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def decode_stored(self, topic: str, records: Sequence[Any]) -> list[Any]:
        self.seen.extend(r.offset for r in records)
        return []


async def test_a_refill_ending_in_a_commit_marker_completes_at_the_consumers_position(
    kafka_bootstrap: str, unique_topic: Callable[..., str], unique_name: Callable[[str], str]
) -> None:
    topic = unique_topic()
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, transactional_id=unique_name("txn")
    )
    await producer.start()
    try:
        async with producer.transaction():
            for i in range(3):
                await producer.send(topic, b"frame %d" % i, partition=0)
    finally:
        await producer.stop()
    # Offsets 0-2 are the records, 3 the commit marker. Stored offset 4 (the marker was the
    # last thing read) and latest_from 1: the refill range 1-3 ends in the gap.
    tp = TopicPartition(topic, 0)
    writer = _Writer()
    writer.latest.assigned((topic, 0), 4, 1)
    hooks: list[tuple[Any, int, bool]] = []
    keeper = LatestKeeper(
        lambda: [writer], lambda partition: 0, lambda k, f, c: hooks.append((k, len(f), c))
    )
    sink = SimpleNamespace(latest=keeper)
    decoder = _Offsets()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, 1)

        async def records_read() -> bool:  # the worker's loop: fetch, take_refill, end_refills
            data = await consumer.getmany(timeout_ms=500)
            for got_tp, records in data.items():
                assert keeper.take_refill(got_tp, records, decoder) == []  # all in the range
            if decoder.seen == [1, 2]:
                assert keeper.refilling(tp)  # no record at 3 or later: not complete from them
                await end_refills(sink, [tp], consumer.position)
            return not keeper.refilling(tp)

        await ps.until(records_read, timeout_s=30, what="the refill to complete")
        assert await consumer.position(tp) == 4
    finally:
        await consumer.stop()
    assert decoder.seen == [1, 2]
    assert hooks[-1] == ((topic, 0), 0, True)  # the alert side was told: restore now
    assert writer.latest.parts[(topic, 0)].merged_at == float("-inf")  # merged next
