"""Super capacitor: 2025 type 0x31 (Table 25). One management system per block (the table
has no count; several systems mean several 0x31 blocks).

    field             type      range
    system            BYTE      1..253, FE/FF
    voltage_v         WORD      0..10000, 0.1 V
    current_a         WORD      0..60000, 0.1 A, offset -3000 A
    cell count M      WORD      1..65531, FFFE/FFFF (sentinel: no list)
    cell_voltages_v   WORD x M  0..60000, 0.001 V
    probe count N     WORD      1..65531, FFFE/FFFF (sentinel: no list)
    temps_c           BYTE x N  0..250, -40 °C
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Final

from ingest.decoders.codec import (
    BlockCodec,
    is_abnormal,
    read_counted,
    write_counted,
)
from ingest.decoders.fields import Field, Layout, Quality, Record

__all__ = ["CODEC_2025", "SuperCapacitor"]


@dataclass(frozen=True, slots=True)
class SuperCapacitor(Record):
    """The 2025 super-capacitor block (one management system)."""

    name: ClassVar[str] = "super_capacitor"
    system: int | None = None
    voltage_v: float | None = None
    current_a: float | None = None
    cell_voltages_v: tuple[float | None, ...] | None = ()
    temps_c: tuple[int | None, ...] | None = ()
    quality: Quality = ()


HEAD: Final = Layout(
    (
        Field("system", "B", lo=1, hi=253),
        Field("voltage_v", "H", div=10, hi=10_000),
        Field("current_a", "H", div=10, sub=30_000, hi=60_000),
    )
)
_CELLS: Final = ("H", 1000, 0)  # cell voltages: WORD, 0.001 V
_TEMPS: Final = ("B", 1, 40)  # probe temperatures: BYTE, -40 °C


def decode_2025(buf: bytes, off: int, end: int) -> tuple[SuperCapacitor, int]:
    (system, volt, curr), quality = HEAD.read(buf, off, end, "super_capacitor")
    off += HEAD.size
    count = ("H", "cell_voltages_v", 1, 65_531, "super_capacitor")
    cells = read_counted(buf, off, end, count, _CELLS, "super_capacitor cells")
    count = ("H", "temps_c", 1, 65_531, "super_capacitor")
    temps = read_counted(buf, cells.end, end, count, _TEMPS, "super_capacitor probes")
    quality += cells.quality + temps.quality
    return SuperCapacitor(system, volt, curr, cells.values, temps.values, quality), temps.end


def encode_2025(rec: Any) -> bytes:
    q = rec.quality
    parts = [HEAD.write([rec.system, rec.voltage_v, rec.current_a], q)]
    parts.append(write_counted("H", rec.cell_voltages_v, is_abnormal(q, "cell_voltages_v"), _CELLS))
    parts.append(write_counted("H", rec.temps_c, is_abnormal(q, "temps_c"), _TEMPS))
    return b"".join(parts)


CODEC_2025: Final = BlockCodec(SuperCapacitor, decode_2025, encode_2025)
