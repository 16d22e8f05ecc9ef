"""Whole-vehicle data: 2016 type 0x01 (Table 9 / B.4, 20 bytes), 2025 type 0x01 (Table 10, 18).

field            type   2016                          2025
vehicle_state    BYTE   0x01 started, 0x02 off, 0x03 other, FE/FF
charging_state   BYTE   0x01 parked charging, 0x02 driving charging, 0x03 not charging,
                        0x04 complete, FE/FF
run_mode         BYTE   0x01 electric, 0x02 hybrid, 0x03 fuel, FE/FF
speed_kmh        WORD   0..2200, 0.1 km/h              0..5000, 0.1 km/h
odometer_km      DWORD  0..9999999, 0.1 km
total_voltage_v  WORD   0..10000, 0.1 V                0..60000, 0.1 V
total_current_a  WORD   0..20000, 0.1 A, offset 1000 A 0..60000, 0.1 A, offset 3000 A
soc_pct          BYTE   0..100 %
dcdc_state       BYTE   0x01 working, 0x02 off, FE/FF
gear             BYTE   Annex A Table A.1 bit field (no sentinels; 2025 bit 7 = invalid)
insulation_kohm  WORD   0..60000 kΩ, no sentinels      0..60000 kΩ, FFFE/FFFF
accel_pedal_pct  BYTE   0..100 % (Annex B), FE/FF      — (removed)
brake_pedal_pct  BYTE   0..100 %, 101 = braking without travel value, FE/FF — (removed)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

from ingest.decoders.codec import BlockCodec, fixed_codec
from ingest.decoders.fields import Field, Layout, Quality, Record

__all__ = ["CODEC_2016", "CODEC_2025", "Vehicle", "gear_info"]


@dataclass(frozen=True, slots=True)
class Vehicle(Record):
    """The whole-vehicle block. Pedal fields are ``None`` in 2025 frames (removed there)."""

    name: ClassVar[str] = "vehicle"
    vehicle_state: int | None = None
    charging_state: int | None = None
    run_mode: int | None = None
    speed_kmh: float | None = None
    odometer_km: float | None = None
    total_voltage_v: float | None = None
    total_current_a: float | None = None
    soc_pct: int | None = None
    dcdc_state: int | None = None
    gear: int | None = None
    insulation_kohm: int | None = None
    accel_pedal_pct: int | None = None
    brake_pedal_pct: int | None = None
    quality: Quality = ()


_COMMON_HEAD: Final = (
    Field("vehicle_state", "B", lo=1, hi=3),
    Field("charging_state", "B", lo=1, hi=4),
    Field("run_mode", "B", lo=1, hi=3),
)

LAYOUT_2016: Final = Layout(
    (
        *_COMMON_HEAD,
        Field("speed_kmh", "H", div=10, hi=2200),
        Field("odometer_km", "I", div=10, hi=9_999_999),
        Field("total_voltage_v", "H", div=10, hi=10_000),
        Field("total_current_a", "H", div=10, sub=10_000, hi=20_000),  # offset -1000 A
        Field("soc_pct", "B", hi=100),
        Field("dcdc_state", "B", lo=1, hi=2),
        Field("gear", "B", sentinel=False),
        Field("insulation_kohm", "H", hi=60_000, sentinel=False),  # 2016: no sentinels
        Field("accel_pedal_pct", "B", hi=100),
        Field("brake_pedal_pct", "B", hi=101),  # 101 (0x65): braking, no travel value
    )
)

LAYOUT_2025: Final = Layout(
    (
        *_COMMON_HEAD,
        Field("speed_kmh", "H", div=10, hi=5000),
        Field("odometer_km", "I", div=10, hi=9_999_999),
        Field("total_voltage_v", "H", div=10, hi=60_000),
        Field("total_current_a", "H", div=10, sub=30_000, hi=60_000),  # offset -3000 A
        Field("soc_pct", "B", hi=100),
        Field("dcdc_state", "B", lo=1, hi=2),
        Field("gear", "B", sentinel=False),
        Field("insulation_kohm", "H", hi=60_000),
    )
)

CODEC_2016: Final[BlockCodec] = fixed_codec(LAYOUT_2016, Vehicle, "vehicle")
CODEC_2025: Final[BlockCodec] = fixed_codec(LAYOUT_2025, Vehicle, "vehicle")

_GEAR_NAMES: Final = {0: "N", 13: "R", 14: "D", 15: "P"}


def gear_info(gear: int, edition: int) -> dict[str, object]:
    """The gear byte's bits (Annex A Table A.1): position, drive and brake force, validity.

    Positions: "N", "1".."12", "R", "D", "P". In 2025 bit 7 set means the gear is invalid.
    """
    low = gear & 0x0F
    return {
        "gear_position": _GEAR_NAMES.get(low, str(low)),
        "gear_drive_force": bool(gear & 0x20),
        "gear_brake_force": bool(gear & 0x10),
        "gear_valid": not (gear & 0x80) if edition == 2025 else True,
    }
