"""The refill after a crash (ingest/pipeline/latest_keeper.py, storage/latest_pending.py) reads
its range as the one batch it was written in, however the consumer's polls split it: a pack's
two reports of one time, a stage change between them, leave the latest_state the uncrashed
writer leaves (docs/storage.md, "Bounded-lag latest_state", Crash). The records come from a
real topic read by a consumer whose ``max_poll_records`` puts a poll boundary between them or
not (the worker's is ``pipeline.batch_max_frames``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from ingest.pipeline import wire
from ingest.pipeline.batch import BatchBuilder
from ingest.pipeline.latest_keeper import LatestKeeper
from ingest.pipeline.process import DECODERS
from storage.latest_kinds import BATTERY
from storage.writer import StorageWriter
from tests.integration import pipeline_support as ps
from tests.integration.kinds_frames import pack_realtime
from tests.integration.test_storage_kinds import T0, Batch, WriterFactory, writer_factory
from tests.integration.test_storage_latest_lag_packs import A, B, Lane, Report, _place, _row, code

pytestmark = pytest.mark.integration

__all__ = ["writer_factory"]  # the fixture, parametrized over the COPY and unnest loaders

# Stored at station A; then one batch: at station B, and in the same second taken into a
# vehicle (stage 1, no site, no SOC) - the place went with the stage change: none known.
STORED: list[Report] = [(0, 2, A, 80)]
PENDING: list[Report] = [(10, 2, B, 70), (10, 1, None, None)]


async def _write(w: StorageWriter, tp: tuple[str, int], at: int, frames: list[Any]) -> None:
    b = Batch()
    for f in frames:
        b.add(tp, f)
    b.offsets = list(range(at, at + len(frames)))
    await b.write(w, start=None if at == 0 else {tp: at})


@pytest.mark.parametrize("per_poll", [10, 1], ids=["one-poll", "a-poll-per-record"])
async def test_the_refill_merges_its_range_as_one_batch_whatever_the_polls(
    writer_factory: WriterFactory,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    per_poll: int,
) -> None:
    k = per_poll == 1
    start = T0 + timedelta(minutes=110 + k)  # T0 is 2 hours ago: in the past
    mine, theirs = code(300 + 2 * k), code(301 + 2 * k)
    every = Lane(await writer_factory(group="per-batch-refill"), ("nev.battery.raw", 8))
    await every.write(mine, start, STORED)
    await every.write(mine, start, PENDING)

    # The deferred writer: the first batch merges (a partition's first), the second is pending
    # (latest_from 1, next offset 3) when the worker dies.
    topic = unique_topic()
    tp = (topic, 0)
    frames = [
        pack_realtime(start + timedelta(seconds=s), theirs, stage=stage, site=site, soc=soc)
        for s, stage, site, soc in STORED + PENDING
    ]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for raw, rows in frames:
            # received_at as the gateway sends it: the refilled rows are the ones written
            assert rows.telemetry is not None and rows.telemetry.received_at is not None
            ms = int(rows.telemetry.received_at.timestamp() * 1000)
            headers = [(wire.RECEIVED_AT, str(ms).encode())]
            await producer.send_and_wait(
                topic, raw, key=theirs.encode(), partition=0, headers=headers
            )
    finally:
        await producer.stop()
    group = "deferred-refill"
    crashed = await writer_factory(group=group, latest_interval_ms=600_000)
    await _write(crashed, tp, 0, frames[:1])
    await _write(crashed, tp, 1, frames[1:])
    await crashed.close()  # its pending set lost, as with kill -9

    # The next owner: refills from latest_from, the consumer's polls as ``per_poll`` cuts them.
    writer = await writer_factory(group=group, latest_interval_ms=600_000)
    assert await writer.load_offsets([tp]) == {tp: 3}
    keeper = LatestKeeper(lambda: [writer], lambda partition: 0)
    decoder = BatchBuilder({topic: DECODERS["battery"]})
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap, enable_auto_commit=False, max_poll_records=per_poll
    )
    await consumer.start()
    polls = 0
    try:
        consumer.assign([TopicPartition(*tp)])
        consumer.seek(TopicPartition(*tp), keeper.seek_from(tp, 3) or 0)

        async def refilled() -> bool:  # the worker's loop: fetch, then take_refill
            nonlocal polls
            data = await consumer.getmany(timeout_ms=500)
            for got, records in data.items():
                polls += 1
                assert keeper.take_refill(got, records, decoder) == []  # all in the range
            return not keeper.refilling(tp)

        await ps.until(refilled, timeout_s=30, what="the refill to complete")
    finally:
        await consumer.stop()
    if per_poll == 1:
        assert polls == 2  # a poll boundary inside the range's one batch
    await writer.flush_latest([tp])
    want, got = await _row(every.writer, mine), await _row(writer, theirs)
    assert _place(want) == (1, None) and want[BATTERY.index("soc_pct")] == 70
    assert got == want
