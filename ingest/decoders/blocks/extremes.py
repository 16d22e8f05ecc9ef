"""Extreme values: 2016 type 0x06 (Table 16, 14 bytes). Removed in 2025 (0x06 is the alarm).

    field                   type  range
    max_cell_voltage_pack   BYTE  subsystem number 1..250, FE/FF
    max_cell_voltage_cell   BYTE  cell code 1..250, FE/FF
    max_cell_voltage_v      WORD  0..15000, 0.001 V, FFFE/FFFF
    min_cell_voltage_pack   BYTE  1..250
    min_cell_voltage_cell   BYTE  1..250
    min_cell_voltage_v      WORD  0..15000, 0.001 V
    max_temp_pack           BYTE  1..250
    max_temp_probe          BYTE  1..250
    max_temp_c              BYTE  0..250, offset -40 °C
    min_temp_pack           BYTE  1..250
    min_temp_probe          BYTE  1..250
    min_temp_c              BYTE  0..250, offset -40 °C

A cell code is one BYTE, so cells past 250 of a large pack cannot be named here (2016 limit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

from ingest.decoders.codec import BlockCodec, fixed_codec
from ingest.decoders.fields import Field, Layout, Quality, Record

__all__ = ["CODEC_2016", "Extremes"]


@dataclass(frozen=True, slots=True)
class Extremes(Record):
    """The 2016 extreme-values block."""

    name: ClassVar[str] = "extremes"
    max_cell_voltage_pack: int | None = None
    max_cell_voltage_cell: int | None = None
    max_cell_voltage_v: float | None = None
    min_cell_voltage_pack: int | None = None
    min_cell_voltage_cell: int | None = None
    min_cell_voltage_v: float | None = None
    max_temp_pack: int | None = None
    max_temp_probe: int | None = None
    max_temp_c: int | None = None
    min_temp_pack: int | None = None
    min_temp_probe: int | None = None
    min_temp_c: int | None = None
    quality: Quality = ()


LAYOUT_2016: Final = Layout(
    (
        Field("max_cell_voltage_pack", "B", lo=1, hi=250),
        Field("max_cell_voltage_cell", "B", lo=1, hi=250),
        Field("max_cell_voltage_v", "H", div=1000, hi=15_000),
        Field("min_cell_voltage_pack", "B", lo=1, hi=250),
        Field("min_cell_voltage_cell", "B", lo=1, hi=250),
        Field("min_cell_voltage_v", "H", div=1000, hi=15_000),
        Field("max_temp_pack", "B", lo=1, hi=250),
        Field("max_temp_probe", "B", lo=1, hi=250),
        Field("max_temp_c", "B", sub=40, hi=250),
        Field("min_temp_pack", "B", lo=1, hi=250),
        Field("min_temp_probe", "B", lo=1, hi=250),
        Field("min_temp_c", "B", sub=40, hi=250),
    )
)

CODEC_2016: Final[BlockCodec] = fixed_codec(LAYOUT_2016, Extremes, "extremes")
