"""Cell / probe temperatures: 2016 type 0x09 (Annex B Tables B.7-B.8), 2025 type 0x08
(Tables 13-14). The layout is the same in both editions; only the ranges differ.

Block: pack count (BYTE; 2016 1..250, 2025 0..50; FE/FF = no list), then per pack:

    field         type      range
    pack          BYTE      2016 subsystem 1..250 (no sentinels); 2025 pack 1..50
    probe_count   WORD      1..65531, FFFE/FFFF (a sentinel count is followed by no list)
    temps_c       BYTE x N  0..250, offset -40 °C, FE/FF -> None
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

__all__ = ["CODEC_2016", "CODEC_2025", "CellTemperatures", "TemperaturePack"]


@dataclass(frozen=True, slots=True)
class TemperaturePack(Record):
    """The probe temperatures of one pack; ``temps_c`` is ``None`` for a sentinel count."""

    name: ClassVar[str] = "pack"
    pack: int | None = None
    probe_count: int | None = None
    temps_c: tuple[int | None, ...] | None = ()
    quality: Quality = ()


@dataclass(frozen=True, slots=True)
class CellTemperatures(Record):
    """The temperature block; ``packs`` is ``None`` when the pack count is a sentinel."""

    name: ClassVar[str] = "cell_temperatures"
    packs: tuple[TemperaturePack, ...] | None = ()
    quality: Quality = ()


_COUNT: Final = ("H", "probe_count", 1, 65_531, "cell_temps")
_TEMPS: Final = ("B", 1, 40)  # BYTE, -40 °C


def _codec(pack_hi: int, count_lo: int, sentinel: bool) -> BlockCodec:
    head = Layout((Field("pack", "B", lo=1, hi=pack_hi, sentinel=sentinel),))

    def decode(buf: bytes, off: int, end: int) -> tuple[CellTemperatures, int]:
        count, quality = read_count(
            buf, off, end, "B", "packs", count_lo, pack_hi, "cell_temperatures"
        )
        off += 1
        if count is None:
            return CellTemperatures(None, quality), off
        need_items(off, count, 3, end, "cell_temperatures")
        packs = []
        for _ in range(count):
            (pack,), q = head.read(buf, off, end, "cell_temperatures")
            probes = read_counted(buf, off + 1, end, _COUNT, _TEMPS, "cell_temperatures")
            off = probes.end
            packs.append(TemperaturePack(pack, probes.n, probes.values, q + probes.quality))
        return CellTemperatures(tuple(packs), quality), off

    def encode(rec: Any) -> bytes:
        if rec.packs is None:
            return write_count("B", None, is_abnormal(rec.quality, "packs"))
        parts = [write_count("B", len(rec.packs), False)]
        for p in rec.packs:
            parts.append(head.write([p.pack], p.quality))
            abnormal = is_abnormal(p.quality, "probe_count")
            parts.append(write_counted("H", p.temps_c, abnormal, _TEMPS))
        return b"".join(parts)

    return BlockCodec(CellTemperatures, decode, encode)


# 2016 subsystem numbers have no sentinels (Table B.8): 0xFE/0xFF stay numbers, as in the rows.
CODEC_2016: Final = _codec(250, 1, sentinel=False)
CODEC_2025: Final = _codec(50, 0, sentinel=True)
