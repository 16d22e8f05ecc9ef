"""What goes into a write and what comes out of it: results, rejects, hooks, and the rows.

Kept apart from the writer's transaction logic so the pipeline and the rule engine can import
the types without the machinery.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from contract.rows import FrameRows
from storage.offsets import TopicPartition
from storage.tables import ALARMS, MOTORS, PACKS, RAW, SESSIONS, VEHICLES, RawRow, Table

__all__ = ["BatchOutcome", "RejectedFrame", "WriteResult", "WriterHooks", "rows_by_table"]

REISSUE = 0x03


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
    rows: dict[str, int]  # rows inserted per table
    latest: int  # latest_state entities upserted
    duplicates_skipped: int  # rows the conflict-skipping path found already stored
    conflict_fallbacks: int  # times the hot path met an existing key and went the slow way
    attempts: int
    seconds: float
    bisect_loads: int = 0  # loads that failed with a data error and were split (0: none)
    partitions_created: int = 0  # plain PostgreSQL: partitions created on demand for the batch


class WriterHooks:
    """Metrics hooks: subclass and override what you count (storage imports no metrics lib)."""

    def on_written(self, result: WriteResult) -> None:
        """A batch committed."""

    def on_retry(self, attempt: int, delay_s: float, error: BaseException) -> None:
        """A transient error; the batch goes again after ``delay_s``."""

    def on_failed(self, error: BaseException) -> None:
        """``write_batch`` is about to raise (retries exhausted, schema or other error)."""


@dataclass(slots=True)
class _Rows:
    tables: dict[str, list[Any]] = field(default_factory=dict)


def rows_by_table(
    frames: Sequence[FrameRows],
    indices: Sequence[int],
    *,
    raw: Sequence[bytes] | None = None,
    sources: Sequence[TopicPartition] | None = None,
    kafka_offsets: Sequence[int] | None = None,
    entity_kind: str = "vehicle",
) -> list[tuple[Table, list[Any]]]:
    """The rows of ``frames[i] for i in indices``, per table, in the order they are written.

    ``raw`` (with ``sources`` and ``kafka_offsets``) adds the ``raw_frames`` archive rows of the
    frames that have a time.
    """
    vehicles: list[Any] = []
    motors: list[Any] = []
    packs: list[Any] = []
    alarms: list[Any] = []
    sessions: list[Any] = []
    archive: list[Any] = []
    for i in indices:
        f = frames[i]
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
        if raw is not None and sources is not None and kafka_offsets is not None:
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
    out = [
        (VEHICLES, vehicles),
        (MOTORS, motors),
        (PACKS, packs),
        (ALARMS, alarms),
        (SESSIONS, sessions),
        (RAW, archive),
    ]
    return [(t, rows) for t, rows in out if rows]


def is_reissue(frame: FrameRows) -> bool:
    """Reissued (0x03) data may already be stored: it takes the conflict-skipping path."""
    return frame.command == REISSUE
