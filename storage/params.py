"""Typed parameters of the storage layer (the CLI maps ``ingest.config`` settings onto these).

Library code never reads settings or the environment: every size, interval and switch arrives
here, explicitly, with a default that is documented in docs/storage.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Final

from contract.sql_names import is_plain_name
from storage.sizing import FleetProfile, chunk_intervals

__all__ = [
    "DEFAULT_SCHEMA",
    "TELEMETRY_TABLES",
    "TIMESERIES_TABLES",
    "Dedupe",
    "LoaderKind",
    "PlainParams",
    "RetryParams",
    "SchemaMode",
    "StorageParams",
    "TimescaleParams",
    "WriterParams",
    "check_identifier",
]

DEFAULT_SCHEMA: Final = "nev"

# The per-frame tables, in the order a batch writes them. Each has its own retention, chunk or
# partition interval; ``raw_frames`` only exists to be switched on.
TIMESERIES_TABLES: Final = (
    "vehicle_telemetry",
    "drive_motor_telemetry",
    "battery_pack_telemetry",
    "alarm_events",
    "vehicle_sessions",
    "raw_frames",
    # chargers (0006; charger_connectors is a plain table: few rows, kept whole)
    "connector_status_events",
    "charger_telemetry",
    "charging_session_events",
    "charger_faults",
    # standalone packs (0007)
    "pack_telemetry",
    "pack_alarm_events",
    "pack_sessions",
)
# The telemetry, event and session tables of every kind share one retention
# (``storage.retention_days``, 3 years by default): a pack's history follows it across
# vehicles, stations and second life, and a charger's sessions are joined with the vehicles'
# data, so neither may end before the vehicles' own. raw_frames and the aggregates have theirs.
TELEMETRY_TABLES: Final = tuple(t for t in TIMESERIES_TABLES if t != "raw_frames")


def check_identifier(name: str, what: str = "schema") -> str:
    """``name`` if it is a plain lower-case SQL identifier, else ``ValueError``.

    Schema and table names are spliced into SQL text (they cannot be bind parameters), so only
    names that need no quoting are accepted.
    """
    if not is_plain_name(name):
        raise ValueError(
            f"{what} name {name!r} is not a plain SQL identifier (lower-case letters, digits, "
            "underscore; not starting with a digit; at most 63 characters; not a reserved SQL "
            "word such as user or select; not starting with pg_)"
        )
    return name


class SchemaMode(StrEnum):
    """Which flavour of the schema to build: detected, or forced by configuration."""

    AUTO = "auto"
    TIMESCALE = "timescale"
    PLAIN = "plain"


class Dedupe(StrEnum):
    """How a batch avoids duplicate rows (docs/storage.md, "Exactly once").

    ``offsets``: plain COPY on the hot path; replays are stopped by the offsets stored with the
    rows, reissued frames and the rare batch holding an already-stored frame take the
    conflict-skipping path. ``staging``: every table through staging + ON CONFLICT DO NOTHING
    (the classic design, ~40 % slower; kept for comparison and for the cautious).
    """

    OFFSETS = "offsets"
    STAGING = "staging"


class LoaderKind(StrEnum):
    """How rows reach the tables: binary COPY, or INSERT ... SELECT FROM unnest(arrays)."""

    AUTO = "auto"
    COPY = "copy"
    UNNEST = "unnest"


def _days(n: float) -> timedelta:
    return timedelta(days=n)


@dataclass(frozen=True, slots=True, kw_only=True)
class TimescaleParams:
    """Hypertable chunking, compression, retention and continuous-aggregate refresh.

    Chunk intervals come from ``fleet`` (the arithmetic of ``storage.sizing``, written out in
    docs/storage.md); ``chunk_overrides`` sets a table's interval outright. A retention of
    ``None`` keeps the data forever.
    """

    fleet: FleetProfile = field(default_factory=FleetProfile)
    chunk_overrides: dict[str, timedelta] = field(default_factory=dict)
    compress_after: timedelta = timedelta(days=2)
    # Compression merges consecutive chunks up to this span (compress_chunk_time_interval):
    # short chunks keep the indexes being written small, but a 10-minute chunk holds only ~60
    # rows per VIN - too few for segment-by-VIN compression to pay (docs/storage.md). None: off.
    compress_rollup: timedelta | None = timedelta(days=1)
    retention: dict[str, timedelta | None] = field(
        default_factory=lambda: {
            **dict.fromkeys(TELEMETRY_TABLES, _days(3 * 365)),
            "raw_frames": _days(7),
            "vehicle_stats_1m": _days(400),
            "vehicle_stats_1h": None,
        }
    )
    # Continuous aggregates: refresh what is between start_offset and end_offset ago, every
    # schedule interval. end_offset leaves the still-filling bucket to real-time aggregation.
    cagg_schedule: timedelta = timedelta(minutes=1)
    cagg_start_offset: timedelta = timedelta(hours=6)
    cagg_end_offset: timedelta = timedelta(minutes=1)

    def chunk_intervals(self) -> dict[str, timedelta]:
        """The chunk interval of every hypertable: the overrides over the fleet arithmetic."""
        return {**chunk_intervals(self.fleet), **self.chunk_overrides}

    def rollup(self, table: str) -> timedelta | None:
        """The compression roll-up of ``table``: ``compress_rollup`` where it is a multiple of
        the table's (shorter) chunk interval, else None (TimescaleDB requires a multiple)."""
        chunk, rollup = self.chunk_intervals()[table], self.compress_rollup
        if rollup is None or rollup <= chunk or rollup % chunk:
            return None
        return rollup


@dataclass(frozen=True, slots=True, kw_only=True)
class PlainParams:
    """Native range partitioning and summary tables on PostgreSQL without TimescaleDB."""

    partition_interval: timedelta = timedelta(days=1)
    # Partitions exist from ``backfill`` ago to ``premake`` ahead; a frame outside that window
    # has no partition and is rejected (to the dead-letter topic), never silently dropped.
    premake: timedelta = timedelta(days=3)
    backfill: timedelta = timedelta(days=8)  # 2025 terminals reissue up to 7 days back
    retention: dict[str, timedelta | None] = field(
        default_factory=lambda: dict(TimescaleParams().retention)
    )
    # Each maintenance run recomputes the summary buckets of this trailing window.
    summary_lookback: timedelta = timedelta(hours=3)


@dataclass(frozen=True, slots=True, kw_only=True)
class StorageParams:
    """Everything ``migrate`` needs: where, which flavour, and the flavour's parameters."""

    schema: str = DEFAULT_SCHEMA
    mode: SchemaMode = SchemaMode.AUTO
    timescale: TimescaleParams = field(default_factory=TimescaleParams)
    plain: PlainParams = field(default_factory=PlainParams)

    def __post_init__(self) -> None:
        check_identifier(self.schema)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryParams:
    """Backoff for transient errors: ``initial`` doubling up to ``maximum``, ``attempts`` tries.

    After the last attempt the writer raises ``StorageUnavailable`` with nothing committed; the
    caller keeps the batch (and pauses its partitions) and calls again later.
    """

    attempts: int = 8
    initial: float = 0.25
    maximum: float = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class WriterParams:
    """The batch writer: which consumer group's offsets, which loader, archive or not."""

    consumer_group: str
    schema: str = DEFAULT_SCHEMA
    loader: LoaderKind = LoaderKind.AUTO
    dedupe: Dedupe = Dedupe.OFFSETS
    raw_frames: bool = False
    # The kind latest_state and raw_frames give vehicle frames (``FrameRows``); charger and
    # pack frames are 'charger' and 'battery' by their type.
    entity_kind: str = "vehicle"
    retry: RetryParams = field(default_factory=RetryParams)
    # Plain PostgreSQL: create the missing partitions (this interval, aligned as maintenance
    # aligns them) of a batch's frame times before its transaction; None: never (TimescaleDB
    # makes chunks itself). The pipeline's time window decides which times get this far.
    partition_interval: timedelta | None = None
    # Isolating rows the database refuses (bisecting under savepoints) is for the unexpected;
    # it stops after this many failed loads or seconds and dead-letters the frames it could not
    # clear (the rest commit), so one batch never holds a partition for minutes (docs/storage.md).
    bisect_max_loads: int = 32
    bisect_max_s: float = 2.0
    # latest_state merged once per this many ms per partition from the tuples of the frames
    # committed meanwhile (storage/latest_pending.py); 0: with every batch. ``latest_cap``:
    # merge early when a partition holds this many entities' tuples.
    latest_interval_ms: int = 0
    latest_cap: int = 200_000
    # A write transaction that takes longer (a lock wait, a network black hole: no error comes
    # for ~15 min of TCP retransmissions) has its connection dropped and fails as transient:
    # the caller sees its shard failing instead of a write that never returns.
    write_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        check_identifier(self.schema)
