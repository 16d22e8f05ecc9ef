"""Chunk intervals from the data rate (the arithmetic is written out in docs/storage.md).

TimescaleDB's rule: the indexes of the chunks being written should fit in about a quarter of
the database server's memory, or every insert starts reading index pages from disk. Index
bytes per second = frames/s x rows per frame x index bytes per row; the chunk interval is the
memory share divided by that, summed over the hypertables written at the same time, rounded
down to a calendar-friendly interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Final

__all__ = ["INDEX_BYTES_PER_ROW", "ROWS_PER_FRAME", "FleetProfile", "chunk_intervals"]

# Index bytes per row of a hypertable chunk (primary key + the time index TimescaleDB adds),
# measured by loadtest/bench_storage.py on the TimescaleDB engine (hypertable_detailed_size
# index_bytes / rows; docs/performance.md). The three sparse tables have an extra index or a
# wider key; they are taken as the widest measured.
INDEX_BYTES_PER_ROW: Final[dict[str, int]] = {
    "vehicle_telemetry": 95,
    "drive_motor_telemetry": 116,
    "battery_pack_telemetry": 116,
    "alarm_events": 116,
    "vehicle_sessions": 116,
    "raw_frames": 116,
}
# Rows per real-time frame of a typical passenger BEV: one vehicle row, one drive motor, one
# pack; alarms are rare (1 % of frames is generous); logins a few a day.
ROWS_PER_FRAME: Final[dict[str, float]] = {
    "vehicle_telemetry": 1.0,
    "drive_motor_telemetry": 1.0,
    "battery_pack_telemetry": 1.0,
    "alarm_events": 0.01,
    "vehicle_sessions": 0.001,
    "raw_frames": 1.0,
}
# Intervals a chunk may get, shortest first: whole minutes/hours/days keep chunk boundaries
# on the same clock marks as the aggregates' buckets.
_STEPS: Final = tuple(
    timedelta(minutes=m)
    for m in (5, 10, 15, 20, 30, 60, 120, 180, 240, 360, 480, 720, 1440, 2880, 10080)
)


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetProfile:
    """The load one database server takes."""

    vehicles: int = 1_000_000
    frame_interval_s: float = 10.0  # GB/T 32960: real-time data at most every 30 s; 10 s usual
    memory_bytes: int = 64 * 2**30
    memory_share: float = 0.25
    raw_frames: bool = False


def chunk_intervals(profile: FleetProfile) -> dict[str, timedelta]:
    """A chunk interval per hypertable for ``profile`` (rounded down to a step, at least 5 min).

    The busy tables share one interval (they fill at the same pace, so their chunks roll over
    together and the memory budget is their sum); the sparse ones get the longest step that
    keeps their own index under the same budget.
    """
    frames_per_s = profile.vehicles / profile.frame_interval_s
    budget = profile.memory_bytes * profile.memory_share
    busy = ["vehicle_telemetry", "drive_motor_telemetry", "battery_pack_telemetry"]
    if profile.raw_frames:
        busy.append("raw_frames")
    busy_rate = sum(frames_per_s * ROWS_PER_FRAME[t] * INDEX_BYTES_PER_ROW[t] for t in busy)
    out = {t: _step_below(budget / busy_rate) for t in busy}
    for table, share in ROWS_PER_FRAME.items():
        if table not in out:
            rate = frames_per_s * share * INDEX_BYTES_PER_ROW[table]
            out[table] = _step_below(budget / rate) if rate else _STEPS[-1]
    return out


def _step_below(seconds: float) -> timedelta:
    best = _STEPS[0]
    for step in _STEPS:
        if step.total_seconds() <= seconds:
            best = step
    return best
