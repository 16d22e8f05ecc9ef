"""Super-capacitor extremes: 2025 type 0x32 (Table 26, 18 bytes).

field                        type  range
max_cell_voltage_system      BYTE  1..253, FE/FF
max_cell_voltage_cell        WORD  1..65531 (no sentinels in the text)
max_cell_voltage_v           WORD  0..60000, 0.001 V, FFFE/FFFF
min_cell_voltage_system      BYTE
min_cell_voltage_cell        WORD  (no sentinels)
min_cell_voltage_v           WORD  0.001 V
max_temp_system              BYTE
max_temp_probe               WORD  (no sentinels)
max_temp_c                   BYTE  0..250, offset -40 °C
min_temp_system              BYTE
min_temp_probe               WORD  (no sentinels)
min_temp_c                   BYTE  0..250, offset -40 °C
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

from ingest.decoders.codec import BlockCodec, fixed_codec
from ingest.decoders.fields import Field, Layout, Quality, Record

__all__ = ["CODEC_2025", "SuperCapacitorExtremes"]


@dataclass(frozen=True, slots=True)
class SuperCapacitorExtremes(Record):
    """The 2025 super-capacitor extremes block."""

    name: ClassVar[str] = "super_capacitor_extremes"
    max_cell_voltage_system: int | None = None
    max_cell_voltage_cell: int | None = None
    max_cell_voltage_v: float | None = None
    min_cell_voltage_system: int | None = None
    min_cell_voltage_cell: int | None = None
    min_cell_voltage_v: float | None = None
    max_temp_system: int | None = None
    max_temp_probe: int | None = None
    max_temp_c: int | None = None
    min_temp_system: int | None = None
    min_temp_probe: int | None = None
    min_temp_c: int | None = None
    quality: Quality = ()


LAYOUT_2025: Final = Layout(
    (
        Field("max_cell_voltage_system", "B", lo=1, hi=253),
        Field("max_cell_voltage_cell", "H", lo=1, hi=65_531, sentinel=False),
        Field("max_cell_voltage_v", "H", div=1000, hi=60_000),
        Field("min_cell_voltage_system", "B", lo=1, hi=253),
        Field("min_cell_voltage_cell", "H", lo=1, hi=65_531, sentinel=False),
        Field("min_cell_voltage_v", "H", div=1000, hi=60_000),
        Field("max_temp_system", "B", lo=1, hi=253),
        Field("max_temp_probe", "H", lo=1, hi=65_531, sentinel=False),
        Field("max_temp_c", "B", sub=40, hi=250),
        Field("min_temp_system", "B", lo=1, hi=253),
        Field("min_temp_probe", "H", lo=1, hi=65_531, sentinel=False),
        Field("min_temp_c", "B", sub=40, hi=250),
    )
)

CODEC_2025: Final[BlockCodec] = fixed_codec(
    LAYOUT_2025, SuperCapacitorExtremes, "super_capacitor_extremes"
)
