"""Decoded rows built directly (no frame bytes): for storage tests, examples and benchmarks.

``frame_rows`` gives the ``FrameRows`` a decoder would produce for a plausible real-time frame
of one vehicle at one time: a vehicle row, one drive motor, one pack with ``cells`` cell
voltages and ``probes`` probe temperatures as raw frame bytes, and an alarm row when
``alarm_level`` is set. Deterministic for given arguments.
"""

from __future__ import annotations

import struct
from datetime import datetime

from contract.rows import AlarmRow, FrameRows, MotorRow, PackRow, SessionRow, VehicleRow
from devtools.sim import envelope

__all__ = ["frame_rows", "session_rows", "vin"]


def vin(i: int, prefix: str = "LSYNTH") -> str:
    """A 17-character VIN, unique per ``i``."""
    return envelope.vin_of(i, prefix)


def frame_rows(
    vin: str,
    ts: datetime,
    *,
    seq: int = 0,
    command: int = 0x02,
    cells: int = 96,
    probes: int = 32,
    alarm_level: int = 0,
    cell_sentinels: int = 0,
    received_at: datetime | None = None,
) -> FrameRows:
    """One real-time (or, with ``command=3``, reissue) frame's rows; ``seq`` varies values."""
    cell_mv = [3300 + (seq + i) % 40 for i in range(cells)]
    raw_cells = bytearray(struct.pack(f">{cells}H", *cell_mv))
    for k in range(min(cell_sentinels, cells)):
        raw_cells[2 * k : 2 * k + 2] = b"\xff\xff"  # "invalid" sentinel
    valid = cell_mv[cell_sentinels:]
    temps = bytes(40 + 25 + (seq + i) % 8 for i in range(probes))
    soc = 80 - seq % 50
    current = -20.0 if seq % 7 == 0 else 35.5
    vehicle = VehicleRow(
        vin, ts, received_at or ts, 2016, command,
        1, 3, 1, 42.5 + seq % 10, 12345.6 + seq * 0.1, 350.0 + seq % 5, current, soc, 1, 0x0E,
        5000, 10, 0,
        True, 114.0 + seq * 1e-5, 22.5 + seq * 1e-5,
        max(cell_mv) / 1000, 1, cell_mv.index(max(cell_mv)) + 1,
        min(cell_mv) / 1000, 1, cell_mv.index(min(cell_mv)) + 1,
        max(temps) - 40, 1, temps.index(max(temps)) + 1,
        min(temps) - 40, 1, temps.index(min(temps)) + 1,
        False,
        alarm_level, (1 << 2) if alarm_level else 0, 1 if alarm_level else 0,
        False,  # signature_missing: a 2016 frame has no signature to miss
    )  # fmt: skip
    motor = MotorRow(vin, ts, 1, 1, 45, 3000 + seq % 100, 120.5, 50, 350.0, 30.0)
    pack = PackRow(
        vin, ts, 1, 350.0, current, cells, 1, bytes(raw_cells), temps,
        min(valid) if valid else None, max(valid) if valid else None,
        min(temps) - 40, max(temps) - 40,
    )  # fmt: skip
    alarm = (
        AlarmRow(vin, ts, alarm_level, 1 << 2, [0x1001], [], [], [], None) if alarm_level else None
    )
    return FrameRows(
        edition=2016,
        command=command,
        vin=vin,
        ts_ms=int(ts.timestamp() * 1000),
        vehicle=vehicle,
        motors=[motor],
        packs=[pack],
        alarm=alarm,
    )


def session_rows(vin: str, ts: datetime, event: str = "login", seq: int = 1) -> FrameRows:
    """A login (0x01) or logout (0x04) frame's rows."""
    login = event == "login"
    session = SessionRow(
        vin,
        ts,
        event,
        seq,
        "89860000000000000001" if login else None,
        ["0RJPEA00HAU0AAF131001955"] if login else [],
    )
    return FrameRows(
        edition=2016,
        command=0x01 if login else 0x04,
        vin=vin,
        ts_ms=int(ts.timestamp() * 1000),
        session=session,
    )
