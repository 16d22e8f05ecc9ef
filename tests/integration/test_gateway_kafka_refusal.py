"""A frame the broker refuses for good (larger than the raw topic's max.message.bytes) on a
running gateway: aiokafka has already given its batch the partition's next sequence numbers,
so the idempotent producer had a gap there and the broker refused every later frame of the
partition (OutOfOrderSequenceNumber), from every connection, until a restart. The gateway now
replaces its producer (ingest.gateway.renewal): every frame after the refusal is produced, in
order, and answered."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from devtools.sim.envelope import frame
from tests.integration import pipeline_support as ps
from tests.integration.gateway_support import (
    T,
    close,
    connect,
    login,
    read_answer,
    realtime,
    reply,
    running,
    sample,
    settings_for,
)

pytestmark = pytest.mark.integration

TOPIC_LIMIT = 4000  # the raw topic's max.message.bytes: a 6 KB frame is over it


async def create_small_topic(kafka: str, name: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        config = {"max.message.bytes": str(TOPIC_LIMIT)}
        await admin.create_topics([NewTopic(name, 1, 1, topic_configs=config)])
    finally:
        await admin.close()


def heartbeat(vin: str) -> bytes:
    return frame(2016, 0x07, vin, b"")


def large(vin: str, n: int) -> bytes:
    return frame(2016, 0x02, vin, T + b"\xc0" + n.to_bytes(2, "big") + b"x" * n)


async def test_frames_after_one_kafka_refused_are_produced_and_answered(
    kafka_bootstrap: str, unique_name: Callable[[str], str], unique_topic: Callable[..., str]
) -> None:
    topic = unique_name("gwrefused")
    await create_small_topic(kafka_bootstrap, topic)
    vin, other = "LNEVREFUSED000001", "LNEVREFUSED000002"
    async with running(settings_for(kafka_bootstrap, topic, dlq=unique_topic(1, "gwdlq"))) as gw:
        reader, writer = await connect(gw.ports["vehicle"])
        hello, beat = login(vin), heartbeat(vin)
        writer.write(hello + beat)
        assert await read_answer(reader) == reply(hello, 0x01)
        assert await read_answer(reader) == reply(beat, 0x01, b"")
        # Refused by the broker (MessageSizeTooLarge), then frames right behind it.
        after = [realtime(vin, 2016, n) for n in range(1, 4)]
        beat2 = heartbeat(vin)
        writer.write(large(vin, 6000) + b"".join(after) + beat2)
        # Real-time frames are not answered: the heartbeat behind them is, with success.
        answer = await read_answer(reader)
        if answer[2] == 0x02:  # the refused real-time frame's own error answer (if any)
            answer = await read_answer(reader)
        assert answer == reply(beat2, 0x01, b"")
        # Another vehicle on another connection: its partition is the same (one partition).
        reader2, writer2 = await connect(gw.ports["vehicle"])
        hello2, beat3 = login(other), heartbeat(other)
        writer2.write(hello2 + beat3)
        assert await read_answer(reader2) == reply(hello2, 0x01)
        assert await read_answer(reader2) == reply(beat3, 0x01, b"")
        assert sample(gw, "nev_gateway_refused_total", kind="vehicle", reason="kafka_refused") == 1
        assert gw.dispatcher.producers.renewals >= 1
        # counted for the operators, not only logged (the pool is the one start() made)
        replaced = sample(gw, "nev_gateway_producer_replacements_total")
        assert replaced == gw.dispatcher.producers.renewals, replaced
        await close(writer, writer2)

    records = await ps.read_topic(kafka_bootstrap, topic, expect=8)
    values = [r.value for r in sorted(records, key=lambda r: r.offset)]
    assert values == [hello, beat, *after, beat2, hello2, beat3]


async def test_the_producer_replaced_while_the_broker_refuses_again_and_again(
    kafka_bootstrap: str, unique_name: Callable[[str], str], unique_topic: Callable[..., str]
) -> None:
    # Several refusals in a row, each with small frames right behind it: each costs a
    # producer, none holds the partition, and the frames keep their order.
    topic = unique_name("gwrefused")
    await create_small_topic(kafka_bootstrap, topic)
    vin = "LNEVREFUSED000003"
    async with running(settings_for(kafka_bootstrap, topic, dlq=unique_topic(1, "gwdlq"))) as gw:
        reader, writer = await connect(gw.ports["vehicle"])
        hello = login(vin)
        writer.write(hello)
        assert await read_answer(reader) == reply(hello, 0x01)
        small: list[bytes] = []
        for round_ in range(3):
            batch = [realtime(vin, 2016, 10 * round_ + n) for n in range(5)]
            small += batch
            writer.write(large(vin, 5000 + round_) + b"".join(batch))
        beat = heartbeat(vin)
        writer.write(beat)
        while (answer := await read_answer(reader))[2] != 0x07:
            pass  # the refused frames' answers, if any
        assert answer == reply(beat, 0x01, b"")
        await asyncio.wait_for(gw.dispatcher.drained(), 60)
        await close(writer)

    records = await ps.read_topic(kafka_bootstrap, topic, expect=len(small) + 2)
    values = [r.value for r in sorted(records, key=lambda r: r.offset)]
    assert values == [hello, *small, beat]


async def test_the_tcec_receivers_sends_go_on_after_a_record_kafka_refused(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    # The T/CEC receiver's producer (per-record send, idempotent) had the same gap: after one
    # push the topic refused, every later push of its partition got OutOfOrderSequenceNumber.
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import MessageSizeTooLargeError
    from prometheus_client import CollectorRegistry

    from ingest.gateway.renewal import ProducerPool, RenewingSender
    from ingest.gateway.tcec.metrics import producer_replacements

    topic = unique_name("tcecrefused")
    await create_small_topic(kafka_bootstrap, topic)

    def make() -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True
        )

    first = make()
    await first.start()
    registry = CollectorRegistry()
    pool = ProducerPool(first, make, on_replaced=producer_replacements(registry).inc)
    sender = RenewingSender(pool)
    try:
        # One acknowledged first: the broker then knows the producer's sequence (the first
        # batch of a producer id it has not seen may start anywhere).
        await (await sender.send(topic, b"first", key=b"op"))
        refused = await sender.send(topic, b"x" * 6000, key=b"op")
        with pytest.raises(MessageSizeTooLargeError):
            await refused
        pushes = [b"push %d" % n for n in range(3)]
        for push in pushes:
            await (await sender.send(topic, push, key=b"op"))  # acknowledged, in turn
        assert pool.renewals == 1
        replaced = registry.get_sample_value("nev_gateway_tcec_producer_replacements_total")
        assert replaced == 1, replaced
    finally:
        await pool.close()
    records = await ps.read_topic(kafka_bootstrap, topic, expect=4)
    assert [r.value for r in sorted(records, key=lambda r: r.offset)] == [b"first", *pushes]


async def test_realtime_and_reissue_frames_kafka_refuses_get_the_error_flag(
    kafka_bootstrap: str, unique_name: Callable[[str], str], unique_topic: Callable[..., str]
) -> None:
    # Unanswered when stored (B.2.1: silence means accepted), they got no answer when Kafka
    # refused them for good either: the terminal discarded data that was never stored.
    topic = unique_name("gwrefused")
    await create_small_topic(kafka_bootstrap, topic)
    vin = "LNEVREFUSED000004"
    async with running(settings_for(kafka_bootstrap, topic, dlq=unique_topic(1, "gwdlq"))) as gw:
        reader, writer = await connect(gw.ports["vehicle"])
        hello = login(vin)
        writer.write(hello)
        assert await read_answer(reader) == reply(hello, 0x01)
        big_realtime = large(vin, 6000)
        big_reissue = frame(2016, 0x03, vin, T + b"\xc0" + (6000).to_bytes(2, "big") + b"y" * 6000)
        for refused in (big_realtime, big_reissue):
            writer.write(refused)
            assert await read_answer(reader) == reply(refused, 0x02)
        small = realtime(vin, 2016, 1)
        beat = heartbeat(vin)
        writer.write(small + beat)  # stored: the real-time frame unanswered, the heartbeat 0x01
        assert await read_answer(reader) == reply(beat, 0x01, b"")
        assert sample(gw, "nev_gateway_refused_total", kind="vehicle", reason="kafka_refused") == 2
        await close(writer)
