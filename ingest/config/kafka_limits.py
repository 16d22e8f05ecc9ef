"""Kafka limits that must agree with each other: record sizes and consumer-group timeouts.

Checked when the settings are loaded (``check_settings``: a one-line ``UserError`` naming the
keys), and against the brokers at start (``ingest.wiring.check_topics`` reads the
dead-letter topic's ``max.message.bytes``). Why each rule exists is in docs/kafka.md ("Record
sizes") and docs/operations.md ("Consumer-group timeouts").
"""

from __future__ import annotations

from typing import Final

from ingest.config.settings import Settings
from ingest.errors import UserError

__all__ = [
    "DEAD_LETTER_OVERHEAD",
    "REVOKE_MARGIN_MS",
    "TOO_LARGE_PREFIX_BYTES",
    "check_settings",
]


# What a dead letter adds to the original record: the error headers (detail capped at 1000
# bytes, contract.MAX_DETAIL_BYTES), the source headers, and the record and batch framing.
# Generous on purpose: the gateways' own headers travel in the dead letter too.
DEAD_LETTER_OVERHEAD: Final = 16 * 1024

# A too_large dead letter keeps this much of the value: a GB/T 32960 header (start marker,
# command, VIN, encryption, length) and the first data blocks, enough to find the device.
TOO_LARGE_PREFIX_BYTES: Final = 4096

# After the revoke timeout the worker still runs the steps after the drain (each bounded, at
# most ingest.pipeline.closing.after_revoke_drain_s together: tests/unit/test_closing.py) and
# rejoins; the group must wait for that too, or it drops the worker, whose rejoin is a second
# rebalance. On top of the heartbeat interval: a member learns of a rebalance only at its next
# heartbeat, up to kafka.heartbeat_interval_ms after the group's rebalance timeout started.
REVOKE_MARGIN_MS: Final = 10_000


def check_settings(settings: Settings) -> None:
    """Raise ``UserError`` (one line, naming the keys) when the limits contradict each other."""
    k = settings.kafka
    need = k.max_record_bytes + DEAD_LETTER_OVERHEAD
    if k.max_request_size < need:
        raise UserError(
            f"kafka.max_request_size ({k.max_request_size}) cannot hold the dead letter of a "
            f"record of kafka.max_record_bytes ({k.max_record_bytes}): raise it to at least "
            f"{need} or lower kafka.max_record_bytes"
        )
    if k.max_partition_fetch_bytes < need:
        raise UserError(
            f"kafka.max_partition_fetch_bytes ({k.max_partition_fetch_bytes}) is below "
            f"kafka.max_record_bytes ({k.max_record_bytes}) + {DEAD_LETTER_OVERHEAD}: raise it "
            f"to at least {need} or lower kafka.max_record_bytes"
        )
    if k.fetch_max_bytes < k.max_partition_fetch_bytes:
        raise UserError(
            f"kafka.fetch_max_bytes ({k.fetch_max_bytes}) is below "
            f"kafka.max_partition_fetch_bytes ({k.max_partition_fetch_bytes}): raise it"
        )
    if k.heartbeat_interval_ms * 3 > k.session_timeout_ms:
        raise UserError(
            f"kafka.heartbeat_interval_ms ({k.heartbeat_interval_ms}) must be at most a third of "
            f"kafka.session_timeout_ms ({k.session_timeout_ms}), so that one lost heartbeat "
            "does not drop a worker: lower it or raise the session timeout"
        )
    revoke_ms = settings.pipeline.revoke_timeout_s * 1000
    if revoke_ms + k.heartbeat_interval_ms + REVOKE_MARGIN_MS > k.rebalance_timeout_ms:
        raise UserError(
            f"pipeline.revoke_timeout_s ({settings.pipeline.revoke_timeout_s:g}) + "
            f"kafka.heartbeat_interval_ms ({k.heartbeat_interval_ms}) + "
            f"{REVOKE_MARGIN_MS // 1000} s must stay below kafka.rebalance_timeout_ms "
            f"({k.rebalance_timeout_ms}), or a slow revoke gets the worker dropped from the "
            "group: lower the revoke timeout or the heartbeat interval, or raise the "
            "rebalance timeout"
        )
    if k.max_poll_interval_ms < k.rebalance_timeout_ms:
        raise UserError(
            f"kafka.max_poll_interval_ms ({k.max_poll_interval_ms}) is below "
            f"kafka.rebalance_timeout_ms ({k.rebalance_timeout_ms}): a worker busy in a "
            "rebalance would leave the group; raise it"
        )
