"""Kafka limits that must agree: record sizes and group timeouts are checked when the settings
load (one line naming the keys); producer errors are classed retriable or not; a dead letter
too large for its topic is cut to a prefix with the original's size and hash."""

from __future__ import annotations

import hashlib

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
)

from ingest.config.kafka_limits import TOO_LARGE_PREFIX_BYTES
from ingest.config.load import load_settings
from ingest.errors import UserError
from ingest.pipeline import wire
from ingest.pipeline.publish import retriable
from tests.unit.kafka_records import Rec

pytestmark = pytest.mark.unit


def test_the_defaults_agree() -> None:
    k = load_settings(environ={}).kafka
    assert k.max_record_bytes + 16 * 1024 <= k.max_request_size <= 1048588  # Kafka's default
    assert k.heartbeat_interval_ms * 3 <= k.session_timeout_ms
    revoke_ms = load_settings(environ={}).pipeline.revoke_timeout_s * 1000
    assert revoke_ms + k.heartbeat_interval_ms + 10_000 <= k.rebalance_timeout_ms


@pytest.mark.parametrize(
    ("env", "keys"),
    [
        ({"NEV_KAFKA_MAX_RECORD_BYTES": "1048576"}, ["kafka.max_request_size"]),
        (
            {"NEV_KAFKA_MAX_PARTITION_FETCH_BYTES": "500000"},
            ["kafka.max_partition_fetch_bytes", "kafka.max_record_bytes"],
        ),
        (
            {"NEV_KAFKA_FETCH_MAX_BYTES": "1000000"},
            ["kafka.fetch_max_bytes", "kafka.max_partition_fetch_bytes"],
        ),
        (
            {"NEV_KAFKA_HEARTBEAT_INTERVAL_MS": "11000"},
            ["kafka.heartbeat_interval_ms", "kafka.session_timeout_ms"],
        ),
        (
            {"NEV_PIPELINE_REVOKE_TIMEOUT_S": "55"},
            ["pipeline.revoke_timeout_s", "kafka.rebalance_timeout_ms"],
        ),
        # 48 s + 10 s fit the 60 s, not with the 3 s a member may take to learn of the
        # rebalance (its next heartbeat).
        (
            {"NEV_PIPELINE_REVOKE_TIMEOUT_S": "48"},
            [
                "pipeline.revoke_timeout_s",
                "kafka.heartbeat_interval_ms",
                "kafka.rebalance_timeout_ms",
            ],
        ),
        (
            {"NEV_KAFKA_MAX_POLL_INTERVAL_MS": "30000"},
            ["kafka.max_poll_interval_ms", "kafka.rebalance_timeout_ms"],
        ),
    ],
)
def test_limits_that_contradict_each_other_are_refused(
    env: dict[str, str], keys: list[str]
) -> None:
    with pytest.raises(UserError) as err:
        load_settings(environ=env)
    message = str(err.value)
    assert "\n" not in message
    for key in keys:
        assert key in message


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (KafkaConnectionError(), True),
        (KafkaTimeoutError(), True),  # a batch expired unsent: the broker is away
        (NotLeaderForPartitionError(), True),
        (OSError(), True),
        (MessageSizeTooLargeError(), False),
        (RecordTooLargeError(), False),
        (TopicAuthorizationFailedError(), False),
        (ValueError(), False),
    ],
)
def test_retriable_errors(exc: BaseException, expected: bool) -> None:
    assert retriable(exc) is expected


# Each test spells out the whole letter it checks, every keyword of wire.dead_letter
# (``duplicates`` pairs them by shape): the inputs are the test's subject, a shared builder
# would hide which field the test is about.
def test_a_too_large_letter_keeps_a_prefix_the_size_and_the_hash() -> None:
    value = bytes(range(256)) * 4000
    rec = Rec(
        "raw",
        2,
        7,
        value,
        key=b"VIN",
        timestamp=1,
        headers=[("received_at", b"1764135600123"), ("gateway", b"g1")],
    )
    letter = wire.too_large_letter_of(rec, value, detail="too big", stage="decode")
    assert letter.key == b"VIN"
    assert wire.header(letter.headers, wire.SOURCE_OFFSET) == b"7"
    assert letter.value == value[:TOO_LARGE_PREFIX_BYTES]
    assert wire.header(letter.headers, wire.ERROR_REASON) == b"too_large"
    assert wire.header(letter.headers, wire.ORIGINAL_SIZE) == str(len(value)).encode()
    sha = hashlib.sha256(value).hexdigest().encode()
    assert wire.header(letter.headers, wire.ORIGINAL_SHA256) == sha
    assert wire.header(letter.headers, "gateway") == b"g1"  # the original headers stay


def test_shrinking_a_letter_drops_big_headers_and_stops_when_nothing_is_left_to_cut() -> None:
    value = b"x" * 50_000
    letter = wire.dead_letter(
        key=b"k" * 1000,
        value=value,
        headers=[("received_at", b"1764135600123"), ("junk", b"j" * 100_000)],
        reason="bad_bcc",
        detail="checksum",
        stage="decode",
        topic="raw",
        partition=0,
        offset=3,
        timestamp_ms=1,
    )
    small = wire.shrunk(letter)
    assert small is not None
    assert small.value == value[:TOO_LARGE_PREFIX_BYTES] and small.key == b"k" * 256
    assert wire.header(small.headers, "junk") is None
    assert wire.header(small.headers, wire.ERROR_REASON) == b"bad_bcc"
    assert wire.header(small.headers, wire.SOURCE_OFFSET) == b"3"
    assert wire.header(small.headers, wire.ORIGINAL_SIZE) == b"50000"
    assert wire.shrunk(small) is None
