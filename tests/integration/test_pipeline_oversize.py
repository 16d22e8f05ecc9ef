"""A 1,100,000-byte record on a raw topic among good frames (issue 9, item 2): the good frames are
committed, the big one is dead-lettered as ``too_large`` with its first bytes, size and hash
(it would not fit the dead-letter producer's 1 MiB whole), and the service stops cleanly."""

from __future__ import annotations

import hashlib

import pytest
from aiokafka import AIOKafkaProducer

from ingest.config.kafka_limits import TOO_LARGE_PREFIX_BYTES
from ingest.pipeline import wire
from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.traffic import recent_fleet

pytestmark = pytest.mark.integration

BIG = 1_100_000


async def test_oversized_record_is_dead_lettered_and_blocks_nothing(env: PipelineEnv) -> None:
    messages = recent_fleet(100, 3)
    expected = ps.Expected.of(messages)
    half = len(messages) // 2
    big = b"##" + bytes(range(256)) * (BIG // 256) + b"\x00" * (BIG % 256 - 2)
    assert len(big) == BIG

    async with ps.serving(env, "oversize", NEV_PIPELINE_BATCH_MAX_FRAMES="500") as svc:
        await ps.produce(env.kafka, env.topic, messages[:half])
        producer = AIOKafkaProducer(bootstrap_servers=env.kafka, max_request_size=2 * BIG)
        await producer.start()
        try:
            # Key = a VIN of the fleet: the big record sits in a partition with good frames.
            meta = await producer.send_and_wait(env.topic, big, key=messages[0].key)
        finally:
            await producer.stop()
        await ps.produce_and_store(env, messages[half:], timeout_s=120)

        assert await ps.stored_rows(env.dsn) == expected.rows  # the good frames, all of them
        dead = await ps.read_topic(env.kafka, env.dlq, expect=1)
        (letter,) = [r for r in dead if ps.header(r.headers, "error.reason") == b"too_large"]
        assert ps.header(letter.headers, wire.SOURCE_PARTITION) == str(meta.partition).encode()
        assert ps.header(letter.headers, wire.SOURCE_OFFSET) == str(meta.offset).encode()
        assert ps.header(letter.headers, wire.ORIGINAL_SIZE) == str(BIG).encode()
        sha = hashlib.sha256(big).hexdigest().encode()
        assert ps.header(letter.headers, wire.ORIGINAL_SHA256) == sha
        assert letter.value == big[:TOO_LARGE_PREFIX_BYTES]
        assert letter.key == messages[0].key
        assert svc.metric("nev_ingest_frames_dead_lettered_total", reason="too_large") == 1
    log_tail = svc.tail()
    msgs = [str(r.get("msg", "")) for r in svc.logs()]
    assert "flushed and committed everything in flight" in msgs, log_tail
    assert not any(m.startswith("shutdown deadline") for m in msgs), log_tail
