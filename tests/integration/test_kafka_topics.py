"""Topics are created on purpose, never on first use: the dev broker does not auto-create them
(as production brokers do not), and ``run`` and ``loadgen`` stop at start with one line naming
a missing topic; ``run`` also refuses a dead-letter topic too small for the largest dead
letter (its max.message.bytes read from the broker)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import UnknownTopicOrPartitionError

from ingest.wiring import quiet_aiokafka
from tests.integration.pipeline_support import PipelineEnv

pytestmark = pytest.mark.integration


def _cli(environ: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ingest", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _error_line(stderr: str) -> str:
    """The one-line error after the (JSON) log lines of the checks that passed."""
    assert "Traceback" not in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    assert not last.startswith("{"), stderr
    return last


async def _topics(kafka: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def test_the_dev_broker_does_not_create_topics_on_first_use(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("nope")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, request_timeout_ms=3000)
    await producer.start()
    try:
        with quiet_aiokafka(), pytest.raises(UnknownTopicOrPartitionError):
            await producer.send_and_wait(name, b"x")
    finally:
        await producer.stop()
    assert name not in await _topics(kafka_bootstrap)


@pytest.mark.parametrize("key", ["dlq", "tcec", "battery"])  # every raw topic is checked too
async def test_run_stops_at_start_naming_the_missing_topic(
    env: PipelineEnv, unique_name: Callable[[str], str], key: str
) -> None:
    missing = unique_name(key)
    proc = _cli(env.environ(**{f"NEV_KAFKA_TOPIC_{key.upper()}": missing}), "run")
    assert proc.returncode == 2, proc.stderr
    line = _error_line(proc.stderr)
    assert missing in line and f"kafka.topic_{key}" in line and "does not exist" in line
    assert "kafka-topics.sh --create" in line
    assert missing not in await _topics(env.kafka)  # asking did not create it


async def test_run_stops_at_start_when_the_dlq_topic_is_too_small(
    env: PipelineEnv, unique_name: Callable[[str], str]
) -> None:
    small = unique_name("dlq")
    admin = AIOKafkaAdminClient(bootstrap_servers=env.kafka)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(small, 1, 1, topic_configs={"max.message.bytes": "200000"})]
        )
    finally:
        await admin.close()
    proc = _cli(env.environ(NEV_KAFKA_TOPIC_DLQ=small), "run")
    assert proc.returncode == 2, proc.stderr
    line = _error_line(proc.stderr)
    assert "kafka.max_request_size (1048576)" in line and "max.message.bytes (200000)" in line
    assert small in line


def test_loadgen_stops_at_start_naming_the_missing_topic(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NEV_")}
    environ["NEV_KAFKA_BOOTSTRAP_SERVERS"] = kafka_bootstrap
    missing = unique_name("lg")
    proc = _cli(environ, "loadgen", "--max-frames", "10", "--topic", missing)
    assert proc.returncode == 2, proc.stderr
    line = _error_line(proc.stderr)
    assert missing in line and "--topic" in line and "does not exist" in line
