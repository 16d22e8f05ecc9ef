"""The dead-letter topic's max.message.bytes lowered below a letter after the service started
(the start check read the old value): the broker refuses the letter of a big bad frame. That
refusal used to leave the worker's idempotent producer unable to go on on the dead-letter
partition (OutOfOrderSequenceNumber): the batch's write was retried for ever, its partitions
paused (a dead letter of the database's refusals made the worker exit instead, again at every
restart), so one hostile frame held its raw partition. Now the letter goes out cut down (its
first 4 KiB, size and hash) with a new producer, the good frames around it are stored, the
offsets move on and the alert raised afterwards is still published."""

from __future__ import annotations

import asyncio
import hashlib

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from ingest.config.kafka_limits import TOO_LARGE_PREFIX_BYTES
from ingest.decoders.errors import FrameError
from ingest.decoders.fast import decode_rows
from ingest.pipeline import wire
from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.traffic import recent_fleet

pytestmark = pytest.mark.integration

TOPIC_LIMIT = 20_000
BIG = 100_000  # under kafka.max_record_bytes (512 KiB), so its letter carries it whole


async def lower_max_message_bytes(kafka: str, topic: str, limit: int) -> None:
    """Set ``topic``'s max.message.bytes and wait until the broker reports it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        config_name = "max.message.bytes"
        config = {config_name: str(limit)}
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, config)])

        async def applied() -> bool:
            wanted = {"max.message.bytes": None}
            resource = ConfigResource(ConfigResourceType.TOPIC, topic, wanted)
            responses = await admin.describe_configs([resource])
            entries = [e for r in responses for res in r.resources for e in res[4]]
            return (config_name, str(limit)) in [(e[0], e[1]) for e in entries]

        await ps.until(applied, timeout_s=30, what=f"{topic}'s max.message.bytes = {limit}")
    finally:
        await admin.close()


async def test_a_letter_the_broker_refuses_goes_cut_down_and_the_worker_goes_on(
    env: PipelineEnv,
) -> None:
    messages = recent_fleet(20, 3, runaway=True)
    expected = ps.Expected.of(messages)
    half = len(messages) // 2
    # A real frame with 100 kB of garbage after it: it does not decode, and its letter (the
    # value whole) is over the topic's limit but under the producer's max_request_size.
    big = messages[0].value + bytes(range(256)) * (BIG // 256)
    with pytest.raises(FrameError) as bad:
        decode_rows(big)
    reason = bad.value.reason.encode()

    async with ps.serving(env, "dlq-refused") as svc:
        (pid,) = svc.worker_pids()
        await lower_max_message_bytes(env.kafka, env.dlq, TOPIC_LIMIT)
        # A small bad frame first, dead-lettered whole: the producer has written to the
        # dead-letter partition, so a refused batch leaves a gap in its sequence there (on a
        # partition it never wrote to, the broker takes any first sequence).
        small = messages[1]._replace(value=messages[1].value[:-1] + b"\x00")
        await ps.produce_and_store(env, [*messages[:half], small])
        # Key = a VIN of the fleet: the bad frame shares its raw partition with good frames.
        await ps.produce(env.kafka, env.topic, [messages[0]._replace(value=big)])
        await ps.produce_and_store(env, messages[half:], timeout_s=120)

        assert await ps.stored_rows(env.dsn) == expected.rows
        dead = await ps.read_topic(env.kafka, env.dlq, expect=2)
        assert [r.value for r in dead if r.value == small.value] == [small.value]
        # Exactly once, cut down: the refused whole letter was never written.
        (letter,) = [r for r in dead if r.value != small.value]
        assert letter.value == big[:TOO_LARGE_PREFIX_BYTES]
        assert letter.key == messages[0].key
        assert ps.header(letter.headers, wire.ERROR_REASON) == reason
        assert ps.header(letter.headers, wire.ORIGINAL_SIZE) == str(len(big)).encode()
        sha = hashlib.sha256(big).hexdigest().encode()
        assert ps.header(letter.headers, wire.ORIGINAL_SHA256) == sha
        assert svc.metric("nev_ingest_dead_letters_shrunk_total") == 1
        # The refusal's gap cost the worker's producer: counted, not only logged (once or
        # twice: the letter is refused first in its batch, then, if it had company, alone).
        assert svc.metric("nev_ingest_kafka_producer_replacements_total") >= 1
        # The alert of the runaway vehicle, raised near the end of the traffic, went out with
        # the new producer.
        alerts = await ps.read_topic(env.kafka, env.alerts, expect=1)
        assert any(orjson.loads(r.value)["type"] == "raised" for r in alerts)
        # The same worker all along: it neither exited nor was restarted.
        assert svc.worker_pids() == [pid], svc.tail()
        crashed = [r for r in svc.logs() if str(r.get("msg", "")).startswith("worker crashed")]
        assert not crashed, svc.tail()


async def test_a_cut_down_letter_refused_again_ends_the_worker_until_the_topic_is_fixed(
    env: PipelineEnv,
) -> None:
    # The topic's limit is below even the cut-down letter (4 KiB and its headers): no retry
    # gets the letter out. The decode step's letters used to have the batch's write retried
    # for ever (a WARNING, stage="dlq"), its partitions paused; now the worker exits with the
    # one-line error, the supervisor restarts it (and it exits again) until the topic is fixed.
    messages = recent_fleet(5, 1)
    big = messages[0].value + bytes(range(256)) * (BIG // 256)
    async with ps.serving(env, "dlq-refused-again") as svc:
        (pid,) = svc.worker_pids()
        await lower_max_message_bytes(env.kafka, env.dlq, 2000)
        await ps.produce(env.kafka, env.topic, [messages[0]._replace(value=big), *messages])

        async def stopped() -> list[str]:
            return [
                str(r["msg"])
                for r in svc.logs()
                if str(r.get("msg", "")).startswith("worker stopped: producing to Kafka topic")
            ]

        (line, *_) = await ps.until(stopped, timeout_s=60, what="the worker's exit")
        assert env.dlq in line and "MessageSizeTooLargeError" in line, line
        assert "\n" not in line  # one line, no traceback
        await ps.until(
            lambda: asyncio.sleep(0, pid not in svc.worker_pids()),
            timeout_s=30,
            what="the worker to exit",
        )
        assert await ps.stored_rows(env.dsn) != ps.Expected.of(messages).rows  # held

        await lower_max_message_bytes(env.kafka, env.dlq, TOPIC_LIMIT)  # the fix
        await ps.until(lambda: ps.caught_up(env), timeout_s=120, what="every offset stored")
        assert await ps.stored_rows(env.dsn) == ps.Expected.of(messages).rows
        (letter,) = await ps.read_topic(env.kafka, env.dlq, expect=1)
        assert letter.value == big[:TOO_LARGE_PREFIX_BYTES]
        assert svc.metric("nev_ingest_worker_restarts_total") >= 1
