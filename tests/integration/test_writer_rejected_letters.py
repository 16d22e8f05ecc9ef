"""The dead letters of frames the database refused, sent inside the batch's transaction, on the
real broker and database: a send that fails half way (the broker away when a new producer is
needed) is retried, by the publisher and then by the writer's next transaction, and each retry
takes up what is left: each letter arrives once, and the one cut down is counted once (every
attempt used to make the letters afresh, sending the acknowledged ones again and counting the
cut one again)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from contract.clock import CHINA_TZ
from contract.rows import FrameRows
from devtools.sim.synthetic import frame_rows, vin
from ingest.config.kafka_limits import TOO_LARGE_PREFIX_BYTES
from ingest.config.load import load_settings
from ingest.pipeline import wire
from ingest.pipeline.backpressure import Backpressure
from ingest.pipeline.batch import BatchBuilder
from ingest.pipeline.kafka_clients import RenewableProducer
from ingest.pipeline.metrics import PipelineMetrics
from ingest.pipeline.storage_sink import StorageSink
from ingest.pipeline.writer import Writer
from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.test_publish_letters import make_topic
from tests.unit.kafka_records import Rec

pytestmark = pytest.mark.integration

T0 = datetime.now(CHINA_TZ).replace(microsecond=0) - timedelta(hours=1)
# Records 2, 4 and 5 decode to a pack number no column holds: the database refuses them. Their
# letters share a producer batch (under 16 KiB) over the dead-letter topic's 10,000 bytes, so
# each goes again alone: the small ones arrive, the big one (12 KB) is refused alone and cut
# down, which leaves a gap behind the small ones in that producer's sequence.
REFUSED = {2: 300, 4: 300, 5: 12_000}
RECORDS = 8


def decode(value: bytes, received_ms: int) -> FrameRows:
    i = int(value[:4])
    rows = frame_rows(vin(i), T0 + timedelta(seconds=i), seq=i)
    if i in REFUSED:
        rows.packs[0] = rows.packs[0]._replace(pack=70000)
    return rows


async def test_a_retried_send_of_the_refused_frames_letters_sends_each_once(
    env: PipelineEnv, unique_name: Callable[[str], str]
) -> None:
    dlq = unique_name("dlq")
    await make_topic(env.kafka, dlq, 1, 10000)
    metrics = PipelineMetrics()
    # Once the big letter is cut down, the next three new producers find no broker (this
    # port, bound but not listening, refuses connections): the replacement its gap needs
    # fails, in each of the publisher's three attempts, so the batch's transaction goes again
    # (ConnectionError), and the replacement in that one gets through.
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    away = 3

    def make() -> AIOKafkaProducer:
        nonlocal away
        if metrics.registry.get_sample_value("nev_ingest_dead_letters_shrunk_total") and away:
            away -= 1
            return AIOKafkaProducer(bootstrap_servers=f"127.0.0.1:{closed.getsockname()[1]}")
        return AIOKafkaProducer(
            bootstrap_servers=env.kafka, acks="all", enable_idempotence=True, linger_ms=5
        )

    tp = TopicPartition(env.topic, 0)
    records = [
        Rec(env.topic, 0, i, b"%04d" % i + b"x" * REFUSED.get(i, 100), key=vin(i).encode())
        for i in range(RECORDS)
    ]
    builder = BatchBuilder({env.topic: decode})
    builder.add(tp, records, None)
    batch = builder.take()

    sink = StorageSink.from_settings(load_settings(environ=env.environ()), metrics=metrics)
    await sink.start()
    first = make()
    await first.start()
    producers = RenewableProducer(first, make)
    bp = Backpressure(1000)
    bp.add(*batch.held)
    writer = Writer(
        sink=sink,
        producers=producers,
        metrics=metrics,
        backpressure=bp,
        dlq_topic=dlq,
        alerts_topic=env.alerts,
        commit=lambda offsets: None,
        on_fenced=lambda fenced: None,
        backoff_initial_s=0.01,
        backoff_max_s=0.1,
    )
    try:
        await sink.on_partitions_assigned([tp])
        run = asyncio.ensure_future(writer.run())
        writer.submit(batch)
        assert await writer.drain(120), "the batch was not committed"
        writer.close()
        await run
    finally:
        await producers.stop()
        await sink.close()
        closed.close()
    assert away == 0  # the broker was away for the three replacements
    assert writer.committed[tp] == RECORDS

    got = await ps.read_topic(env.kafka, dlq, expect=len(REFUSED))
    offsets = sorted(int(ps.header(r.headers, wire.SOURCE_OFFSET) or b"-1") for r in got)
    assert offsets == sorted(REFUSED)  # each once
    by_offset = {ps.header(r.headers, wire.SOURCE_OFFSET): r for r in got}
    for i in (2, 4):
        assert by_offset[str(i).encode()].value == records[i].value  # whole
    assert by_offset[b"5"].value == (records[5].value or b"")[:TOO_LARGE_PREFIX_BYTES]
    assert metrics.registry.get_sample_value("nev_ingest_dead_letters_shrunk_total") == 1
