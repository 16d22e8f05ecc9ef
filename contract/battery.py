"""Flat rows of the standalone battery-pack profile (``nev.battery.raw``, docs/protocols/
battery.md): what ``ingest.decoders.battery.decode_pack_rows`` produces.

Designed as the future tables' columns: each NamedTuple's field order is the column order of
its table (``pack_telemetry``, ``pack_alarm_events``, ``pack_sessions``), as in
``contract.rows``, so a row can go to binary COPY as it is. Rows are keyed by the full
24-character GB/T 34014 pack code and the frame time, never by arrival order (bindings and
swaps are decided by frame time).

Units are in the names; a sentinel of the profile (0xFE "abnormal", 0xFF "invalid" and the
WORD/DWORD forms) is ``None``. Cell voltages and probe temperatures travel as the frame's own
bytes with min/max beside them, as in ``contract.rows.PackRow`` (same byte format, so the
same readers ``cell_voltages_mv`` / ``probe_temps_c`` apply).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

__all__ = [
    "LIFECYCLE_STAGES",
    "PackAlarmRow",
    "PackFrameRows",
    "PackSessionRow",
    "PackTelemetryRow",
]

# Lifecycle stage codes (docs/protocols/battery.md, "pack state"), by code.
LIFECYCLE_STAGES: dict[int, str] = {
    1: "in_vehicle",
    2: "in_swap_station",
    3: "in_storage",
    4: "second_life",
    5: "recycled",
}


class PackTelemetryRow(NamedTuple):
    """One row of ``pack_telemetry`` per real-time (0x02) or reissue (0x03) pack frame.

    Blocks absent from the frame leave their fields ``None`` (the arrays ``b""``).
    """

    pack_code: str  # GB/T 34014, 24 characters (validated)
    ts: datetime  # frame collection time, aware, +08:00 as sent
    received_at: datetime | None  # gateway receive time (Kafka header), aware UTC
    edition: int  # envelope: 2016 ("##") | 2025 ("$$")
    command: int  # 0x02 real-time, 0x03 reissue
    # pack state (0x01)
    lifecycle_stage: int | None  # LIFECYCLE_STAGES
    work_state: int | None  # 1 charging, 2 discharging, 3 idle
    soc_pct: int | None
    soh_pct: int | None
    cycle_count: int | None
    voltage_v: float | None
    current_a: float | None  # positive = discharging (as GB/T 32960)
    insulation_kohm: int | None
    # site (0x02)
    site_id: str | None  # swap station / warehouse / ESS site / recycler id, or the VIN
    slot: int | None  # bay / rack slot in the site
    # cells (0x03) and probes (0x04)
    cell_count: int | None
    cell_voltages_raw: bytes  # big-endian u16 per cell, mV, sentinels as sent
    cell_min_mv: int | None
    cell_max_mv: int | None
    probe_count: int | None
    probe_temps_raw: bytes  # u8 per probe, raw (°C + 40), sentinels as sent
    probe_min_c: int | None
    probe_max_c: int | None
    # alarm (0x05)
    max_alarm_level: int | None
    alarm_flags: int | None  # u32 bit mask (docs/protocols/battery.md)
    fault_count: int  # 0 when the frame has no alarm block or a sentinel count


class PackAlarmRow(NamedTuple):
    """One row of ``pack_alarm_events`` per frame whose alarm level or flags are non-zero."""

    pack_code: str
    ts: datetime
    max_level: int | None
    alarm_flags: int | None
    fault_codes: list[int]


class PackSessionRow(NamedTuple):
    """One row of ``pack_sessions`` per pack login (0x01) or logout (0x04)."""

    pack_code: str
    ts: datetime
    event: str  # "login" | "logout"
    seq: int | None
    iccid: str | None  # login only
    original_code: str | None  # login only: a second-life pack's code before re-coding
    rated_capacity_ah: float | None
    rated_energy_kwh: float | None
    nominal_voltage_v: float | None
    cell_count: int | None
    probe_count: int | None


@dataclass(slots=True, kw_only=True, eq=False, repr=False)
class PackFrameRows:
    """Everything the battery fast path extracts from one frame: ``telemetry`` (+ ``alarm``)
    for real-time / reissue data, ``session`` for login / logout command packets; responses,
    heartbeats, time sync and encrypted frames carry only the envelope."""

    # A dataclass, not a hand-written ``__init__`` like ``FrameRows`` (which turns ``None``
    # lists into empty ones): the fields are all there is.
    edition: int
    command: int
    # the full code for login / logout / data frames; the header ID (positions 8-24 of
    # the code, or a station code) for the others, which carry no code
    pack_code: str
    ts_ms: int | None
    encrypted: bool = False
    partial: bool = False  # a block could not be walked: rows of the blocks before it
    telemetry: PackTelemetryRow | None = None
    alarm: PackAlarmRow | None = None
    session: PackSessionRow | None = None
    response: int = 0xFE
    tail_offset: int | None = None

    def __repr__(self) -> str:
        return (
            f"PackFrameRows(edition={self.edition}, command={self.command:#04x}, "
            f"pack_code={self.pack_code!r}, ts_ms={self.ts_ms})"
        )
