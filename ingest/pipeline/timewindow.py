"""The frame-time window: which frame times the pipeline stores, decided before the database.

A frame is stored when its time lies within the storage retention (not older than
``max_age_ms`` before now: the database would drop it anyway; never before 2000, the
``EARLIEST`` of any telemetry, even when retention is forever) and at most ``max_future_ms``
ahead of its ``received_at`` (a device cannot report from the future; a clock that does is
wrong). Inside the window a frame is stored whatever its age: plain PostgreSQL creates the
partitions it needs (``storage.partitions``). Outside it the frame goes to the dead-letter
topic with reason ``time_out_of_window``, its time and the window in the headers, and is never
stored: a bad device clock (year 2000 after a reset, 2099) must neither fail a batch's COPY,
which used to cost a bisect of the whole batch, nor create a partition or chunk of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from contract.clock import EARLIEST_MS
from ingest.config import Settings
from ingest.pipeline import wire

__all__ = ["EARLIEST_MS", "REASON", "TimeWindow", "iso_ms", "time_window"]

REASON: Final = wire.TIME_OUT_OF_WINDOW

# Dead-letter headers of a ``time_out_of_window`` frame: epoch milliseconds, decimal text.
FRAME_TIME: Final = "error.frame_time"
WINDOW_START: Final = "error.window_start"
WINDOW_END: Final = "error.window_end"

# contract.clock.EARLIEST_MS (2000-01-01T00:00:00Z): the past bound even with retention
# forever: a year-1 time made the partition step overflow, which stopped the worker on every
# restart (the same record).


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Bounds relative to now (past) and to the frame's ``received_at`` (future), in ms.

    ``max_age_ms`` None: retention forever; the past bound is then ``EARLIEST_MS``.
    """

    max_age_ms: int | None
    max_future_ms: int

    def __post_init__(self) -> None:
        if self.max_future_ms < 0 or (self.max_age_ms is not None and self.max_age_ms < 0):
            raise ValueError("time window bounds must be >= 0")

    def start(self, now_ms: int) -> int:
        """The oldest frame time stored at ``now_ms`` (inclusive)."""
        if self.max_age_ms is None:
            return EARLIEST_MS
        return max(EARLIEST_MS, now_ms - self.max_age_ms)

    def end(self, received_ms: int) -> int:
        """The newest frame time stored for a frame received at ``received_ms`` (inclusive)."""
        return received_ms + self.max_future_ms

    def contains(self, ts_ms: int, received_ms: int, now_ms: int) -> bool:
        return self.start(now_ms) <= ts_ms <= self.end(received_ms)

    def describe(self, ts_ms: int, received_ms: int, now_ms: int) -> str:
        """The dead letter's detail: what was wrong and what to do."""
        start, end = self.start(now_ms), self.end(received_ms)
        where = f"frame time {iso_ms(ts_ms)} is outside the stored window [{iso_ms(start)}, "
        where += f"{iso_ms(end)}]"
        if ts_ms < start and start == EARLIEST_MS:
            return f"{where} (before 2000: no telemetry is); a device clock is wrong"
        why = "older than the retention" if ts_ms < start else "ahead of its received_at"
        return (
            f"{where} ({why}); a device clock is wrong - or, for a historical capture, raise "
            "storage.retention_days (docs/operations.md)"
        )


def time_window(settings: Settings) -> TimeWindow:
    """The frame-time window of the settings: retention back (to 2000 when kept forever),
    ``pipeline.frame_max_future_s`` ahead. The pipeline's, and the T/CEC receiver's (which
    refuses a push the pipeline would dead-letter for its time)."""
    days = settings.storage.retention_days
    return TimeWindow(
        max_age_ms=days * 86_400_000 if days else None,
        max_future_ms=int(settings.pipeline.frame_max_future_s * 1000),
    )


def iso_ms(ms: int) -> str:
    """Epoch ms as ISO 8601 UTC (clamped to what datetime can show)."""
    ms = min(max(ms, -62_135_596_800_000), 253_402_300_799_000)
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
