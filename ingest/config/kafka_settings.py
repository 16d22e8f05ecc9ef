"""The ``kafka`` settings section: brokers, security, topics, record sizes, group timeouts.

Its own module because it is the largest section; ``ingest.config.settings`` assembles it
with the others into ``Settings``. The sizes and timeouts are checked against each other at
load (``ingest.config.load``) and against the broker at start (``ingest.config.kafka_limits``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from contract.kinds import ENTITY_KINDS, EntityKind
from ingest.config.bounds import KAFKA_TOPIC, MAX_PARTITIONS, MAX_TIMEOUT_S
from ingest.config.fields import Pattern, Section, setting

__all__ = ["DEFAULT_MAX_RECORD_BYTES", "MAX_MESSAGE_BYTES", "RAW_SOURCES", "KafkaSettings"]

# kafka.max_record_bytes: 8x the largest GB/T 32960 frame (a 16-bit length field: < 64 KiB),
# and with a dead letter's overhead still under Kafka's default 1 MiB message.max.bytes, so the
# defaults work against a broker nobody configured.
DEFAULT_MAX_RECORD_BYTES: Final = 512 * 1024
# Kafka message sizes: far above any GB/T 32960 frame (< 64 KiB), below what brokers accept.
MAX_MESSAGE_BYTES: Final = 64 * 2**20

# The raw topics the service consumes: ``kafka.topic_<source>`` -> the entity kind of its
# records. Chargers have two: their binary profile and their operators' T/CEC 102 pushes.
RAW_SOURCES: Final[dict[str, EntityKind]] = {
    "vehicle": "vehicle",
    "charger": "charger",
    "tcec": "charger",
    "battery": "battery",
}

# A group or client id: not empty, no surrounding spaces (a typo the logs would hide).
_NAME: Final = Pattern(r"\S(.*\S)?", "a non-empty name without surrounding spaces")


# A declarative table of fields like the other sections (ingest/config/settings.py): the same
# shape by design.
@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class KafkaSettings(Section):
    bootstrap_servers: str = setting(
        "127.0.0.1:9092", "Comma-separated host:port list of the Kafka brokers."
    )
    client_id: str = setting(
        "nev-ingest", "Client id sent to the brokers (shows in their logs).", pattern=_NAME
    )
    # Empty, the broker refuses the join (InvalidGroupIdError) and the workers restart forever.
    group_id: str = setting("nev-ingest", "Consumer group of the ingest workers.", pattern=_NAME)
    security_protocol: str = setting(
        "PLAINTEXT",
        "How to talk to the brokers.",
        choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
    )
    sasl_mechanism: str = setting(
        "SCRAM-SHA-512",
        "SASL mechanism, used when security_protocol is SASL_*. (OAUTHBEARER is not offered: "
        "aiokafka needs a token provider object for it, which a setting cannot give.)",
        choices=("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
    )
    sasl_username: str = setting("", "SASL user name.")
    sasl_password: str = setting("", "SASL password.", secret=True)
    ssl_cafile: str = setting(
        "", "PEM file of the CA that signed the brokers' certificates.", path=True
    )
    ssl_certfile: str = setting("", "PEM client certificate, for mutual TLS.", path=True)
    ssl_keyfile: str = setting("", "PEM private key of ssl_certfile.", path=True)
    ssl_key_password: str = setting("", "Password of ssl_keyfile, if encrypted.", secret=True)
    topic_vehicle: str = setting(
        "nev.vehicle.raw", "Raw GB/T 32960 frames from vehicles.", pattern=KAFKA_TOPIC
    )
    topic_charger: str = setting(
        "nev.charger.raw", "Raw frames from charging piles.", pattern=KAFKA_TOPIC
    )
    topic_battery: str = setting(
        "nev.battery.raw", "Raw frames from battery packs.", pattern=KAFKA_TOPIC
    )
    topic_tcec: str = setting(
        "nev.charger.tcec",
        "T/CEC 102 pushes of charging operators (one push's business JSON a record, the "
        "interface, operator id and time in headers; docs/kafka.md): chargers too.",
        pattern=KAFKA_TOPIC,
    )
    topic_dlq: str = setting(
        "nev.dlq", "Dead letters: undecodable or rejected frames + reason.", pattern=KAFKA_TOPIC
    )
    topic_alerts: str = setting(
        "nev.alerts", "Alerts raised by the rule engine (JSON).", pattern=KAFKA_TOPIC
    )
    partitions: int = setting(
        12,
        "Partitions of each raw topic: must equal the raw topics' real partition count "
        "(`nev-ingest query` routes an entity to its shard by it); the dev stack creates them "
        "with it. Caps the useful worker count.",
        minimum=1,
        maximum=MAX_PARTITIONS,
    )
    dlq_partitions: int = setting(
        3,
        "Partitions of the dead-letter topic (dev stack only: nev-ingest never creates topics).",
        minimum=1,
        maximum=MAX_PARTITIONS,
    )
    alerts_partitions: int = setting(
        3,
        "Partitions of the alerts topic (dev stack only: nev-ingest never creates topics).",
        minimum=1,
        maximum=MAX_PARTITIONS,
    )
    replication_factor: int = setting(
        1,
        "Replication factor of the topics the dev stack creates (dev stack only: nev-ingest "
        "never creates topics; create production topics with 3).",
        minimum=1,
        maximum=16,
    )
    request_timeout_ms: int = setting(
        30000, "Timeout of one request to a broker.", minimum=1000, maximum=600000
    )
    # Sizes (docs/kafka.md "Record sizes"): checked against each other at load and against
    # the dead-letter topic's max.message.bytes at start, so no dead letter can be refused.
    max_record_bytes: int = setting(
        DEFAULT_MAX_RECORD_BYTES,
        "Largest raw frame (record value) stored; a larger one goes to the dead-letter topic "
        "as too_large with its first 4 KiB, size and SHA-256 (a GB/T 32960 frame is < 64 KiB).",
        minimum=1024,
        maximum=MAX_MESSAGE_BYTES,
    )
    max_request_size: int = setting(
        1048576,
        "Largest message the workers produce (dead letters, alerts); at least max_record_bytes "
        "+ 16 KiB, and at most the dead-letter topic's max.message.bytes (checked at start).",
        minimum=1024,
        maximum=MAX_MESSAGE_BYTES,
    )
    max_partition_fetch_bytes: int = setting(
        2097152,
        "Most bytes fetched per partition per request; at least max_record_bytes + 16 KiB.",
        minimum=1024,
        maximum=MAX_MESSAGE_BYTES,
    )
    fetch_max_bytes: int = setting(
        33554432,
        "Most bytes one fetch returns over all partitions; at least max_partition_fetch_bytes.",
        minimum=1024,
        maximum=4 * MAX_MESSAGE_BYTES,
    )
    # Group timeouts (docs/operations.md "Consumer-group timeouts"): heartbeats run in their own
    # task, so only a dead process misses them; a slow write delays nothing but a rebalance.
    session_timeout_ms: int = setting(
        30000,
        "A worker that sends no heartbeat for this long is dropped from the group (how long a "
        "killed worker's partitions wait).",
        minimum=6000,
        maximum=1_800_000,  # the broker's default group.max.session.timeout.ms
    )
    heartbeat_interval_ms: int = setting(
        3000,
        "Heartbeat period; at most a third of session_timeout_ms.",
        minimum=100,
        maximum=600_000,
    )
    rebalance_timeout_ms: int = setting(
        60000,
        "How long the group waits for every worker to rejoin in a rebalance; more than "
        "pipeline.revoke_timeout_s + heartbeat_interval_ms + 10 s (the revoke callback runs "
        "inside it, learnt of at the next heartbeat).",
        minimum=6000,
        maximum=int(MAX_TIMEOUT_S) * 1000,
    )
    max_poll_interval_ms: int = setting(
        300000,
        "A worker whose consume loop does not poll for this long leaves the group (the loop "
        "polls even while paused); at least rebalance_timeout_ms.",
        minimum=6000,
        maximum=int(MAX_TIMEOUT_S) * 1000,
    )

    def raw_topic(self, kind: str) -> str:
        """The raw-frame topic of an entity kind (``vehicle``, ``charger``, ``battery``)."""
        topics = {"vehicle": self.topic_vehicle, "charger": self.topic_charger}
        topics["battery"] = self.topic_battery
        try:
            return topics[kind]
        except KeyError:
            raise ValueError(f"unknown entity kind {kind!r}; known: {ENTITY_KINDS}") from None

    def raw_topics(self) -> dict[str, EntityKind]:
        """Every raw topic (``RAW_SOURCES``, in its order) -> the entity kind of its records."""
        return {getattr(self, f"topic_{source}"): kind for source, kind in RAW_SOURCES.items()}

    def topic_partitions(self) -> dict[str, int]:
        """Every topic nev-ingest owns, with the partition count it creates it with."""
        out = {topic: self.partitions for topic in self.raw_topics()}
        out[self.topic_dlq] = self.dlq_partitions
        out[self.topic_alerts] = self.alerts_partitions
        return out
