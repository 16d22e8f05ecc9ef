"""The settings object: every configuration key of nev-ingest, its default and its meaning.

Read in this order, later wins: defaults (here), a TOML file (``--config`` or ``NEV_CONFIG``),
environment variables ``NEV_<SECTION>_<KEY>``, command-line flags. ``ingest.config.load`` does
the reading and validation; ``docs/configuration.md`` is generated from this module
(``nev-ingest config docs``), so a key's ``help`` is its documentation.

Only CLI and wiring code reads ``Settings``; library code in ``storage/`` and ``alerts/`` takes
explicit typed parameters.

To add a key: one ``name: type = setting(default, "help", ...)`` line in its section, then
``nev-ingest config docs > docs/configuration.md``. Supported types: str, int, float, bool
and tuple[str, ...] (comma-separated in the environment).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ingest.config.fields import Pattern, Section, setting

# Entity kind is a dimension everywhere (topics, decoders, tables, rules, metrics).
ENTITY_KINDS: Final = ("vehicle", "charger", "battery")

PORT_MIN: Final = 1
PORT_MAX: Final = 65535

# Upper bounds shared by several keys. They only stop absurd values (a typo, an extra digit);
# raise one if a real deployment needs more.
MAX_PARTITIONS: Final = 10_000
MAX_WORKERS: Final = 256  # processes of one host; more hosts scale further, not more workers
MAX_TIMEOUT_S: Final = 3600.0
MAX_RETENTION_DAYS: Final = 36_500  # 100 years; 0 keeps forever
# kafka.max_record_bytes: 8x the largest GB/T 32960 frame (a 16-bit length field: < 64 KiB),
# and with a dead letter's overhead still under Kafka's default 1 MiB message.max.bytes, so the
# defaults work against a broker nobody configured.
DEFAULT_MAX_RECORD_BYTES: Final = 512 * 1024
# Kafka message sizes: far above any GB/T 32960 frame (< 64 KiB), below what brokers accept.
MAX_MESSAGE_BYTES: Final = 64 * 2**20

# Kafka's own rule for topic names (org.apache.kafka.common.internals.Topic).
KAFKA_TOPIC: Final = Pattern(
    r"(?!\.{1,2}$)[A-Za-z0-9._-]{1,249}",
    "a Kafka topic name (letters, digits, '.', '_', '-'; 1 to 249 characters; not '.' or '..')",
)
# Schema names are spliced into SQL text (storage.params.check_identifier accepts the same).
SQL_IDENTIFIER: Final = Pattern(
    r"[a-z_][a-z0-9_]{0,62}",
    "a plain SQL name (lower-case letters, digits, '_'; not starting with a digit; "
    "at most 63 characters)",
)


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class KafkaSettings(Section):
    bootstrap_servers: str = setting(
        "127.0.0.1:9092", "Comma-separated host:port list of the Kafka brokers."
    )
    client_id: str = setting("nev-ingest", "Client id sent to the brokers (shows in their logs).")
    group_id: str = setting("nev-ingest", "Consumer group of the ingest workers.")
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
    ssl_cafile: str = setting("", "PEM file of the CA that signed the brokers' certificates.")
    ssl_certfile: str = setting("", "PEM client certificate, for mutual TLS.")
    ssl_keyfile: str = setting("", "PEM private key of ssl_certfile.")
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
    topic_dlq: str = setting(
        "nev.dlq", "Dead letters: undecodable or rejected frames + reason.", pattern=KAFKA_TOPIC
    )
    topic_alerts: str = setting(
        "nev.alerts", "Alerts raised by the rule engine (JSON).", pattern=KAFKA_TOPIC
    )
    partitions: int = setting(
        12,
        "Partitions of each raw topic when nev-ingest creates it; caps the useful worker count.",
        minimum=1,
        maximum=MAX_PARTITIONS,
    )
    dlq_partitions: int = setting(
        3, "Partitions of the dead-letter topic.", minimum=1, maximum=MAX_PARTITIONS
    )
    alerts_partitions: int = setting(
        3, "Partitions of the alerts topic.", minimum=1, maximum=MAX_PARTITIONS
    )
    replication_factor: int = setting(
        1,
        "Replication factor of topics nev-ingest creates (3 in production).",
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
        "pipeline.revoke_timeout_s + 10 s (the revoke callback runs inside it).",
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

    def topic_partitions(self) -> dict[str, int]:
        """Every topic nev-ingest owns, with the partition count it creates it with."""
        out = {self.raw_topic(kind): self.partitions for kind in ENTITY_KINDS}
        out[self.topic_dlq] = self.dlq_partitions
        out[self.topic_alerts] = self.alerts_partitions
        return out


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class PostgresSettings(Section):
    dsn: str = setting(
        "postgresql://nev@127.0.0.1:5432/nev",
        "libpq URL of the database. Prefer password/password_file to a password in the URL.",
        dsn=True,
    )
    password: str = setting("", "Password; overrides one given in dsn.", secret=True)
    sslmode: str = setting(
        "prefer",
        "TLS to the server, as libpq's sslmode.",
        choices=("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    )
    sslrootcert: str = setting("", "PEM file of the CA for verify-ca / verify-full.")
    sslcert: str = setting("", "PEM client certificate.")
    sslkey: str = setting("", "PEM private key of sslcert.")
    pool_min_size: int = setting(1, "Connections each worker keeps open.", minimum=0, maximum=100)
    pool_max_size: int = setting(4, "Most connections each worker opens.", minimum=1, maximum=100)
    statement_timeout_ms: int = setting(
        60000, "Server-side statement timeout; 0 disables it.", minimum=0, maximum=86_400_000
    )
    connect_timeout_s: float = setting(
        10.0, "Timeout of one connection attempt.", minimum=0.1, maximum=300
    )
    schema_mode: str = setting(
        "auto",
        "Schema flavour: auto detects the timescaledb extension.",
        choices=("auto", "timescale", "plain"),
    )
    loader: str = setting(
        "auto",
        "Bulk loader: binary COPY, or INSERT ... SELECT unnest() where COPY FROM STDIN is "
        "unavailable (PGlite); auto picks by engine.",
        choices=("auto", "copy", "unnest"),
    )


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class StorageSettings(Section):
    raw_frames: bool = setting(False, "Also archive every raw frame (bytea) in raw_frames.")
    schema: str = setting(
        "nev",
        "Database schema of the tables (one database can hold several).",
        pattern=SQL_IDENTIFIER,
    )
    dedupe: str = setting(
        "offsets",
        "offsets: plain COPY, replays stopped by the offsets stored with the rows; staging: "
        "every row through staging + ON CONFLICT DO NOTHING (~40 % slower).",
        choices=("offsets", "staging"),
    )
    fleet_vehicles: int = setting(
        1_000_000,
        "Vehicles this database serves; sets the TimescaleDB chunk interval (docs/storage.md).",
        minimum=1,
        maximum=100_000_000,
    )
    frame_interval_s: float = setting(
        10.0, "Seconds between two real-time frames of one vehicle.", minimum=1, maximum=3600
    )
    db_memory_gb: float = setting(
        64.0,
        "Database server memory; a quarter holds the indexes of the chunks written.",
        minimum=1,
        maximum=65536,
    )
    chunk_interval_min: int = setting(
        0,
        "Chunk interval of the per-frame hypertables; 0: from the fleet arithmetic.",
        minimum=0,
        maximum=43_200,
    )
    compress_after_h: float = setting(
        48.0, "TimescaleDB: compress chunks older than this.", minimum=1, maximum=87_600
    )
    retention_days: int = setting(
        1095,
        "Keep telemetry, alarms and sessions this many days; 0: forever.",
        minimum=0,
        maximum=MAX_RETENTION_DAYS,
    )
    raw_frames_retention_days: int = setting(
        7, "Keep raw_frames this many days; 0: forever.", minimum=0, maximum=MAX_RETENTION_DAYS
    )
    stats_1m_retention_days: int = setting(
        400,
        "Keep the per-minute aggregates this many days; 0: forever.",
        minimum=0,
        maximum=MAX_RETENTION_DAYS,
    )
    stats_1h_retention_days: int = setting(
        0,
        "Keep the per-hour aggregates this many days; 0: forever.",
        minimum=0,
        maximum=MAX_RETENTION_DAYS,
    )
    partition_interval_h: int = setting(
        24, "Plain PostgreSQL: hours per partition.", minimum=1, maximum=744
    )
    partition_premake_days: int = setting(
        3, "Plain PostgreSQL: partitions are created this many days ahead.", minimum=1, maximum=366
    )
    partition_backfill_days: int = setting(
        8, "Plain PostgreSQL: and this many days back, for reissued frames.", minimum=1, maximum=366
    )


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class PipelineSettings(Section):
    workers: int = setting(
        1,
        "Worker processes, each a consumer in the group (more than the partitions idle).",
        minimum=1,
        maximum=MAX_WORKERS,
    )
    batch_max_frames: int = setting(
        5000, "Write a batch when it holds this many frames.", minimum=1, maximum=1_000_000
    )
    batch_linger_ms: int = setting(
        200, "... or when its oldest frame waited this long.", minimum=0, maximum=60_000
    )
    max_in_flight_frames: int = setting(
        50000,
        "Frames a worker holds before it pauses its partitions.",
        minimum=1,
        maximum=10_000_000,
    )
    shutdown_timeout_s: float = setting(
        30.0, "Deadline to flush and commit on SIGTERM.", minimum=0, maximum=MAX_TIMEOUT_S
    )
    pause_after_s: float = setting(
        1.0,
        "Pause the partitions when in-flight frames stay at the bound this long.",
        minimum=0,
        maximum=MAX_TIMEOUT_S,
    )
    revoke_timeout_s: float = setting(
        20.0,
        "On rebalance, time to commit in-flight batches before abandoning them; rides out a "
        "~20 s database stall, and stays below kafka.rebalance_timeout_ms - 10 s.",
        minimum=0,
        maximum=MAX_TIMEOUT_S,
    )
    retry_backoff_max_s: float = setting(
        5.0,
        "Longest wait between retries of a batch after a transient error.",
        minimum=0.01,
        maximum=300,
    )
    lag_interval_s: float = setting(
        2.0, "How often consumer lag and pool gauges are refreshed.", minimum=0.1, maximum=300
    )
    write_lanes: int = setting(
        2,
        "Batches a worker writes at once, each on its own connection; a partition always "
        "uses the same one (its order is kept).",
        minimum=1,
        maximum=16,
    )
    stall_after_s: float = setting(
        60.0,
        "/readyz fails when a worker with backlog committed nothing for so long.",
        minimum=1,
        maximum=86_400,
    )
    frame_max_future_s: float = setting(
        600.0,
        "Frame-time window: a frame dated more than this ahead of its received_at goes to the "
        "dead-letter topic (time_out_of_window), never to the database. The window's past "
        "bound is storage.retention_days.",
        minimum=0,
        maximum=366 * 86_400,  # a year ahead: beyond that a clock is wrong, not early
    )


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class MetricsSettings(Section):
    host: str = setting("127.0.0.1", "Address of /metrics, /healthz and /readyz.")
    port: int = setting(9464, "Port of the metrics server.", minimum=PORT_MIN, maximum=PORT_MAX)
    multiproc_dir: str = setting(
        "", "Directory of the workers' metric files (emptied at start); empty: a temporary one."
    )


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class AlertsSettings(Section):
    enabled: bool = setting(True, "Run the rule engine in each worker.")
    rules_file: str = setting("", "TOML rule file; empty uses the built-in default rule set.")


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class LogSettings(Section):
    level: str = setting("INFO", "Log level.", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    format: str = setting(
        "json",
        "json: one object per line (for collectors); text: for people.",
        choices=("json", "text"),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """The whole configuration. Build it with ``ingest.config.load.load_settings``."""

    kafka: KafkaSettings = KafkaSettings()
    postgres: PostgresSettings = PostgresSettings()
    storage: StorageSettings = StorageSettings()
    pipeline: PipelineSettings = PipelineSettings()
    metrics: MetricsSettings = MetricsSettings()
    alerts: AlertsSettings = AlertsSettings()
    log: LogSettings = LogSettings()


# Section name -> class, in the order the docs list them.
SECTIONS: Final[dict[str, type[Section]]] = {
    "kafka": KafkaSettings,
    "postgres": PostgresSettings,
    "storage": StorageSettings,
    "pipeline": PipelineSettings,
    "metrics": MetricsSettings,
    "alerts": AlertsSettings,
    "log": LogSettings,
}

# Sections of the dev tools (devtools.settings), which may share a TOML file with the service:
# the service skips their tables, ignores their variables, and refuses them in --set.
DEV_TOOL_SECTIONS: Final = frozenset({"devstack"})
