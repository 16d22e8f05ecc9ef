"""What the pipeline needs from the database side: the ``Sink`` protocol and its errors.

A sink writes one batch in ONE transaction: the rows, the rule engine's alert changes and the
batch's Kafka offsets (fenced: the transaction fails with ``FencedError`` when the stored offset
of a partition is not the one the batch starts from, i.e. another consumer wrote it meanwhile).
``ingest.pipeline.storage_sink`` implements it with the storage writer and the rule engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ingest.pipeline.batch import Batch

__all__ = ["AlertChange", "FencedError", "Sink", "TransientSinkError", "WriteResult"]


class TransientSinkError(Exception):
    """The write failed for a reason that goes away (connection lost, DB restarting ...):
    retry the same batch later; nothing was committed."""


class FencedError(Exception):
    """Another consumer already stored offsets past this batch's start for ``partitions``:
    this worker's view of them is stale (it lost them in a rebalance); drop and re-seek."""

    def __init__(self, partitions: Sequence[Any], detail: str = "") -> None:
        super().__init__(detail or f"offsets moved on for {list(partitions)}")
        self.partitions = list(partitions)


@dataclass(frozen=True, slots=True)
class AlertChange:
    """One alert lifecycle change for metrics and the alerts topic."""

    rule: str
    severity: str
    change: str  # raised | updated | cleared
    key: bytes  # Kafka key: the entity id
    message: bytes  # the nev.alerts value (JSON)


@dataclass(slots=True)
class WriteResult:
    """What a committed batch produced beyond its rows."""

    rejected: list[tuple[int, str]] = field(default_factory=list)  # (frame index, detail)
    alerts: list[AlertChange] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  # rows written by table


class Sink(Protocol):
    """The database side of a worker (see the module docstring)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def stored_offsets(self, partitions: Sequence[Any]) -> dict[Any, int]:
        """Next offset to read for each partition that has one stored (for the seek)."""
        ...

    async def write(self, batch: Batch) -> WriteResult:
        """Write ``batch`` and its offsets (``batch.next``, fenced by ``batch.start``) in one
        transaction. Raises ``TransientSinkError`` or ``FencedError``; rows the database
        rejects permanently are left out and returned in ``WriteResult.rejected``."""
        ...

    async def ping(self) -> None:
        """Raise ``TransientSinkError`` when the database cannot be reached."""
        ...

    def pool_stats(self) -> tuple[int, int, int]:
        """(in use, idle, max) connections."""
        ...

    def reload_rules(self) -> str:
        """Re-read the rule files (SIGHUP); returns a one-line summary for the log."""
        ...

    def on_partitions_lost(self, partitions: Sequence[Any]) -> None:
        """Forget in-memory state (rule windows) of partitions this worker gave up."""
        ...
