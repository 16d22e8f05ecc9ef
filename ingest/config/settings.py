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

from ingest.config.fields import Section, setting

# Entity kind is a dimension everywhere (topics, decoders, tables, rules, metrics).
ENTITY_KINDS: Final = ("vehicle", "charger", "battery")

PORT_MIN: Final = 1
PORT_MAX: Final = 65535


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
        "SASL mechanism, used when security_protocol is SASL_*.",
        choices=("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"),
    )
    sasl_username: str = setting("", "SASL user name.")
    sasl_password: str = setting("", "SASL password.", secret=True)
    ssl_cafile: str = setting("", "PEM file of the CA that signed the brokers' certificates.")
    ssl_certfile: str = setting("", "PEM client certificate, for mutual TLS.")
    ssl_keyfile: str = setting("", "PEM private key of ssl_certfile.")
    ssl_key_password: str = setting("", "Password of ssl_keyfile, if encrypted.", secret=True)
    topic_vehicle: str = setting("nev.vehicle.raw", "Raw GB/T 32960 frames from vehicles.")
    topic_charger: str = setting("nev.charger.raw", "Raw frames from charging piles.")
    topic_battery: str = setting("nev.battery.raw", "Raw frames from battery packs.")
    topic_dlq: str = setting("nev.dlq", "Dead letters: undecodable or rejected frames + reason.")
    topic_alerts: str = setting("nev.alerts", "Alerts raised by the rule engine (JSON).")
    partitions: int = setting(
        12,
        "Partitions of each raw topic when nev-ingest creates it; caps the useful worker count.",
        minimum=1,
        maximum=10000,
    )
    dlq_partitions: int = setting(3, "Partitions of the dead-letter topic.", minimum=1)
    alerts_partitions: int = setting(3, "Partitions of the alerts topic.", minimum=1)
    replication_factor: int = setting(
        1, "Replication factor of topics nev-ingest creates (3 in production).", minimum=1
    )
    request_timeout_ms: int = setting(
        30000, "Timeout of one request to a broker.", minimum=1000, maximum=600000
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
    pool_min_size: int = setting(1, "Connections each worker keeps open.", minimum=0)
    pool_max_size: int = setting(4, "Most connections each worker opens.", minimum=1)
    statement_timeout_ms: int = setting(
        60000, "Server-side statement timeout; 0 disables it.", minimum=0
    )
    connect_timeout_s: float = setting(10.0, "Timeout of one connection attempt.", minimum=0.1)
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
    schema: str = setting("nev", "Database schema of the tables (one database can hold several).")
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
    )
    frame_interval_s: float = setting(
        10.0, "Seconds between two real-time frames of one vehicle.", minimum=1
    )
    db_memory_gb: float = setting(
        64.0,
        "Database server memory; a quarter holds the indexes of the chunks written.",
        minimum=1,
    )
    chunk_interval_min: int = setting(
        0, "Chunk interval of the per-frame hypertables; 0: from the fleet arithmetic.", minimum=0
    )
    compress_after_h: float = setting(
        48.0, "TimescaleDB: compress chunks older than this.", minimum=1
    )
    retention_days: int = setting(
        1095, "Keep telemetry, alarms and sessions this many days; 0: forever.", minimum=0
    )
    raw_frames_retention_days: int = setting(
        7, "Keep raw_frames this many days; 0: forever.", minimum=0
    )
    stats_1m_retention_days: int = setting(
        400, "Keep the per-minute aggregates this many days; 0: forever.", minimum=0
    )
    stats_1h_retention_days: int = setting(
        0, "Keep the per-hour aggregates this many days; 0: forever.", minimum=0
    )
    partition_interval_h: int = setting(24, "Plain PostgreSQL: hours per partition.", minimum=1)
    partition_premake_days: int = setting(
        3, "Plain PostgreSQL: partitions are created this many days ahead.", minimum=1
    )
    partition_backfill_days: int = setting(
        8, "Plain PostgreSQL: and this many days back, for reissued frames.", minimum=1
    )


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class PipelineSettings(Section):
    workers: int = setting(1, "Worker processes, each a consumer in the group.", minimum=1)
    batch_max_frames: int = setting(
        5000, "Write a batch when it holds this many frames.", minimum=1
    )
    batch_linger_ms: int = setting(200, "... or when its oldest frame waited this long.", minimum=0)
    max_in_flight_frames: int = setting(
        50000, "Frames a worker holds before it pauses its partitions.", minimum=1
    )
    shutdown_timeout_s: float = setting(30.0, "Deadline to flush and commit on SIGTERM.", minimum=0)
    pause_after_s: float = setting(
        1.0, "Pause the partitions when in-flight frames stay at the bound this long.", minimum=0
    )
    revoke_timeout_s: float = setting(
        10.0, "On rebalance, time to commit in-flight batches before abandoning them.", minimum=0
    )
    retry_backoff_max_s: float = setting(
        5.0, "Longest wait between retries of a batch after a transient error.", minimum=0.01
    )
    lag_interval_s: float = setting(
        2.0, "How often consumer lag and pool gauges are refreshed.", minimum=0.1
    )
    write_lanes: int = setting(
        2,
        "Batches a worker writes at once, each on its own connection; a partition always "
        "uses the same one (its order is kept).",
        minimum=1,
        maximum=16,
    )
    stall_after_s: float = setting(
        60.0, "/readyz fails when a worker with backlog committed nothing for so long.", minimum=1
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
class DevstackSettings(Section):
    state_dir: str = setting(".devstack", "Data, logs and state.json of the local dev stack.")
    cache_dir: str = setting(
        "", "Downloaded Kafka jars and npm packages; empty means $XDG_CACHE_HOME/nev-ingest."
    )
    kafka_version: str = setting("4.3.1", "Apache Kafka version fetched from Maven Central.")
    kafka_heap: str = setting("1g", "JVM heap of the dev broker (-Xms and -Xmx).")
    postgres_bin_dir: str = setting(
        "", "PostgreSQL server binaries; empty finds them (pg_config, /usr/lib/postgresql/*)."
    )
    start_timeout_s: float = setting(
        180.0, "How long up waits for a service to accept connections.", minimum=1
    )


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
    devstack: DevstackSettings = DevstackSettings()
    log: LogSettings = LogSettings()


# Section name -> class, in the order the docs list them.
SECTIONS: Final[dict[str, type[Section]]] = {
    "kafka": KafkaSettings,
    "postgres": PostgresSettings,
    "storage": StorageSettings,
    "pipeline": PipelineSettings,
    "metrics": MetricsSettings,
    "alerts": AlertsSettings,
    "devstack": DevstackSettings,
    "log": LogSettings,
}
