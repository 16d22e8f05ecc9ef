"""The settings object: every configuration key of nev-ingest, its default and its meaning.

Read in this order, later wins: defaults (here), a TOML file (``--config`` or ``NEV_CONFIG``),
environment variables ``NEV_<SECTION>_<KEY>``, command-line flags. ``ingest.config.load`` does
the reading and validation; ``docs/configuration.md`` is generated from this module
(``nev-ingest config docs``), so a key's ``help`` is its documentation.

Only CLI and wiring code reads ``Settings``; library code in ``storage/`` and ``alerts/`` takes
explicit typed parameters.

The ``kafka`` section lives in ``ingest.config.kafka_settings`` (the largest one), the limits
shared by several sections in ``ingest.config.bounds``.

To add a key: one ``name: type = setting(default, "help", ...)`` line in its section, then
``nev-ingest config docs > docs/configuration.md``. Supported types: str, int, float, bool
and tuple[str, ...] (comma-separated in the environment).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from contract.kinds import ENTITY_KINDS
from ingest.config.bounds import (
    MAX_RETENTION_DAYS,
    MAX_TIMEOUT_S,
    MAX_WORKERS,
    PORT_MAX,
    PORT_MIN,
    SQL_IDENTIFIER,
)
from ingest.config.checks import SSLMODES
from ingest.config.fields import Section, setting
from ingest.config.gateway_settings import GatewaySettings
from ingest.config.kafka_settings import KafkaSettings
from ingest.config.roles_settings import RolesSettings
from ingest.config.security_settings import SecuritySettings
from ingest.config.tcec_settings import TcecSettings

__all__ = [
    "ENTITY_KINDS",
    "SECTIONS",
    "AlertsSettings",
    "KafkaSettings",
    "LogSettings",
    "MetricsSettings",
    "PipelineSettings",
    "PostgresSettings",
    "RolesSettings",
    "Settings",
    "StorageSettings",
]


# The sections are declarative tables (one `setting(default, doc, bounds)` a field, the docs
# generated from them): the same shape repeats by design, each field reads on its own.
@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class PostgresSettings(Section):
    dsn: str = setting(
        "postgresql://nev@127.0.0.1:5432/nev",
        "libpq URL of the database (a # in it written as %23, a ? or @ in a user name or "
        "password as %3F or %40, an = in a query value as %3D; hosts, port, user, password "
        "and database name each given once, before the ? or in the query: the drivers read a "
        "second one apart). Prefer password/password_file to a password in the URL.",
        dsn=True,
    )
    password: str = setting("", "Password; overrides one given in dsn.", secret=True)
    sslmode: str = setting(
        "prefer",
        "TLS to the server, as libpq's sslmode.",
        choices=SSLMODES,
    )
    sslrootcert: str = setting("", "PEM file of the CA for verify-ca / verify-full.", path=True)
    sslcert: str = setting("", "PEM client certificate.", path=True)
    sslkey: str = setting("", "PEM private key of sslcert.", path=True)
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
    shards: tuple[str, ...] = setting(
        (),
        "libpq URLs of the shard databases; Kafka partition p of every raw topic is written "
        "to shard p % N (docs/storage.md). Empty: one database, postgres.dsn. Passwords and "
        "TLS come from postgres.* as for postgres.dsn. In NEV_STORAGE_SHARDS comma-separated, "
        "split only before postgresql:// (or postgres://); a comma in a URL's user name, "
        "password, host list or query stays in that URL (postgresql://u:p,ss@h1:5432,h2:5432/db, "
        "postgresql://u@/db?host=h1,h2&port=5432,5433, ?options=-csearch_path%3Dnev,public), "
        "but one in its database name, one in its host list followed by user@host, one in its "
        "query followed by text with an @, or a / not at its start (host/dbname), before the "
        "next comma (a second URL without its scheme? write postgresql:// before it; a comma "
        "in a value: %2C, an @: %40) and a "
        "keyword DSN (host=...) after one are refused (docs/storage.md, Shards). An item of "
        "a TOML array is judged the same way and must be one URL.",
        dsn=True,
    )
    query_dsn: str = setting(
        "",
        "libpq URL of the query database: postgres_fdw views that union every shard, made by "
        "nev-ingest migrate. Empty: none (fleet-wide queries read the single database).",
        dsn=True,
    )
    replicas: tuple[str, ...] = setting(
        (),
        "libpq URLs of read replicas, one per shard in storage.shards' order (one for "
        "postgres.dsn without shards): nev-ingest query reads an entity from its shard's "
        "replica, and nev-ingest migrate points the query database's foreign servers at them. "
        "Empty: the primaries. The service never writes them. Comma-separated in "
        "NEV_STORAGE_REPLICAS, read as storage.shards is (a comma in a URL's credentials, host "
        "list or query stays in it).",
        dsn=True,
    )
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
    latest_interval_ms: int = setting(
        0,
        "0: latest_state is merged with every batch; N: once per N ms per partition (at most N "
        "plus one batch behind the stored rows), which pays where devices report more often "
        "than N (docs/storage.md, 'Bounded-lag latest_state').",
        minimum=0,
        maximum=600_000,
    )
    write_timeout_s: float = setting(
        120.0,
        "Longest a batch's write transaction may take before its connection is dropped and "
        "the write counts as a failure of that shard (retried, its partitions paused); also "
        "the TCP user timeout of every database connection, so a network black hole is seen "
        "in this time, not after ~15 min of retransmissions (docs/operations.md, 'Shards'). "
        "Keep it well above postgres.statement_timeout_ms: a batch is several statements, and a "
        "limit a healthy slow batch reaches cuts it at every attempt (its shard never recovers); "
        "run and config check refuse one at or under the statement timeout.",
        minimum=1,
        maximum=3600,
    )
    fleet_vehicles: int = setting(
        1_000_000,
        "Vehicles this database serves; sets the TimescaleDB chunk interval (docs/storage.md).",
        minimum=1,
        maximum=100_000_000,
    )
    fleet_connectors: int = setting(
        1_000_000,
        "Charger connectors this database serves; with fleet_vehicles sets the chunk interval.",
        minimum=0,
        maximum=100_000_000,
    )
    fleet_packs: int = setting(
        1_000_000,
        "Standalone battery packs (nev.battery.raw) this database serves; likewise.",
        minimum=0,
        maximum=100_000_000,
    )
    frame_interval_s: float = setting(
        10.0,
        "Seconds between two real-time frames of one vehicle, connector or pack.",
        minimum=1,
        maximum=3600,
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
        "Frames a worker holds before it pauses its partitions; with shards each shard's "
        "write lanes hold at most its share (by the worker's partitions on it, at least "
        "batch_max_frames but at most 1/N of the bound), past which only its partitions pause.",
        minimum=1,
        maximum=10_000_000,
    )
    # Frames alone bound nothing: a record may be 512 KiB (kafka.max_record_bytes), 50,000 of
    # them 25 GiB. 64 MiB is ~140,000 typical records (~480 B with key and headers), so the
    # frame bound governs normal traffic and this one the heavy and the hostile.
    max_in_flight_bytes: int = setting(
        64 * 2**20,
        "Bytes of records (values, keys, headers; frames and dead letters) a worker holds "
        "before it pauses its partitions; one fetch may go over it (at most batch_max_frames "
        "records). Decoded rows take 3-26x more (docs/operations.md, Sizing and tuning).",
        minimum=2**20,
        maximum=2**36,
    )
    shutdown_timeout_s: float = setting(
        30.0, "Deadline to flush and commit on SIGTERM.", minimum=0, maximum=MAX_TIMEOUT_S
    )
    pause_after_s: float = setting(
        1.0,
        "Pause the partitions when in-flight frames or bytes stay at their bound this long "
        "(one database; with shards, a shard over its share pauses its own at once).",
        minimum=0,
        maximum=MAX_TIMEOUT_S,
    )
    revoke_timeout_s: float = setting(
        20.0,
        "On rebalance, time to commit in-flight batches before abandoning them; rides out a "
        "~20 s database stall, and stays below kafka.rebalance_timeout_ms - "
        "kafka.heartbeat_interval_ms - 10 s.",
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
        2.0,
        "How often consumer lag and pool gauges are refreshed; at most half of stall_after_s.",
        minimum=0.1,
        maximum=300,
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
        "bound is storage.retention_days, and never before 2000-01-01 UTC. The T/CEC receiver "
        "refuses a push outside it (4004 bad_time).",
        minimum=0,
        maximum=366 * 86_400,  # a year ahead: beyond that a clock is wrong, not early
    )


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class MetricsSettings(Section):
    host: str = setting("127.0.0.1", "Address of /metrics, /healthz and /readyz.")
    port: int = setting(9464, "Port of the metrics server.", minimum=PORT_MIN, maximum=PORT_MAX)
    multiproc_dir: str = setting(
        "",
        "Directory of the workers' metric files (their *.db files and the archive's "
        "leftovers removed at start, nothing else); empty: a temporary one.",
        path=True,
    )


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class AlertsSettings(Section):
    enabled: bool = setting(True, "Run the rule engine in each worker.")
    rules_file: str = setting(
        "", "TOML rule file; empty uses the built-in default rule set.", path=True
    )
    models_file: str = setting(
        "",
        "JSON object of VIN -> vehicle model (registration data) for rules scoped by model; "
        "read at start and on SIGHUP. Empty: a rule scoped by model alone is refused at start "
        "(one scoped by vin_prefix too applies by its prefixes, with a warning).",
        path=True,
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

    kafka: KafkaSettings = KafkaSettings()  # noqa: RUF009 (frozen, so immutable as the others)
    postgres: PostgresSettings = PostgresSettings()
    storage: StorageSettings = StorageSettings()
    pipeline: PipelineSettings = PipelineSettings()
    metrics: MetricsSettings = MetricsSettings()
    alerts: AlertsSettings = AlertsSettings()
    log: LogSettings = LogSettings()
    gateway: GatewaySettings = GatewaySettings()  # noqa: RUF009 - issue 14, ingest/config/gateway_settings.py
    tcec: TcecSettings = TcecSettings()  # noqa: RUF009 (frozen, as kafka)
    security: SecuritySettings = SecuritySettings()  # noqa: RUF009 (frozen)
    roles: RolesSettings = RolesSettings()  # noqa: RUF009 (frozen, as kafka)


# Section name -> class, in the order the docs list them.
SECTIONS: Final[dict[str, type[Section]]] = {
    "kafka": KafkaSettings,
    "postgres": PostgresSettings,
    "storage": StorageSettings,
    "pipeline": PipelineSettings,
    "metrics": MetricsSettings,
    "alerts": AlertsSettings,
    "log": LogSettings,
    "gateway": GatewaySettings,
    "tcec": TcecSettings,
    "security": SecuritySettings,
    "roles": RolesSettings,
}

# Sections of the dev tools (devtools.settings), which may share a TOML file with the service:
# the service skips their tables, ignores their variables, and refuses them in --set.
DEV_TOOL_SECTIONS: Final = frozenset({"devstack"})
