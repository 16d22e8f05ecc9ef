"""Flat rows: what the decoder's fast path produces for the storage writer and the rule engine.

This module is the contract between ``ingest.decoders`` (producer), ``storage`` (COPY into the
tables) and ``alerts`` (rules read fields by name). Field names follow the public decode contract
(docs/protocols/gbt32960.md); each NamedTuple's field order is the column order of its table,
so a row can go to ``copy_records_to_table`` as it is.

Values are engineering units (the unit is in the name). A sentinel of the standard (0xFE
"abnormal", 0xFF "invalid" and their WORD/DWORD forms) is ``None``, never a number.

Cell voltages and probe temperatures travel as the frame's own bytes (``*_raw``), because
building Python lists of ~100 ints per pack is what dominates a frame's cost (see
shared/MEASUREMENTS.md); the writer turns them into ``int2[]`` directly, and the per-pack
min/max fields spare the rules from touching the arrays at all.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, NamedTuple

__all__ = [
    "COPY_TABLES",
    "AlarmRow",
    "FrameRows",
    "MotorRow",
    "PackRow",
    "SessionRow",
    "VehicleRow",
    "cell_voltages_mv",
    "probe_temps_c",
]


class VehicleRow(NamedTuple):
    """One row of ``vehicle_telemetry`` per real-time (0x02) or reissue (0x03) frame.

    Blocks absent from the frame leave their fields ``None``. 2025 frames carry no extremes
    block: the decoder derives the extremes from the cell-voltage and temperature blocks when
    they are present (and says so in ``extremes_derived``).
    """

    vin: str
    ts: datetime  # frame collection time, aware, +08:00 as sent
    received_at: datetime | None  # gateway receive time (Kafka header), aware UTC
    edition: int  # 2016 | 2025
    command: int  # 0x02 real-time, 0x03 reissue
    # whole-vehicle block (0x01)
    vehicle_state: int | None
    charging_state: int | None
    run_mode: int | None
    speed_kmh: float | None
    odometer_km: float | None
    total_voltage_v: float | None
    total_current_a: float | None
    soc_pct: int | None
    dcdc_state: int | None
    gear: int | None  # the raw gear byte (Annex A Table A.1); decode with decoders helpers
    insulation_kohm: int | None
    accel_pedal_pct: int | None  # 2016 only
    brake_pedal_pct: int | None  # 2016 only; 101 = "brake active, no travel value"
    # position block (0x05)
    position_valid: bool | None
    longitude: float | None  # signed degrees, west negative
    latitude: float | None  # signed degrees, south negative
    # extremes block (2016 0x06) or derived from packs (2025)
    max_cell_voltage_v: float | None
    max_cell_voltage_pack: int | None
    max_cell_voltage_cell: int | None
    min_cell_voltage_v: float | None
    min_cell_voltage_pack: int | None
    min_cell_voltage_cell: int | None
    max_temp_c: int | None
    max_temp_pack: int | None
    max_temp_probe: int | None
    min_temp_c: int | None
    min_temp_pack: int | None
    min_temp_probe: int | None
    extremes_derived: bool
    # alarm summary (2016 0x07 / 2025 0x06)
    max_alarm_level: int | None
    general_flags: int | None  # u32 bit mask, bit 0 = LSB of the last byte
    fault_count: int  # N1+N2+N3+N4 (sentinel counts contribute 0)
    # 2025 real-time / reissue command packet without its signature (Table 7): stored, flagged.
    # Last, with a default, because it came after the first contract (0005 adds the column at
    # the end of the table); the fast path always sets it.
    signature_missing: bool = False


class MotorRow(NamedTuple):
    """One row of ``drive_motor_telemetry`` per motor per frame."""

    vin: str
    ts: datetime
    seq: int  # motor number as sent (a key: a sentinel 0xFE/0xFF stays a number)
    state: int | None
    controller_temp_c: int | None
    speed_rpm: int | None
    torque_nm: float | None
    temp_c: int | None
    controller_voltage_v: float | None  # 2016 only
    controller_current_a: float | None  # 2016 only


class PackRow(NamedTuple):
    """One row of ``battery_pack_telemetry`` per pack (2016: per voltage page) per frame.

    A pack's voltages and temperatures come from two blocks; the decoder joins them by pack
    number. ``first_cell`` is 1 except for the later pages of a 2016 pack of > 200 cells.
    """

    vin: str
    ts: datetime
    pack: int  # pack / RESS subsystem number as sent (a key: a sentinel stays a number)
    voltage_v: float | None
    current_a: float | None
    cell_count: int | None  # total cells of the pack (2016) / units in this frame (2025)
    first_cell: int  # 1-based index of the first cell in cell_voltages_raw (as sent)
    cell_voltages_raw: bytes  # big-endian u16 per cell, mV, sentinels as sent (0xFFFE/0xFFFF)
    probe_temps_raw: bytes  # u8 per probe, raw (°C + 40), sentinels as sent (0xFE/0xFF)
    cell_min_mv: int | None  # over the non-sentinel cells of this row
    cell_max_mv: int | None
    probe_min_c: int | None
    probe_max_c: int | None


class AlarmRow(NamedTuple):
    """One row of ``alarm_events`` per frame whose alarm level or flags are non-zero."""

    vin: str
    ts: datetime
    max_level: int | None
    general_flags: int | None
    ress_faults: list[int]
    motor_faults: list[int]
    engine_faults: list[int]
    other_faults: list[int]
    bit_levels: list[int] | None  # 2025: flat [bit, level, bit, level, ...]; 2016: None


class SessionRow(NamedTuple):
    """One row of ``vehicle_sessions`` per vehicle login (0x01) or logout (0x04)."""

    vin: str
    ts: datetime
    event: str  # "login" | "logout"
    seq: int | None  # login / logout serial number
    iccid: str | None  # login only
    pack_codes: list[str]  # login only (2016 RESS codes / 2025 GB/T 34014 pack codes)


# The tables of ``FrameRows.copy``, in its order.
COPY_TABLES: Final = (
    "vehicle_telemetry",
    "drive_motor_telemetry",
    "battery_pack_telemetry",
    "alarm_events",
)


class FrameRows:
    """Everything the fast path extracts from one frame.

    For 0x02/0x03 frames ``vehicle`` is set (even when the frame has no 0x01 block, so the
    frame is still traceable) and the lists hold the other blocks' rows; for 0x01/0x04 frames
    ``session`` is set; other commands, responses (``response != 0xFE``: a platform's ack
    is not vehicle data) and encrypted frames carry only the envelope.
    """

    __slots__ = (
        "alarm",
        "command",
        "copy",
        "edition",
        "encrypted",
        "motors",
        "packs",
        "partial",
        "response",
        "session",
        "signature_missing",
        "tail_offset",
        "ts_ms",
        "vehicle",
        "vin",
    )

    def __init__(
        self,
        *,
        edition: int,
        command: int,
        vin: str,
        ts_ms: int | None,
        encrypted: bool = False,
        partial: bool = False,
        vehicle: VehicleRow | None = None,
        motors: list[MotorRow] | None = None,
        packs: list[PackRow] | None = None,
        alarm: AlarmRow | None = None,
        session: SessionRow | None = None,
        response: int = 0xFE,
        tail_offset: int | None = None,
        signature_missing: bool = False,
        copy: tuple[bytes, bytes, bytes, bytes] | None = None,
    ) -> None:
        self.edition = edition
        self.command = command
        self.vin = vin
        self.ts_ms = ts_ms  # frame time as epoch ms (UTC), None for commands without a time
        self.encrypted = encrypted  # payload kept opaque (RSA/AES/SM2/SM4)
        # decoding stopped at a block it could not size or read (unknown type, custom length
        # or a count overrunning the data unit): rows of the blocks before it are kept
        self.partial = partial
        self.vehicle = vehicle
        self.motors: list[MotorRow] = motors if motors is not None else []
        self.packs: list[PackRow] = packs if packs is not None else []
        self.alarm = alarm
        self.session = session
        # Added after the first contract (keyword-only with defaults, so existing callers work):
        self.response = response  # response flag; 0xFE = a command. Responses carry no rows.
        self.tail_offset = tail_offset  # partial frames: frame offset of the undecoded tail
        # a 2025 real-time / reissue command packet without the signature Table 7 ends it with:
        # its rows are kept, but nothing vouches for them (also VehicleRow.signature_missing,
        # stored in vehicle_telemetry)
        self.signature_missing = signature_missing
        # The native decoder's binary COPY tuples of this frame's rows, per table of
        # ``COPY_TABLES`` (b"" where the frame has no row there), in each table's column order
        # with ``received_at`` as given to the decoder; no COPY signature or trailer, so the
        # writer can join the tuples of any frames. None: the rows were built in Python, and
        # the writer encodes them itself.
        self.copy = copy

    def __repr__(self) -> str:
        return (
            f"FrameRows(edition={self.edition}, command={self.command:#04x}, vin={self.vin!r}, "
            f"ts_ms={self.ts_ms}, motors={len(self.motors)}, packs={len(self.packs)})"
        )


def cell_voltages_mv(row: PackRow) -> list[int | None]:
    """The pack row's cell voltages in mV, sentinels as ``None`` (the slow, readable form)."""
    raw = row.cell_voltages_raw
    out: list[int | None] = []
    for i in range(0, len(raw) - 1, 2):
        v = (raw[i] << 8) | raw[i + 1]
        out.append(None if v >= 0xFFFE else v)
    return out


def probe_temps_c(row: PackRow) -> list[int | None]:
    """The pack row's probe temperatures in °C, sentinels as ``None``."""
    return [None if b >= 0xFE else b - 40 for b in row.probe_temps_raw]
