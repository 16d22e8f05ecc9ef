"""The dead-letter producer as a worker makes it (acks=all, idempotent), against a real
broker: every letter arrives whole, on the partition the producer's default partitioner gives
its key, in order per partition, stamped with the time it was sent; a letter over
kafka.max_request_size is cut down by the producer's own size check before anything is sent,
so the letters around it, on the same partition, still arrive whole. A batch the broker
refuses (the topic's max.message.bytes below kafka.max_request_size, which the start check
refuses when it can read it) stops the worker with a ``PermanentKafkaError``: the idempotent
producer cannot go on, and nothing of the batch may be committed without its dead letters. A
producer without idempotence gets past such a refusal: the letter goes again cut down to its
prefix, size and hash, so the frame is still accounted for."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner

from ingest.config.kafka_limits import TOO_LARGE_PREFIX_BYTES
from ingest.pipeline import wire
from ingest.pipeline.metrics import PipelineMetrics
from ingest.pipeline.publish import PermanentKafkaError, Publisher
from tests.integration.pipeline_support import header, read_topic

pytestmark = pytest.mark.integration


async def make_topic(kafka: str, name: str, partitions: int, max_bytes: int | None = None) -> None:
    configs = {"max.message.bytes": str(max_bytes)} if max_bytes is not None else {}
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs)])
    finally:
        await admin.close()


def letter(i: int, key: bytes | None, value: bytes) -> wire.DeadLetter:
    return wire.dead_letter(
        key=key,
        value=value,
        headers=[("gateway", b"g1"), ("peer", None)],  # type: ignore[list-item]  # as Kafka allows
        reason="bad_bcc",
        detail=f"checksum mismatch {i}",
        stage="decode",
        topic="raw",
        partition=i % 12,
        offset=i,
        timestamp_ms=1,
    )


async def send_dead(
    kafka: str,
    dlq: str,
    letters: list[wire.DeadLetter],
    *,
    max_request_size: int = 1048576,
    idempotent: bool = True,
) -> PipelineMetrics:
    # As the worker makes its producer (ingest/pipeline/process.py): acks=all, idempotent.
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka,
        acks="all",
        enable_idempotence=idempotent,
        linger_ms=5,
        max_request_size=max_request_size,
    )
    metrics = PipelineMetrics()
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
        await publisher.send_dead(letters)
    finally:
        await producer.stop()
    return metrics


async def test_letters_arrive_whole_on_their_keys_partitions_in_order(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    dlq = unique_name("dlq")
    await make_topic(kafka_bootstrap, dlq, 3)
    keys = [b"LNBSCB3F5JA%06d" % (i % 7) for i in range(600)]
    letters = [
        letter(i, None if i % 10 == 0 else keys[i], b"##" + str(i).encode() * 50)
        for i in range(600)
    ]
    began = time.time_ns() // 1_000_000
    await send_dead(kafka_bootstrap, dlq, letters)
    ended = time.time_ns() // 1_000_000

    got = await read_topic(kafka_bootstrap, dlq, expect=len(letters))
    assert len(got) == len(letters)
    by_offset = {header(r.headers, wire.SOURCE_OFFSET): r for r in got}
    partitioner = DefaultPartitioner()
    for i, sent in enumerate(letters):
        rec = by_offset[str(i).encode()]
        assert (rec.key, rec.value) == (sent.key, sent.value)
        assert list(rec.headers) == sent.headers
        assert began <= rec.timestamp <= ended + 1000
        if sent.key is not None:
            assert rec.partition == partitioner(sent.key, [0, 1, 2], [0, 1, 2])
    for p in range(3):
        here = sorted((r for r in got if r.partition == p), key=lambda r: r.offset)
        order = [int(header(r.headers, wire.SOURCE_OFFSET) or b"-1") for r in here]
        assert order == sorted(order), f"partition {p}: the letters' order changed"


async def test_only_the_letter_over_max_request_size_is_cut_down(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    # The producer's own size check (kafka.max_request_size) refuses the big letter before
    # anything reaches the broker, so the idempotent producer's sequence is untouched and the
    # small letters around it (the producer batches them) arrive whole.
    dlq = unique_name("dlq")
    await make_topic(kafka_bootstrap, dlq, 1)
    letters = [letter(i, b"LNBSCB3F5JA000001", bytes([i]) * 500) for i in range(40)]
    huge = bytes(range(256)) * 400  # 102,400 bytes: over max_request_size below
    letters.insert(17, letter(999, b"LNBSCB3F5JA000001", huge))
    metrics = await send_dead(kafka_bootstrap, dlq, letters, max_request_size=20000)

    got = await read_topic(kafka_bootstrap, dlq, expect=len(letters))
    assert len(got) == len(letters)
    cut = [r for r in got if header(r.headers, wire.ORIGINAL_SIZE) is not None]
    assert [r.value for r in cut] == [huge[:TOO_LARGE_PREFIX_BYTES]]
    assert header(cut[0].headers, wire.SOURCE_OFFSET) == b"999"
    whole = sorted(r.value for r in got if r not in cut)
    assert whole == sorted(d.value or b"" for d in letters if d.value != huge)
    assert metrics.registry.get_sample_value("nev_ingest_dead_letters_shrunk_total") == 1


async def test_a_batch_the_broker_refuses_stops_the_worker(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    # Each letter (~3 KB) passes the producer's check; the batch it makes does not pass the
    # topic's 6,000 bytes, nor does the cut-down batch sent after it.
    dlq = unique_name("dlq")
    await make_topic(kafka_bootstrap, dlq, 1, 6000)
    letters = [letter(i, b"LNBSCB3F5JA000001", bytes([i]) * 3000) for i in range(20)]
    with pytest.raises(PermanentKafkaError, match="non-retriable"):
        await send_dead(kafka_bootstrap, dlq, letters)


async def test_without_idempotence_a_letter_the_topic_refuses_goes_again_cut_down(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    dlq = unique_name("dlq")
    await make_topic(kafka_bootstrap, dlq, 1, 20000)
    value = bytes(range(256)) * 400  # 102,400 bytes: over the topic's limit
    metrics = await send_dead(
        kafka_bootstrap, dlq, [letter(42, b"LNBSCB3F5JA000001", value)], idempotent=False
    )
    (got,) = await read_topic(kafka_bootstrap, dlq, expect=1)
    assert got.value == value[:TOO_LARGE_PREFIX_BYTES]
    assert header(got.headers, wire.ERROR_REASON) == b"bad_bcc"
    assert header(got.headers, wire.SOURCE_OFFSET) == b"42"
    assert header(got.headers, wire.ORIGINAL_SIZE) == b"102400"
    sha = hashlib.sha256(value).hexdigest().encode()
    assert header(got.headers, wire.ORIGINAL_SHA256) == sha
    assert metrics.registry.get_sample_value("nev_ingest_dead_letters_shrunk_total") == 1
