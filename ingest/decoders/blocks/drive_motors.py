"""Drive motors: 2016 type 0x02 (Tables 10-11), 2025 type 0x02 (Tables 15-16).

Block: count (BYTE 1..253, FE/FF; a sentinel count is followed by no list), then one entry per
motor, 12 bytes in 2016, 10 bytes in 2025:

    field                 type        2016                          2025
    seq                   BYTE        1..253
    state                 BYTE        0x01 consuming, 0x02 generating, 0x03 off, 0x04 ready
    controller_temp_c     BYTE        0..250, offset -40 °C
    speed_rpm             WORD        0..65531, offset -20000       0..65531, offset -32000
    torque_nm             WORD/DWORD  WORD 0..65531, 0.1 N·m,       DWORD 0..400000, 0.1 N·m,
                                      offset -2000 N·m              offset -20000 N·m
    temp_c                BYTE        0..250, offset -40 °C
    controller_voltage_v  WORD        0..60000, 0.1 V               — (removed)
    controller_current_a  WORD        0..20000, 0.1 A, -1000 A      — (removed)

The 2016 torque offset is 20000 *raw units* (2000 N·m), a classic source of bugs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Final

from ingest.decoders.codec import BlockCodec, is_abnormal, need_items, read_count, write_count
from ingest.decoders.fields import Field, Layout, Quality, Record

__all__ = ["CODEC_2016", "CODEC_2025", "DriveMotors", "Motor"]


@dataclass(frozen=True, slots=True)
class Motor(Record):
    """One drive motor; the controller voltage and current are ``None`` in 2025."""

    name: ClassVar[str] = "motor"
    seq: int | None = None
    state: int | None = None
    controller_temp_c: int | None = None
    speed_rpm: int | None = None
    torque_nm: float | None = None
    temp_c: int | None = None
    controller_voltage_v: float | None = None
    controller_current_a: float | None = None
    quality: Quality = ()


@dataclass(frozen=True, slots=True)
class DriveMotors(Record):
    """The drive-motor block; ``motors`` is ``None`` when the count is a sentinel."""

    name: ClassVar[str] = "drive_motors"
    motors: tuple[Motor, ...] | None = ()
    quality: Quality = ()


_HEAD: Final = (
    Field("seq", "B", lo=1, hi=253),
    Field("state", "B", lo=1, hi=4),
    Field("controller_temp_c", "B", sub=40, hi=250),
)
LAYOUT_2016: Final = Layout(
    (
        *_HEAD,
        Field("speed_rpm", "H", sub=20_000, hi=65_531),
        Field("torque_nm", "H", div=10, sub=20_000, hi=65_531),
        Field("temp_c", "B", sub=40, hi=250),
        Field("controller_voltage_v", "H", div=10, hi=60_000),
        Field("controller_current_a", "H", div=10, sub=10_000, hi=20_000),
    )
)
LAYOUT_2025: Final = Layout(
    (
        *_HEAD,
        Field("speed_rpm", "H", sub=32_000, hi=65_531),
        Field("torque_nm", "I", div=10, sub=200_000, hi=400_000),
        Field("temp_c", "B", sub=40, hi=250),
    )
)


def _codec(layout: Layout) -> BlockCodec:
    names = layout.names
    size = layout.size

    def decode(buf: bytes, off: int, end: int) -> tuple[DriveMotors, int]:
        count, quality = read_count(buf, off, end, "B", "motors", 1, 253, "drive_motors")
        off += 1
        if count is None:
            return DriveMotors(None, quality), off
        need_items(off, count, size, end, "drive_motors")
        motors = []
        for _ in range(count):
            values, q = layout.read(buf, off, end, "drive_motors")
            kw: dict[str, Any] = dict(zip(names, values, strict=True))
            motors.append(Motor(**kw, quality=q))
            off += size
        return DriveMotors(tuple(motors), quality), off

    def encode(rec: Any) -> bytes:
        motors = rec.motors
        if motors is None:
            return write_count("B", None, is_abnormal(rec.quality, "motors"))
        parts = [write_count("B", len(motors), False)]
        parts.extend(layout.write([getattr(m, n) for n in names], m.quality) for m in motors)
        return b"".join(parts)

    return BlockCodec(DriveMotors, decode, encode)


CODEC_2016: Final = _codec(LAYOUT_2016)
CODEC_2025: Final = _codec(LAYOUT_2025)
