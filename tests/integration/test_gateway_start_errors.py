"""``nev-ingest gateway`` refusing to start: a port taken (metrics, T/CEC receiver), a T/CEC
receiver without an operator, or no listener at all ends with one line naming the key, exit 2,
never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator

import orjson
import pytest

from devtools.devstack.process import free_port
from tests.integration.gateway_support import TCEC_OPERATOR

pytestmark = pytest.mark.integration

SECRETS = orjson.dumps(
    {
        TCEC_OPERATOR.operator_id: {
            "OperatorSecret": TCEC_OPERATOR.operator_secret,
            "DataSecret": TCEC_OPERATOR.data_secret,
            "DataSecretIV": TCEC_OPERATOR.data_secret_iv,
            "SigSecret": TCEC_OPERATOR.sig_secret,
        }
    }
).decode()


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something else listens on for the test's length."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _gateway(
    kafka: str, unique_topic: Callable[..., str], **env: str
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NEV_")}
    environ.update(
        NEV_KAFKA_BOOTSTRAP_SERVERS=kafka,
        NEV_KAFKA_TOPIC_VEHICLE=unique_topic(1, "gw"),
        NEV_KAFKA_TOPIC_TCEC=unique_topic(1, "tcec"),
        NEV_KAFKA_TOPIC_DLQ=unique_topic(1, "dlq"),
        NEV_GATEWAY_LISTEN_VEHICLE=f"127.0.0.1:{free_port()}",
        NEV_GATEWAY_METRICS_PORT=str(free_port()),
        NEV_LOG_FORMAT="text",
    )
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "ingest", "gateway", "run"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _assert_refused(result: subprocess.CompletedProcess[str], start: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"nev-ingest: error: {start}"), result.stderr


def test_metrics_port_taken(
    kafka_bootstrap: str, unique_topic: Callable[..., str], taken_port: int
) -> None:
    result = _gateway(kafka_bootstrap, unique_topic, NEV_GATEWAY_METRICS_PORT=str(taken_port))
    _assert_refused(result, f"gateway.metrics_port = {taken_port}: cannot listen")


def test_tcec_port_taken(
    kafka_bootstrap: str, unique_topic: Callable[..., str], taken_port: int
) -> None:
    result = _gateway(
        kafka_bootstrap,
        unique_topic,
        NEV_TCEC_LISTEN=f"127.0.0.1:{taken_port}",
        NEV_TCEC_OPERATOR_SECRETS=SECRETS,
    )
    _assert_refused(result, f"tcec.listen: cannot listen on 127.0.0.1:{taken_port}")


def test_tcec_listen_without_an_operator(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    result = _gateway(kafka_bootstrap, unique_topic, NEV_TCEC_LISTEN=f"127.0.0.1:{free_port()}")
    _assert_refused(result, "tcec.listen is set but no operator is configured")


def test_no_listener_at_all(kafka_bootstrap: str, unique_topic: Callable[..., str]) -> None:
    # It used to start, report ready on /readyz and take nothing (here: run until the timeout).
    result = _gateway(kafka_bootstrap, unique_topic, NEV_GATEWAY_LISTEN_VEHICLE="")
    _assert_refused(result, "the gateway has no listener: gateway.listen_vehicle, ")


@pytest.mark.parametrize("setting", ["NEV_KAFKA_TOPIC_VEHICLE", "NEV_KAFKA_TOPIC_DLQ"])
def test_a_topic_smaller_than_the_gateways_batches(
    kafka_bootstrap: str,
    unique_name: Callable[[str], str],
    unique_topic: Callable[..., str],
    setting: str,
) -> None:
    # A batch the broker refuses as too large used to cost the producer the partition's
    # sequence; refused at start now, with the setting to change. The dead-letter topic too:
    # the frames the gateway refuses go there in batches as large (it was not checked).
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from tests.conftest import run_async

    small = unique_name("gwsmall")

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            config = {"max.message.bytes": "100000"}
            await admin.create_topics([NewTopic(small, 1, 1, topic_configs=config)])
        finally:
            await admin.close()

    run_async(create())
    result = _gateway(kafka_bootstrap, unique_topic, **{setting: small})
    _assert_refused(
        result, f"Kafka topic {small} takes at most 100000 bytes (max.message.bytes) but gets"
    )
    assert "kafka.max_request_size" in result.stderr, result.stderr


@pytest.mark.parametrize(
    "key", ["topic_vehicle", "topic_charger", "topic_battery", "topic_dlq", "topic_tcec"]
)
def test_a_missing_topic_it_produces_to_is_refused(
    kafka_bootstrap: str,
    unique_name: Callable[[str], str],
    unique_topic: Callable[..., str],
    key: str,
) -> None:
    # Every listener on: each topic the gateway writes to is in its start check
    # (ingest.gateway.checks.produced_topics), the charger's and battery's kinds' too.
    env = {
        "NEV_GATEWAY_LISTEN_CHARGER": f"127.0.0.1:{free_port()}",
        "NEV_GATEWAY_LISTEN_BATTERY": f"127.0.0.1:{free_port()}",
        "NEV_KAFKA_TOPIC_CHARGER": unique_topic(1, "ch"),
        "NEV_KAFKA_TOPIC_BATTERY": unique_topic(1, "bat"),
        "NEV_TCEC_LISTEN": f"127.0.0.1:{free_port()}",
        "NEV_TCEC_OPERATOR_SECRETS": SECRETS,
    }
    missing = unique_name("gwmissing")  # never created
    env[f"NEV_KAFKA_{key.upper()}"] = missing
    result = _gateway(kafka_bootstrap, unique_topic, **env)
    _assert_refused(result, f"Kafka topic {missing!r} (kafka.{key}) does not exist")
