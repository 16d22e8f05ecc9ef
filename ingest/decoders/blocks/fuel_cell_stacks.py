"""Fuel-cell stacks: 2025 type 0x30 (Tables 18-19).

Block: stack count (BYTE 1..253, FE/FF = no list), then per stack (12 + N bytes):

    field                    type      range
    seq                      BYTE      1..253
    voltage_v                WORD      0..20000, 0.1 V
    current_a                WORD      0..20000, 0.1 A
    h2_inlet_pressure_kpa    WORD      0..5000, 0.1 kPa, offset -100 kPa
    air_inlet_pressure_kpa   WORD      0..5000, 0.1 kPa, offset -100 kPa
    air_inlet_temp_c         BYTE      0..250, -40 °C
    coolant_probe_count      WORD      0..65531, FFFE/FFFF (sentinel: no list)
    coolant_temps_c          BYTE x N  0..250, -40 °C, FE/FF -> None
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Final

from ingest.decoders.codec import (
    BlockCodec,
    is_abnormal,
    need_items,
    read_count,
    read_counted,
    write_count,
    write_counted,
)
from ingest.decoders.fields import Field, Layout, Quality, Record

__all__ = ["CODEC_2025", "FuelCellStacks", "Stack"]


@dataclass(frozen=True, slots=True)
class Stack(Record):
    """One fuel-cell stack."""

    name: ClassVar[str] = "stack"
    seq: int | None = None
    voltage_v: float | None = None
    current_a: float | None = None
    h2_inlet_pressure_kpa: float | None = None
    air_inlet_pressure_kpa: float | None = None
    air_inlet_temp_c: int | None = None
    coolant_temps_c: tuple[int | None, ...] | None = ()
    quality: Quality = ()


@dataclass(frozen=True, slots=True)
class FuelCellStacks(Record):
    """The 2025 fuel-cell stack block."""

    name: ClassVar[str] = "fuel_cell_stacks"
    stacks: tuple[Stack, ...] | None = ()
    quality: Quality = ()


HEAD: Final = Layout(
    (
        Field("seq", "B", lo=1, hi=253),
        Field("voltage_v", "H", div=10, hi=20_000),
        Field("current_a", "H", div=10, hi=20_000),
        Field("h2_inlet_pressure_kpa", "H", div=10, sub=1000, hi=5000),
        Field("air_inlet_pressure_kpa", "H", div=10, sub=1000, hi=5000),
        Field("air_inlet_temp_c", "B", sub=40, hi=250),
    )
)
_COUNT: Final = ("H", "coolant_temps_c", 0, 65_531, "fuel_cell_stacks")
_TEMPS: Final = ("B", 1, 40)  # BYTE, -40 °C


def decode_2025(buf: bytes, off: int, end: int) -> tuple[FuelCellStacks, int]:
    count, quality = read_count(buf, off, end, "B", "stacks", 1, 253, "fuel_cell_stacks")
    off += 1
    if count is None:
        return FuelCellStacks(None, quality), off
    need_items(off, count, HEAD.size + 2, end, "fuel_cell_stacks")
    stacks = []
    for _ in range(count):
        values, q = HEAD.read(buf, off, end, "fuel_cell_stacks")
        off += HEAD.size
        probes = read_counted(
            buf, off, end, _COUNT, ("B", 1, 40), "fuel_cell_stacks coolant probes"
        )
        off = probes.end
        kw: dict[str, Any] = dict(zip(HEAD.names, values, strict=True))
        stacks.append(Stack(**kw, coolant_temps_c=probes.values, quality=q + probes.quality))
    return FuelCellStacks(tuple(stacks), quality), off


def encode_2025(rec: Any) -> bytes:
    if rec.stacks is None:
        return write_count("B", None, is_abnormal(rec.quality, "stacks"))
    parts = [write_count("B", len(rec.stacks), False)]
    for s in rec.stacks:
        parts.append(HEAD.write([getattr(s, n) for n in HEAD.names], s.quality))
        abnormal = is_abnormal(s.quality, "coolant_temps_c")
        parts.append(write_counted("H", s.coolant_temps_c, abnormal, _TEMPS))
    return b"".join(parts)


CODEC_2025: Final = BlockCodec(FuelCellStacks, decode_2025, encode_2025)
