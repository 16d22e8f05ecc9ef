"""The dead-letter producer against a real broker whose dead-letter topic takes less than the
letter: the broker's refusal (non-retriable) is not retried as is; the letter goes again cut
down to its prefix, size and hash, so the frame is still accounted for."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from ingest.config.kafka_limits import TOO_LARGE_PREFIX_BYTES
from ingest.pipeline import wire
from ingest.pipeline.metrics import PipelineMetrics
from ingest.pipeline.publish import Publisher
from tests.integration.pipeline_support import header, read_topic

pytestmark = pytest.mark.integration


# The letter is spelled out in full, as in tests/unit/test_kafka_limits.py, and the topic made
# with its own max.message.bytes, as in test_kafka_topics.py (``duplicates`` pairs both by
# shape): each test states the inputs it is about.
async def test_a_dead_letter_the_topic_refuses_is_sent_cut_down(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    dlq = unique_name("dlq")
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(dlq, 1, 1, topic_configs={"max.message.bytes": "20000"})]
        )
    finally:
        await admin.close()
    value = bytes(range(256)) * 400  # 102,400 bytes: over the topic's limit
    letter = wire.dead_letter(
        key=b"LNBSCB3F5JA000001",
        value=value,
        headers=[("gateway", b"g1")],
        reason="bad_bcc",
        detail="checksum mismatch",
        stage="decode",
        topic="raw",
        partition=1,
        offset=42,
        timestamp_ms=1,
    )
    metrics = PipelineMetrics()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        publisher = Publisher(
            producer,
            metrics,
            dlq_topic=dlq,
            alerts_topic="unused",
            backoff_initial_s=0.01,
            backoff_max_s=0.1,
        )
        await publisher.send_dead([letter])
    finally:
        await producer.stop()
    (got,) = await read_topic(kafka_bootstrap, dlq, expect=1)
    assert got.value == value[:TOO_LARGE_PREFIX_BYTES]
    assert header(got.headers, wire.ERROR_REASON) == b"bad_bcc"
    assert header(got.headers, wire.SOURCE_OFFSET) == b"42"
    assert header(got.headers, wire.ORIGINAL_SIZE) == b"102400"
    sha = hashlib.sha256(value).hexdigest().encode()
    assert header(got.headers, wire.ORIGINAL_SHA256) == sha
    assert metrics.registry.get_sample_value("nev_ingest_dead_letters_shrunk_total") == 1
