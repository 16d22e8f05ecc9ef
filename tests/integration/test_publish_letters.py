"""The dead-letter producer as a worker makes it (acks=all, idempotent), against a real
broker: every letter arrives whole, on the partition the producer's default partitioner gives
its key, in order per partition, stamped with the time it was sent; a letter over
kafka.max_request_size is cut down by the producer's own size check before anything is sent,
so the letters around it, on the same partition, still arrive whole. A batch the broker
refuses (the topic's max.message.bytes lowered below kafka.max_request_size after the start
check read it) leaves a gap in the idempotent producer's sequence on that partition: a new
producer sends the refused batch's letters each in a batch of its own, as they are, those
refused alone cut down to their prefix, size and hash, and the letters behind the gap as
they were, each once; the alert messages that share the
producer go out with the new one. A producer without idempotence gets past such a refusal
the same way."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner

from ingest.config.kafka_limits import TOO_LARGE_PREFIX_BYTES
from ingest.pipeline import wire
from ingest.pipeline.kafka_clients import RenewableProducer
from ingest.pipeline.metrics import PipelineMetrics
from ingest.pipeline.publish import OutgoingLetters, PermanentKafkaError, Publisher
from ingest.pipeline.sink import AlertMessage
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
    *sends: list[wire.DeadLetter],
    max_request_size: int = 1048576,
    idempotent: bool = True,
    alerts: tuple[str, list[AlertMessage]] = ("unused", []),
) -> tuple[PipelineMetrics, bool]:
    """Each of ``sends`` by one ``send_dead``, in turn; then the ``alerts`` (topic, messages).
    The metrics, and whether the producer was replaced by a new one."""

    # As the worker makes its producer (ingest/pipeline/process.py): acks=all, idempotent.
    def make() -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=kafka,
            acks="all",
            enable_idempotence=idempotent,
            linger_ms=5,
            max_request_size=max_request_size,
        )

    metrics = PipelineMetrics()
    first = make()
    await first.start()
    producers = RenewableProducer(first, make)
    try:
        publisher = Publisher(
            producers,
            metrics,
            dlq_topic=dlq,
            alerts_topic=alerts[0],
            backoff_initial_s=0.01,
            backoff_max_s=0.1,
        )
        for letters in sends:
            await publisher.send_dead(letters)
        if alerts[1]:
            await publisher.publish_alerts(alerts[1])
        replaced = producers.current is not first
    finally:
        await producers.stop()
    return metrics, replaced


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
    metrics, replaced = await send_dead(kafka_bootstrap, dlq, letters, max_request_size=20000)
    assert not replaced  # nothing was sent, no gap: the producer goes on

    got = await read_topic(kafka_bootstrap, dlq, expect=len(letters))
    assert len(got) == len(letters)
    cut = [r for r in got if header(r.headers, wire.ORIGINAL_SIZE) is not None]
    assert [r.value for r in cut] == [huge[:TOO_LARGE_PREFIX_BYTES]]
    assert header(cut[0].headers, wire.SOURCE_OFFSET) == b"999"
    whole = sorted(r.value for r in got if r not in cut)
    assert whole == sorted(d.value or b"" for d in letters if d.value != huge)
    assert metrics.registry.get_sample_value("nev_ingest_dead_letters_shrunk_total") == 1


async def test_the_letters_of_a_batch_the_broker_refuses_go_again_alone_and_whole(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    # Each letter (~3 KB) passes the producer's check and the topic's 6,000 bytes, but the
    # batches the producer makes of them (16 KiB) do not; each goes again in a batch of its
    # own, as it is, and fits: nothing is cut down.
    dlq = unique_name("dlq")
    await make_topic(kafka_bootstrap, dlq, 1, 6000)
    letters = [letter(i, b"LNBSCB3F5JA000001", bytes([i]) * 3000) for i in range(20)]
    metrics, _ = await send_dead(kafka_bootstrap, dlq, letters)
    got = await read_topic(kafka_bootstrap, dlq, expect=len(letters))
    assert sorted((r.value, list(r.headers)) for r in got) == sorted(
        (d.value or b"", d.headers) for d in letters
    )
    assert metrics.registry.get_sample_value("nev_ingest_dead_letters_shrunk_total") == 0


async def test_only_a_letter_refused_alone_is_cut_down_not_those_that_shared_its_batch(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    # Two 7,000-byte letters of one key share a producer batch (~14 KB) that the topic's
    # 10,000 bytes refuse: each fits alone and arrives whole, its gateway and peer headers
    # kept (they used to arrive cut to 4 KiB, without them, counted cut down). A 30,000-byte
    # letter, in a batch of its own, is refused alone too and only it is cut down.
    dlq = unique_name("dlq")
    await make_topic(kafka_bootstrap, dlq, 1, 10000)
    vin = b"LNBSCB3F5JA000001"
    pair = [letter(i, vin, bytes([i + 1]) * 7000) for i in range(2)]
    big = letter(2, vin, bytes(range(256)) * 120)  # 30,720 bytes
    metrics, replaced = await send_dead(kafka_bootstrap, dlq, [*pair, big])
    assert replaced  # the broker's refusals left gaps: new producers sent the rest

    got = await read_topic(kafka_bootstrap, dlq, expect=3)
    by_offset = {header(r.headers, wire.SOURCE_OFFSET): r for r in got}
    assert len(got) == len(by_offset) == 3  # each once
    for i, sent in enumerate(pair):
        rec = by_offset[str(i).encode()]
        assert (rec.value, list(rec.headers)) == (sent.value, sent.headers)
    cut = by_offset[b"2"]
    assert cut.value == (big.value or b"")[:TOO_LARGE_PREFIX_BYTES]
    assert header(cut.headers, wire.ORIGINAL_SIZE) == b"30720"
    assert metrics.registry.get_sample_value("nev_ingest_dead_letters_shrunk_total") == 1


async def test_after_a_refusal_a_new_producer_sends_each_letter_once_and_the_alerts(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    # The producer wrote to the partition first, so the refused batch leaves a gap in its
    # sequence there: the batch after it is refused as OutOfOrderSequenceNumber (on a
    # partition it never wrote to, the broker would take any first sequence).
    dlq, alerts = unique_name("dlq"), unique_name("alerts")
    await make_topic(kafka_bootstrap, dlq, 1, 20000)
    await make_topic(kafka_bootstrap, alerts, 1)
    vin = b"LNBSCB3F5JA000001"
    before = [letter(0, vin, b"##first")]
    huge = bytes(range(256)) * 400  # 102,400 bytes: under max_request_size, over the topic's
    letters = [letter(i, vin, bytes([i]) * 500) for i in range(1, 60)]
    letters.insert(20, letter(999, vin, huge))
    message = AlertMessage("vehicle", "r", "major", "raised", vin, b'{"type": "raised"}')
    metrics, replaced = await send_dead(
        kafka_bootstrap, dlq, before, letters, alerts=(alerts, [message])
    )
    assert replaced

    got = await read_topic(kafka_bootstrap, dlq, expect=1 + len(letters))
    offsets = sorted(int(header(r.headers, wire.SOURCE_OFFSET) or b"-1") for r in got)
    assert offsets == sorted([0, 999, *range(1, 60)])  # each letter once
    (cut,) = [r for r in got if header(r.headers, wire.ORIGINAL_SIZE) is not None]
    assert cut.value == huge[:TOO_LARGE_PREFIX_BYTES]
    assert header(cut.headers, wire.SOURCE_OFFSET) == b"999"
    whole = {r.value for r in got if r is not cut}
    assert whole == {d.value for d in [*before, *letters] if d.value != huge}
    assert metrics.registry.get_sample_value("nev_ingest_dead_letters_shrunk_total") == 1
    (published,) = await read_topic(kafka_bootstrap, alerts, expect=1)
    assert (published.key, published.value) == (message.key, message.message)


async def test_without_idempotence_a_letter_the_topic_refuses_goes_again_cut_down(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    dlq = unique_name("dlq")
    await make_topic(kafka_bootstrap, dlq, 1, 20000)
    value = bytes(range(256)) * 400  # 102,400 bytes: over the topic's limit
    metrics, _ = await send_dead(
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


async def test_two_lanes_refused_at_once_each_letter_arrives_once_and_neither_fails(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    # Two write lanes share the worker's producer. Lane A dead-letters a batch of big letters
    # and small ones; lane B meanwhile one big letter per batch, on a partition of A's, each of
    # which the broker refuses and which makes a new producer. Another lane's renewals used to
    # stop the producer under A's sends and use up its rounds: A failed ("still refused"), its
    # retries sent letters a second time and counted them cut down again.
    dlq = unique_name("dlq")
    await make_topic(kafka_bootstrap, dlq, 3, 20000)

    def make() -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True, linger_ms=5
        )

    metrics = PipelineMetrics()
    first = make()
    await first.start()
    producers = RenewableProducer(first, make)
    publisher = Publisher(
        producers,
        metrics,
        dlq_topic=dlq,
        alerts_topic="unused",
        backoff_initial_s=0.01,
        backoff_max_s=0.1,
    )
    huge = bytes(range(256)) * 400  # 102,400 bytes: under max_request_size, over the topic's
    lane_a = [
        letter(i, b"LNBSCB3F5JA%06d" % i, huge if i % 3 == 0 else bytes([i]) * 300)
        for i in range(60)
    ]
    a_done = asyncio.Event()
    b_sent: list[wire.DeadLetter] = []

    async def lane_b() -> None:
        # Until A is through (at most 200 batches, should it never be).
        for i in range(10_000, 10_200):
            if a_done.is_set():
                return
            b_sent.append(letter(i, b"LNBSCB3F5JA000001", huge))
            await publisher.send_dead(b_sent[-1:])

    try:
        b = asyncio.ensure_future(lane_b())
        try:
            await publisher.send_dead(lane_a)
        finally:
            a_done.set()
        await b
    finally:
        await producers.stop()
    assert producers.current is not first  # B's refusals did replace the producer

    letters = [*lane_a, *b_sent]
    got = await read_topic(kafka_bootstrap, dlq, expect=len(letters))
    offsets = sorted(int(header(r.headers, wire.SOURCE_OFFSET) or b"-1") for r in got)
    assert offsets == sorted(int(header(d.headers, wire.SOURCE_OFFSET) or b"") for d in letters)
    cut = [r for r in got if header(r.headers, wire.ORIGINAL_SIZE) is not None]
    assert {r.value for r in cut if len(r.value) == TOO_LARGE_PREFIX_BYTES} == {
        huge[:TOO_LARGE_PREFIX_BYTES]
    }
    assert len(cut) == 20 + len(b_sent)  # every big letter, none that only shared its batch
    assert metrics.registry.get_sample_value("nev_ingest_dead_letters_shrunk_total") == len(cut)


async def test_a_send_taken_up_again_sends_only_what_was_not_acknowledged(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    # The topic's 3,000 bytes refuse the small letters' batch (each goes again alone, whole)
    # and even the big letter cut down: that send fails for good, after the small letters
    # went through. The writer retries the batch's write with the same OutgoingLetters: the
    # small letters are not sent again, nor the big one counted cut down again.
    dlq = unique_name("dlq")
    await make_topic(kafka_bootstrap, dlq, 1, 3000)
    vin = b"LNBSCB3F5JA000001"
    letters = [letter(i, vin, bytes([i]) * 200) for i in range(10)]
    letters.append(letter(99, vin, bytes(range(256)) * 400))
    out = OutgoingLetters(letters)
    metrics = PipelineMetrics()
    first = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await first.start()
    producers = RenewableProducer(
        first, lambda: AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    )
    publisher = Publisher(
        producers,
        metrics,
        dlq_topic=dlq,
        alerts_topic="unused",
        backoff_initial_s=0.01,
        backoff_max_s=0.1,
    )
    try:
        for _ in range(2):
            with pytest.raises(PermanentKafkaError, match="MessageSizeTooLarge"):
                await publisher.send_dead(out)
            ((left, alone),) = out.todo  # only the big letter, cut down, is left
            assert alone and header(left.headers, wire.SOURCE_OFFSET) == b"99"
    finally:
        await producers.stop()
    got = await read_topic(kafka_bootstrap, dlq, expect=10)
    offsets = sorted(int(header(r.headers, wire.SOURCE_OFFSET) or b"-1") for r in got)
    assert offsets == list(range(10))  # each once
    assert sorted(r.value for r in got) == sorted(d.value or b"" for d in letters[:10])
    assert metrics.registry.get_sample_value("nev_ingest_dead_letters_shrunk_total") == 1
