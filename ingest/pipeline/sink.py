"""What the pipeline needs from the database side: the ``Sink`` protocol and its errors.

A sink writes one batch in ONE transaction: the rows, the rule engine's alert changes and the
batch's Kafka offsets. Offsets are fenced: a partition whose stored offset is past the batch's
start (another consumer wrote it meanwhile) is not written, and comes back in
``SinkResult.fenced`` with the stored offset to seek to. ``ingest.pipeline.storage_sink``
implements it with the storage writer and the rule engine.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ingest.pipeline.batch import Batch

__all__ = ["AlertMessage", "BeforeCommit", "Sink", "SinkResult", "TransientSinkError"]


class TransientSinkError(Exception):
    """The write failed for a reason that goes away (connection lost, DB restarting ...):
    retry the same batch later; nothing was committed (or a COMMIT got no answer: the
    retry finds out, storage/unsure.py)."""


# Called inside the transaction, right before its commit, with the frames the database refused
# as (frame index, detail), possibly none: every dead letter of the batch (those of the decode
# step too) is acknowledged by Kafka before the offsets that skip them commit.
BeforeCommit = Callable[[list[tuple[int, str]]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class AlertMessage:
    """One alert lifecycle change for metrics and the alerts topic."""

    kind: str  # the entity kind (vehicle | charger | battery): a label of the alerts counter
    rule: str
    severity: str
    change: str  # raised | updated | cleared
    key: bytes  # Kafka key: the entity id
    message: bytes  # the nev.alerts value (JSON)
    outbox_id: int | None = None  # its alerts_outbox row, deleted once Kafka acknowledged it
    shard: int = 0  # the database that row is in (outbox ids are per shard)


@dataclass(slots=True)
class SinkResult:
    """What a committed batch produced beyond its rows."""

    rejected: list[tuple[int, str]] = field(default_factory=list)  # (frame index, detail)
    alerts: list[AlertMessage] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  # rows written by table
    fenced: dict[Any, int] = field(default_factory=dict)  # tp -> stored offset (not written)
    duplicates: int = 0  # rows skipped because the database already held them


class Sink(Protocol):
    """The database side of a worker (see the module docstring)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def stored_offsets(self, partitions: Sequence[Any]) -> dict[Any, int]:
        """Next offset to read for each partition that has one stored (for the seek), each
        read from its partition's shard."""
        ...

    async def write(self, batch: Batch, before_commit: BeforeCommit) -> SinkResult:
        """Write ``batch`` (its partitions are all of shard ``batch.shard``) and its offsets
        (``batch.next``, fenced by ``batch.start``) in one transaction of that shard, calling
        ``before_commit`` inside it, once per attempt, right before the commit. Raises
        ``TransientSinkError`` (or what ``before_commit`` raised); frames the database rejects
        permanently are left out, handed to ``before_commit`` and returned in
        ``SinkResult.rejected``."""
        ...

    async def ping(self) -> None:
        """Raise ``TransientSinkError`` when the database cannot be reached."""
        ...

    def set_health_listener(self, listener: Callable[[bool, int], None]) -> None:
        """``listener(False, shard)`` as soon as a write to a shard meets a transient error,
        ``listener(True, shard)`` on success (the consumer pauses that shard's partitions at
        once instead of waiting for the sink's own retries)."""
        ...

    async def maintain(self) -> None:
        """Periodic upkeep (partitions ahead on plain PostgreSQL); cheap when nothing is due.
        Runs as a task of its own beside housekeeping; the sink bounds its time, and a
        cancel (the worker's stop) must end it promptly."""
        ...

    def pool_stats(self) -> tuple[int, int, int]:
        """(in use, idle, max) connections."""
        ...

    def open_alert_counts(self) -> dict[tuple[str, str, str], int]:
        """Alerts open now in this worker's partitions, by (entity kind, rule, severity), for a
        gauge; every alerting rule of each kind has its entry (0 when none is open)."""
        ...

    async def drop_moved(self) -> None:
        """Forget the open alerts of entities whose frames now come from another partition
        (ingest/pipeline/moved.py); housekeeping calls it every turn. A database away skips
        a turn; anything else raises."""
        ...

    def has_pending_changes(self) -> bool:
        """Alert changes wait that no frame produced (reload, restore): write them soon."""
        ...

    def reload_rules(self) -> str:
        """Re-read the rule files (SIGHUP); returns a one-line summary for the log."""
        ...

    def alerts_published(self, alerts: Sequence[AlertMessage]) -> None:
        """Kafka acknowledged these alert messages: their outbox rows may go."""
        ...

    async def delete_published(self) -> None:
        """Delete the acknowledged alert messages' outbox rows now (a graceful stop or a revoke:
        no next batch deletes them, and the next owner would send them again). Never raises."""
        ...

    async def on_partitions_assigned(
        self, partitions: Sequence[Any], *, until: float | None = None
    ) -> list[Any]:
        """Restore in-memory state (rule windows, open alerts) of partitions this worker now
        owns, and find their unpublished alert messages (sent with the next batch). Returns
        the partitions whose state is restored: a large restore goes a slice per call, keeping
        what it did, partition after partition; ``until`` (``time.monotonic``) ends the slice
        sooner (the rebalance callback's deadline). Raises when it cannot go on. The worker
        keeps the others paused and calls again."""
        ...

    def on_partitions_lost(self, partitions: Sequence[Any]) -> None:
        """Forget in-memory state (rule windows) of partitions this worker gave up."""
        ...
