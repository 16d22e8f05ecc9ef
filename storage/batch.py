"""What goes into a write and what comes out of it: results, rejects, hooks, and the rows.

Kept apart from the writer's transaction logic so the pipeline and the rule engine can import
the types without the machinery.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any, Final, TypeAlias

from contract.battery import PackFrameRows
from contract.charger import (
    ChargerFaultRow,
    ChargerRows,
    ChargerTelemetryRow,
    ChargingSessionRow,
    ConnectorStatusRow,
)
from contract.rows import FrameRows
from storage.offsets import TopicPartition
from storage.tables import (
    ALARMS,
    CHARGER_FAULTS,
    CHARGER_TELEMETRY,
    CHARGING_SESSIONS,
    CONNECTOR_STATUS,
    CONNECTORS,
    MOTORS,
    PACK_ALARMS,
    PACK_SESSIONS,
    PACK_TELEMETRY,
    PACKS,
    RAW,
    SESSIONS,
    VEHICLES,
    RawRow,
    Table,
    TableRows,
)

__all__ = [
    "BatchOutcome",
    "Decoded",
    "RejectedFrame",
    "WriteResult",
    "WriterHooks",
    "is_reissue",
    "row_times_ms",
    "rows_by_table",
]

# What the writer stores: a decoded frame of any kind (contract.kinds.Decoded, spelled out
# here so that storage needs nothing but the row types).
Decoded: TypeAlias = FrameRows | ChargerRows | PackFrameRows

REISSUE: Final = 0x03
CHARGER_EDITION: Final = 2016  # the charger profile's envelope is GB/T 32960-2016's ("##")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class RejectedFrame:
    """A frame the database refused permanently (for the dead-letter topic)."""

    index: int  # position in the ``frames`` passed to write_batch
    topic: str
    partition: int
    offset: int | None  # Kafka offset, when the caller passed kafka_offsets
    sqlstate: str | None  # e.g. 22003 numeric out of range, 23514 no partition for the time
    detail: str  # the database's (or the encoder's) message


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """Handed to the ``before_commit`` hook, inside the batch's transaction."""

    stored: list[int]  # indices of the frames whose rows are in this transaction
    rejected: list[RejectedFrame]
    fenced: dict[TopicPartition, int]  # partitions skipped: stored offset -> seek there


@dataclass(frozen=True, slots=True)
class WriteResult:
    """A committed batch.

    ``committed``: partitions whose next offset this transaction stored. ``fenced``: partitions
    whose stored offset was already past the batch's start - nothing of them was written (a
    replay, or another consumer owns them now); seek each to the offset given (when it equals
    the batch's ``next``, the batch itself is what is stored there, e.g. after a commit whose
    acknowledgement was lost).
    """

    committed: dict[TopicPartition, int]
    fenced: dict[TopicPartition, int]
    rejected: list[RejectedFrame]
    frames: int  # frames stored
    rows: dict[str, int]  # rows inserted per table (charger_faults: or merged into a stored row)
    latest: int  # latest_state entities upserted
    duplicates_skipped: int  # rows the conflict-skipping path found already stored
    conflict_fallbacks: int  # times the hot path met an existing key and went the slow way
    attempts: int
    seconds: float
    bisect_loads: int = 0  # loads that failed with a data error and were split (0: none)
    partitions_created: int = 0  # plain PostgreSQL: partitions created on demand for the batch
    # partitions whose latest_state is merged up to this batch (every committed one when
    # storage.latest_interval_ms is 0; storage/latest_pending.py)
    latest_merged: frozenset[TopicPartition] = frozenset()


class WriterHooks:
    """Metrics hooks: subclass and override what you count (storage imports no metrics lib)."""

    def on_written(self, result: WriteResult) -> None:
        """A batch committed."""

    def on_retry(self, attempt: int, delay_s: float, error: BaseException) -> None:
        """A transient error; the batch goes again after ``delay_s``."""

    def on_failed(self, error: BaseException) -> None:
        """``write_batch`` is about to raise (retries exhausted, schema or other error)."""


def rows_by_table(
    frames: Sequence[Decoded],
    indices: Sequence[int],
    *,
    raw: Sequence[bytes] | None = None,
    sources: Sequence[TopicPartition] | None = None,
    kafka_offsets: Sequence[int] | None = None,
    entity_kind: str = "vehicle",
) -> list[tuple[Table, list[Any]]]:
    """The rows of ``frames[i] for i in indices``, per table, in the order they are written.

    ``frames`` may mix the three decoded kinds (a batch holds partitions of several topics):
    each goes to its own tables. ``raw`` (with ``sources`` and ``kafka_offsets``) adds the
    ``raw_frames`` archive rows of the frames that have a time and rows; ``entity_kind`` is
    the kind archived for vehicle frames.
    """
    vehicles: list[Any] = []
    motors: list[Any] = []
    packs: list[Any] = []
    alarms: list[Any] = []
    sessions: list[Any] = []
    archive: list[Any] = []
    native: list[FrameRows] = []  # frames with native COPY tuples (FrameRows.copy)
    plain: list[FrameRows] = []  # frames whose rows were built in Python (no tuples)
    others: _KindRows | None = None
    archiving = raw is not None and sources is not None and kafka_offsets is not None
    for i in indices:
        f = frames[i]
        # The vehicle hot path first, by exact type: one identity test per frame.
        if type(f) is not FrameRows:
            if others is None:
                others = _KindRows()
            held = others.add(f)
            if archiving and held is not None:
                assert raw is not None and sources is not None and kafka_offsets is not None
                topic, partition = sources[i]
                archive.append(RawRow(*held, topic, partition, kafka_offsets[i], raw[i]))
            continue
        if f.copy is not None:
            native.append(f)
        elif f.vehicle is not None or f.packs or f.motors or f.alarm is not None:
            plain.append(f)
        if f.vehicle is not None:
            vehicles.append(f.vehicle)
        if f.motors:
            motors.extend(f.motors)
        if f.packs:
            packs.extend(f.packs)
        if f.alarm is not None:
            alarms.append(f.alarm)
        if f.session is not None:
            sessions.append(f.session)
        if archiving:
            assert raw is not None and sources is not None and kafka_offsets is not None
            ts: datetime | None = (
                f.vehicle.ts
                if f.vehicle is not None
                else f.session.ts
                if f.session is not None
                else None
            )
            if ts is not None:
                topic, partition = sources[i]
                archive.append(
                    RawRow(
                        f.vin, ts, f.command, f.edition, entity_kind, topic, partition,
                        kafka_offsets[i], raw[i],
                    )
                )  # fmt: skip
    out: list[tuple[Table, list[Any]]] = [
        (VEHICLES, vehicles),
        (MOTORS, motors),
        (PACKS, packs),
        (ALARMS, alarms),
    ]
    if native:
        out = [(t, _with_copies(t, rows, native, plain)) for t, rows in out]
    out.append((SESSIONS, sessions))
    if others is not None:
        out += others.tables()
    out.append((RAW, archive))
    return [(t, rows) for t, rows in out if rows]


def _with_copies(
    table: Table,
    rows: list[Any],
    native: list[FrameRows],
    plain: list[FrameRows],
) -> TableRows:
    # Python-built rows are rare (tests, replays of stored rows): collected only when present.
    own: list[Any] = []
    for f in plain:
        if table is VEHICLES:
            if f.vehicle is not None:
                own.append(f.vehicle)
        elif table is MOTORS:
            own += f.motors
        elif table is PACKS:
            own += f.packs
        elif f.alarm is not None:
            own.append(f.alarm)
    return TableRows(rows, native, own)


class _KindRows:
    """The charger and pack rows of a batch (only built when the batch holds such frames)."""

    __slots__ = ("alarms", "connectors", "faults", "pack_sessions", "pack_telemetry", "sessions",
                 "statuses", "telemetry")  # fmt: skip

    def __init__(self) -> None:
        self.connectors: list[Any] = []
        self.statuses: list[Any] = []
        self.telemetry: list[Any] = []
        self.sessions: list[Any] = []
        self.faults: list[Any] = []
        self.pack_telemetry: list[Any] = []
        self.alarms: list[Any] = []
        self.pack_sessions: list[Any] = []

    def add(self, f: Decoded) -> tuple[str, datetime, int, int, str] | None:
        """Take the rows of ``f``; returns the head of its archive row (entity id, ts, command,
        edition, kind), or None when it is not archived (no time or no rows)."""
        if isinstance(f, ChargerRows):
            self.connectors += f.connectors
            self.statuses += f.statuses
            self.telemetry += f.telemetry
            self.sessions += f.sessions
            self.faults += f.faults
            # Only frames of the binary profile are archived: a T/CEC push (no header code) is
            # JSON, not a frame, and has no command (a NOT NULL column of raw_frames). Every
            # frame is its own archive row (key: vin, ts, kafka_offset; migration 0080), so the
            # several frames a pile sends in one second are all kept.
            first = f.statuses or f.telemetry or f.sessions or f.faults or f.connectors
            if f.charger_id and first:
                # A login's rows are at the frame time + login_seq µs (charger/rows.py): the
                # frame is archived at its own time, a whole second.
                at = first[0].ts.replace(microsecond=0) if first is f.connectors else first[0].ts
                return f.charger_id, at, f.command, CHARGER_EDITION, "charger"
            return None
        if isinstance(f, PackFrameRows):
            ts: datetime | None = None
            if f.telemetry is not None:
                self.pack_telemetry.append(f.telemetry)
                ts = f.telemetry.ts
            if f.alarm is not None:
                self.alarms.append(f.alarm)
            if f.session is not None:
                self.pack_sessions.append(f.session)
                ts = f.session.ts
            if ts is None:
                return None
            return f.pack_code, ts, f.command, f.edition, "battery"
        raise TypeError(f"cannot store a {type(f).__name__}: not one of the decoded kinds")

    def tables(self) -> list[tuple[Table, list[Any]]]:
        return [
            (CONNECTORS, self.connectors),
            (CONNECTOR_STATUS, _last_per_key(self.statuses, _CONNECTOR_KEY)),
            (CHARGER_TELEMETRY, _last_per_key(self.telemetry, _TELEMETRY_KEY)),
            (CHARGING_SESSIONS, _last_per_key(self.sessions, _SESSION_KEY)),
            (CHARGER_FAULTS, _faults_joined(self.faults)),
            (PACK_TELEMETRY, self.pack_telemetry),
            (PACK_ALARMS, self.alarms),
            (PACK_SESSIONS, self.pack_sessions),
        ]


# The primary keys of the charger tables (migrations 0006, 0076), as getters of their rows.
# Several frames of one pile in one second (a real-time frame per connector, a status change
# beside the periodic report) give rows of one key in one batch: merged here as
# ingest/decoders/charger/rows.py ``merge_repeated`` merges one frame's repeated blocks, or the
# writer would keep the first (the rest "duplicates", fault codes lost) while latest_state and
# the alert rules took the last. Across batches the first stored stays, but for fault rows, whose
# new codes join the stored row (storage/tables.py CHARGER_FAULTS; docs/protocols/charger.md).
def _key(fields: tuple[str, ...], *names: str) -> Callable[[Any], Any]:
    return itemgetter(*(fields.index(n) for n in names))


_CONNECTOR_KEY: Final = _key(
    ConnectorStatusRow._fields, "operator_id", "connector_id", "ts", "source"
)
_TELEMETRY_KEY: Final = _key(
    ChargerTelemetryRow._fields, "operator_id", "connector_id", "ts", "source"
)
_SESSION_KEY: Final = _key(ChargingSessionRow._fields, "start_charge_seq", "ts", "event", "source")
_FAULT_KEY: Final = _key(
    ChargerFaultRow._fields, "operator_id", "connector_id", "ts", "charger_id", "source"
)


def _last_per_key(rows: list[Any], key: Callable[[Any], Any]) -> list[Any]:
    """``rows`` with one row per key: the last (Kafka order), at the first one's place. Costs
    one key per row (C loops) when no key repeats, the usual batch."""
    if len(rows) < 2:
        return rows
    keys = list(map(key, rows))
    if len(set(keys)) == len(rows):
        return rows
    return list(dict(zip(keys, rows, strict=True)).values())


def _faults_joined(rows: list[ChargerFaultRow]) -> list[ChargerFaultRow]:
    """One fault row per key: its codes in Kafka order, each once (a set per connector and
    second, none lost)."""
    if not rows:
        return rows
    keys = list(map(_FAULT_KEY, rows))
    if len(set(keys)) == len(rows) and not any(map(_repeats, rows)):
        return rows
    # A row of a key is a set of codes active at that second (docs/protocols/charger.md): a
    # code already carried is left out, so a resent frame (a pile resending for want of an
    # ack, the gateway taking an operator's retry) adds nothing, as it adds nothing when it
    # lands in a later batch, and a row's own code sent twice (two blocks of one frame: the
    # native walk's rows are merged by fast.py, other rows may not be) is kept once, as across
    # frames. Each key's codes are gathered in one list (extend) and its row rebuilt once:
    # adding the lists row by row copied the codes so far each time, quadratic in a batch of
    # one pile's frames of one time (1,000 frames x 1,276 codes: 1.3 s).
    first: dict[Any, ChargerFaultRow] = {}
    codes: dict[Any, list[int]] = {}
    for k, f in zip(keys, rows, strict=True):
        have = codes.get(k)
        if have is None:
            first[k] = f
            codes[k] = list(f.fault_codes)
        else:
            have.extend(f.fault_codes)
    joined = [(f, list(dict.fromkeys(codes[k]))) for k, f in first.items()]
    return [f if once == f.fault_codes else f._replace(fault_codes=once) for f, once in joined]


def _repeats(row: ChargerFaultRow) -> bool:
    codes = row.fault_codes
    return len(codes) > 1 and len(set(codes)) < len(codes)


def row_times_ms(frames: Sequence[Decoded]) -> Iterator[int | None]:
    """The frame times (epoch ms) of the rows of ``frames`` in partitioned tables: what the
    partitions on demand must cover. A T/CEC push carries its times in its rows only."""
    for f in frames:
        if type(f) is FrameRows:
            if f.vehicle is not None or f.session is not None:
                yield f.ts_ms
        elif isinstance(f, ChargerRows):
            for rows in (f.statuses, f.telemetry, f.sessions, f.faults):
                for r in rows:
                    yield _ms(r.ts)
            if f.charger_id and f.connectors:
                # A pile's login: its connectors' table is not partitioned, but its archive row
                # (raw_frames, _KindRows.add) is, at this time. Left out, a login dated outside
                # the partitions made ahead failed its batch's COPY and was dead-lettered.
                yield _ms(f.connectors[0].ts)
        elif isinstance(f, PackFrameRows):
            for row in (f.telemetry, f.alarm, f.session):
                if row is not None:
                    yield _ms(row.ts)


def _ms(ts: datetime) -> int:
    return (ts - _EPOCH) // _MS


def is_reissue(frame: Decoded) -> bool:
    """Reissued (0x03) data may already be stored: it takes the conflict-skipping path (the
    three kinds' profiles share GB/T 32960's command code)."""
    return frame.command == REISSUE
