"""Engine data: 2016 type 0x04 (Table 15, 5 bytes), 2025 type 0x04 (Table 20, 2 bytes).

field                  type   2016                             2025
state                  BYTE   0x01 running, 0x02 stopped, FE/FF — (removed)
crankshaft_speed_rpm   WORD   0..60000 r/min, FFFE/FFFF
fuel_rate_l_per_100km  WORD   0..60000, 0.01 L/100 km          — (removed)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

from ingest.decoders.codec import BlockCodec, fixed_codec
from ingest.decoders.fields import Field, Layout, Quality, Record

__all__ = ["CODEC_2016", "CODEC_2025", "Engine"]


@dataclass(frozen=True, slots=True)
class Engine(Record):
    """The engine block; 2025 keeps only the crankshaft speed."""

    name: ClassVar[str] = "engine"
    state: int | None = None
    crankshaft_speed_rpm: int | None = None
    fuel_rate_l_per_100km: float | None = None
    quality: Quality = ()


LAYOUT_2016: Final = Layout(
    (
        Field("state", "B", lo=1, hi=2),
        Field("crankshaft_speed_rpm", "H", hi=60_000),
        Field("fuel_rate_l_per_100km", "H", div=100, hi=60_000),
    )
)
LAYOUT_2025: Final = Layout((Field("crankshaft_speed_rpm", "H", hi=60_000),))

CODEC_2016: Final[BlockCodec] = fixed_codec(LAYOUT_2016, Engine, "engine")
CODEC_2025: Final[BlockCodec] = fixed_codec(LAYOUT_2025, Engine, "engine")
