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

__all__ = [
    "INDEX_BYTES_PER_ROW",
    "ROWS_PER_FRAME",
    "FleetProfile",
    "busy_tables",
    "chunk_intervals",
]

# Index bytes per row of a hypertable chunk (primary key + the time index TimescaleDB adds),
# measured on the TimescaleDB engine (hypertable_detailed_size index_bytes / rows;
# docs/performance.md): the vehicle tables by loadtest/bench_storage.py, the charger and pack
# tables by loadtest/bench_storage_kinds.py (its --sparse 1 for faults, alarms and logins, which
# are too few otherwise). The three sparse vehicle tables have an extra index or a wider key;
# they are taken as the widest measured. charging_session_events has three indexes (key by
# order, by connector, by VIN).
INDEX_BYTES_PER_ROW: Final[dict[str, int]] = {
    "vehicle_telemetry": 95,
    "drive_motor_telemetry": 116,
    "battery_pack_telemetry": 116,
    "alarm_events": 116,
    "vehicle_sessions": 116,
    "raw_frames": 116,
    "connector_status_events": 119,
    "charger_telemetry": 106,
    "charging_session_events": 295,
    "charger_faults": 109,
    "pack_telemetry": 95,
    "pack_alarm_events": 88,
    "pack_sessions": 148,
}
# Rows per report of the table's entity. A vehicle's real-time frame: one vehicle row, one
# drive motor, one pack; alarms are rare (1 % of frames is generous); logins a few a day. A
# connector's: a status and an output row, an order-progress row while it charges (a quarter
# of the connectors at once is a busy hour), faults rare. A standalone pack's: one telemetry
# row, alarms and logins rare. raw_frames: one row per frame of any kind.
ROWS_PER_FRAME: Final[dict[str, float]] = {
    "vehicle_telemetry": 1.0,
    "drive_motor_telemetry": 1.0,
    "battery_pack_telemetry": 1.0,
    "alarm_events": 0.01,
    "vehicle_sessions": 0.001,
    "raw_frames": 1.0,
    "connector_status_events": 1.0,
    "charger_telemetry": 1.0,
    "charging_session_events": 0.25,
    "charger_faults": 0.01,
    "pack_telemetry": 1.0,
    "pack_alarm_events": 0.01,
    "pack_sessions": 0.001,
}
# Whose reports fill each table (raw_frames: everyone's).
_KIND: Final[dict[str, str]] = {
    **dict.fromkeys(
        ("vehicle_telemetry", "drive_motor_telemetry", "battery_pack_telemetry", "alarm_events",
         "vehicle_sessions"),
        "vehicle",
    ),
    **dict.fromkeys(
        ("connector_status_events", "charger_telemetry", "charging_session_events",
         "charger_faults"),
        "charger",
    ),
    **dict.fromkeys(("pack_telemetry", "pack_alarm_events", "pack_sessions"), "battery"),
}  # fmt: skip
# Intervals a chunk may get, shortest first: whole minutes/hours/days keep chunk boundaries
# on the same clock marks as the aggregates' buckets.
_STEPS: Final = tuple(
    timedelta(minutes=m)
    for m in (5, 10, 15, 20, 30, 60, 120, 180, 240, 360, 480, 720, 1440, 2880, 10080)
)


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetProfile:
    """The load one database server takes: its vehicles, chargers' connectors and standalone
    packs, each reporting every ``frame_interval_s``."""

    vehicles: int = 1_000_000
    connectors: int = 1_000_000
    packs: int = 1_000_000
    frame_interval_s: float = 10.0  # GB/T 32960: real-time data at most every 30 s; 10 s usual
    memory_bytes: int = 64 * 2**30
    memory_share: float = 0.25
    raw_frames: bool = False


def busy_tables(raw_frames: bool = False) -> list[str]:
    """The tables every report of their entity writes a row to: they share one interval."""
    busy = [t for t, n in ROWS_PER_FRAME.items() if n >= 1.0 and t != "raw_frames"]
    return [*busy, "raw_frames"] if raw_frames else busy


def chunk_intervals(profile: FleetProfile) -> dict[str, timedelta]:
    """A chunk interval per hypertable for ``profile`` (rounded down to a step, at least 5 min).

    The busy tables of every kind share one interval (they fill at the same pace, so their
    chunks roll over together and the memory budget is their sum); the sparse ones get the
    longest step that keeps their own index under the same budget.
    """
    per_s = {
        "vehicle": profile.vehicles / profile.frame_interval_s,
        "charger": profile.connectors / profile.frame_interval_s,
        "battery": profile.packs / profile.frame_interval_s,
    }
    everyone = sum(per_s.values())

    def rate(table: str) -> float:
        reports = per_s[_KIND[table]] if table in _KIND else everyone
        return reports * ROWS_PER_FRAME[table] * INDEX_BYTES_PER_ROW[table]

    budget = profile.memory_bytes * profile.memory_share
    busy = busy_tables(profile.raw_frames)
    busy_rate = sum(rate(t) for t in busy)
    out = {t: _step_below(budget / busy_rate) for t in busy}
    for table in ROWS_PER_FRAME:
        if table not in out:
            r = rate(table)
            out[table] = _step_below(budget / r) if r else _STEPS[-1]
    return out


def _step_below(seconds: float) -> timedelta:
    best = _STEPS[0]
    for step in _STEPS:
        if step.total_seconds() <= seconds:
            best = step
    return best
