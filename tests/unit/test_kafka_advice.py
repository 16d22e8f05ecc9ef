"""What the Kafka start checks advise: the dev stack only for brokers where it listens (this
machine), Kafka's own tools for any other cluster; a topic's Metadata error read by its code.
(The checks themselves against real brokers: tests/integration/test_kafka_topic_check.py,
test_secure_stack.py, and tests/unit/test_config_cli.py for an unreachable broker.)"""

from __future__ import annotations

import pytest
from aiokafka.errors import (
    LeaderNotAvailableError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)

from ingest.transport_errors import topic_problem
from ingest.wiring import create_topic_advice, unreachable_kafka

pytestmark = pytest.mark.unit

# A bare IPv6 address takes no port (aiokafka reads "::1" as the address ::1, not host "::"
# and port 1): "::1" is this machine and "::1:9092" an address elsewhere, as aiokafka connects.
DEV = (
    "127.0.0.1:9092",
    "localhost:9092",
    "localhost",
    "[::1]:9092",
    "[::1]",
    "::1",
    " ::1 ,127.0.0.1:2",
    "0:0:0:0:0:0:0:1",
    "127.0.0.1:1,localhost:2",
)
REMOTE = (
    "kafka-1.prod:9092",
    "10.0.0.5:9092",
    "127.0.0.1:9092,kafka-1.prod:9092",
    "[2001:db8::1]:9092",
    "2001:db8::1",
    "::1:9092",
    "::1,kafka-1.prod:9092",
)


@pytest.mark.parametrize("servers", DEV)
def test_brokers_on_this_machine_get_the_dev_stack(servers: str) -> None:
    assert "nev-ingest devstack up" in unreachable_kafka(servers)
    assert create_topic_advice(servers, "t").startswith("nev-ingest devstack up creates")


@pytest.mark.parametrize("servers", REMOTE)
def test_any_other_cluster_gets_what_to_check_and_kafkas_tools(servers: str) -> None:
    said = unreachable_kafka(servers)
    assert "devstack" not in said
    assert f"kafka.bootstrap_servers ({servers}) are up and reachable" in said
    advice = create_topic_advice(servers, "nev.alerts")
    assert advice.startswith("kafka-topics.sh --create --topic nev.alerts"), advice
    assert "devstack" not in advice


def test_a_topic_problem_by_the_brokers_error_code() -> None:
    # The codes of the protocol, as aiokafka maps them (the broker's answers).
    denied = topic_problem("t", "k", TopicAuthorizationFailedError.errno, "User:u", "")
    assert denied is not None and "User:u is not authorized to describe it" in denied
    assert "does not exist" not in denied
    missing = topic_problem("t", "kafka.topic_dlq", UnknownTopicOrPartitionError.errno, "u", "x")
    assert missing is not None and "does not exist" in missing and "create it (x)" in missing
    assert topic_problem("t", "k", 0, "u", "") is None
    assert topic_problem("t", "k", LeaderNotAvailableError.errno, "u", "") is None  # being made
    other = topic_problem("t", "k", 17, "u", "")
    assert other is not None and "InvalidTopicError (error 17)" in other
