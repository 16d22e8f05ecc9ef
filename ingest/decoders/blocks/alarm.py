"""Alarm data: 2016 type 0x07 (Tables 17-18), 2025 type 0x06 (Tables 23-24).

    field           type        2016                          2025
    max_level       BYTE        0..3, FE/FF                   0..4 (4 = thermal event, GB 38031)
    general_flags   DWORD       bit 0 = LSB of the last byte; names in ``ALARM_BITS``
    N1 + codes      BYTE + 4N1  RESS fault codes (N 0..252; 2025 0..253; FE/FF = no list)
    N2 + codes      BYTE + 4N2  drive-motor fault codes
    N3 + codes      BYTE + 4N3  engine fault codes
    N4 + codes      BYTE + 4N4  other fault codes
    N5 + pairs      BYTE + 2N5  2025 only: (flag bit, level) per general alarm

Fault codes are manufacturer-defined DWORDs, kept as ints. In 2025 general flag bit 23 (RESS
thermal event) is by definition a level-4 fault.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from ingest.decoders.codec import (
    BlockCodec,
    is_abnormal,
    need_items,
    read_count,
    write_count,
)
from ingest.decoders.fields import Field, Layout, Quality, Record, array_struct

__all__ = ["ALARM_BITS", "CODEC_2016", "CODEC_2025", "Alarm", "BitLevel", "alarm_names"]

# Table 18 (2016) / Table 24 (2025); bits 19..27 exist only in 2025.
ALARM_BITS: Final = (
    "temperature_difference",
    "battery_high_temperature",
    "ess_over_voltage",
    "ess_under_voltage",
    "soc_low",
    "cell_over_voltage",
    "cell_under_voltage",
    "soc_high",
    "soc_jump",
    "ress_mismatch",
    "cell_consistency_poor",
    "insulation",
    "dcdc_temperature",
    "brake_system",
    "dcdc_state",
    "motor_controller_temperature",
    "high_voltage_interlock",
    "motor_temperature",
    "ess_overcharge",
    "motor_over_speed",
    "motor_over_current",
    "supercap_over_temperature",
    "supercap_over_voltage",
    "thermal_event",
    "hydrogen_leak",
    "h2_system_pressure_abnormal",
    "h2_system_temperature_abnormal",
    "fuel_cell_stack_over_temperature",
)
_DEFINED_BITS: Final = {2016: 19, 2025: 28}


def alarm_names(flags: int, edition: int) -> list[str]:
    """Names of the set general-flag bits; reserved bits are named ``bit_<n>``."""
    defined = _DEFINED_BITS[edition]
    return [ALARM_BITS[b] if b < defined else f"bit_{b}" for b in range(32) if flags >> b & 1]


@dataclass(frozen=True, slots=True)
class BitLevel(Record):
    """2025: the level of one general alarm flag."""

    name: ClassVar[str] = "bit_level"
    bit: int = 0
    level: int = 0


@dataclass(frozen=True, slots=True)
class Alarm(Record):
    """The alarm block. A fault list is ``None`` when its count is a sentinel; ``bit_levels``
    is ``None`` in 2016 (no such list)."""

    name: ClassVar[str] = "alarm"
    max_level: int | None = None
    general_flags: int = 0
    ress_faults: tuple[int, ...] | None = ()
    motor_faults: tuple[int, ...] | None = ()
    engine_faults: tuple[int, ...] | None = ()
    other_faults: tuple[int, ...] | None = ()
    bit_levels: tuple[BitLevel, ...] | None = None
    quality: Quality = ()


_FAULT_LISTS: Final = ("ress_faults", "motor_faults", "engine_faults", "other_faults")
HEAD_2016: Final = Layout(
    (
        Field("max_level", "B", hi=3),
        Field("general_flags", "I", sentinel=False),  # all 32 bits are flags
    )
)
HEAD_2025: Final = Layout(
    (
        Field("max_level", "B", hi=4),  # 4 = thermal event
        Field("general_flags", "I", sentinel=False),
    )
)


def _codec(head: Layout, count_hi: int, with_levels: bool) -> BlockCodec:
    def decode(buf: bytes, off: int, end: int) -> tuple[Alarm, int]:
        (level, flags), quality = head.read(buf, off, end, "alarm")
        off += head.size
        lists: list[tuple[int, ...] | None] = []
        for name in _FAULT_LISTS:
            n, q = read_count(buf, off, end, "B", name, 0, count_hi, "alarm")
            quality += q
            off += 1
            if n is None:
                lists.append(None)
                continue
            need_items(off, n, 4, end, f"alarm {name}")
            lists.append(array_struct("I", n).unpack_from(buf, off))
            off += 4 * n
        levels: tuple[BitLevel, ...] | None = None
        if with_levels:
            n, q = read_count(buf, off, end, "B", "bit_levels", 0, count_hi, "alarm")
            quality += q
            off += 1
            if n is not None:
                need_items(off, n, 2, end, "alarm bit_levels")
                raw = buf[off : off + 2 * n]
                levels = tuple(BitLevel(raw[i], raw[i + 1]) for i in range(0, 2 * n, 2))
                off += 2 * n
        ress, motor, engine, other = lists
        return Alarm(level, flags, ress, motor, engine, other, levels, quality), off

    def encode(rec: Any) -> bytes:
        parts = [head.write([rec.max_level, rec.general_flags], rec.quality)]
        for name in _FAULT_LISTS:
            codes = getattr(rec, name)
            if codes is None:
                parts.append(write_count("B", None, is_abnormal(rec.quality, name)))
            else:
                parts.append(write_count("B", len(codes), False))
                try:
                    parts.append(array_struct("I", len(codes)).pack(*codes))
                except struct.error as exc:
                    raise ValueError(f"alarm {name}: {exc}") from None
        if with_levels:
            levels = rec.bit_levels
            if levels is None:
                parts.append(write_count("B", None, is_abnormal(rec.quality, "bit_levels")))
            else:
                parts.append(write_count("B", len(levels), False))
                parts.append(bytes(x for bl in levels for x in (bl.bit, bl.level)))
        return b"".join(parts)

    return BlockCodec(Alarm, decode, encode)


CODEC_2016: Final = _codec(HEAD_2016, 252, with_levels=False)
CODEC_2025: Final = _codec(HEAD_2025, 253, with_levels=True)
