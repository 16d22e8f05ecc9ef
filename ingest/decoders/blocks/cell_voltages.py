"""Cell voltages: 2016 type 0x08 (Annex B Tables B.5-B.6), 2025 type 0x07 (Tables 11-12).

Block: pack count (BYTE; 2016 1..250, 2025 0..50; FE/FF = no list), then per pack:

    field             type      2016                              2025
    pack              BYTE      subsystem number 1..250,          pack number 1..50
                                no sentinels (Table B.6)
    voltage_v         WORD      0..10000, 0.1 V                   0..60000, 0.1 V
    current_a         WORD      0..20000, 0.1 A, offset -1000 A   0..60000, 0.1 A, offset -3000 A
    cell_count        WORD      total cells of the pack 1..65531  units N in this frame
    first_cell        WORD      index of this page's first cell   — (no paging; always 1)
    (page count m)    BYTE      cells in this frame 1..200        —
    cell_voltages_v   WORD x m  0..60000, 0.001 V (2025: x N), FFFE/FFFF -> None

2016 paging: a pack of more than 200 cells is split over frames with the same collection time;
``first_cell`` says where this page starts, ``len(cell_voltages_v)`` how many it holds.
Reassemble by (VIN, time, pack). A sentinel page count gives ``cell_voltages_v = None``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Final

from ingest.decoders.codec import (
    BlockCodec,
    decode_array,
    encode_array,
    is_abnormal,
    need_items,
    read_count,
    write_count,
)
from ingest.decoders.fields import Field, Layout, Quality, Record

__all__ = ["CODEC_2016", "CODEC_2025", "CellVoltages", "VoltagePack"]


@dataclass(frozen=True, slots=True)
class VoltagePack(Record):
    """One pack (2016: one page of a pack) of cell voltages."""

    name: ClassVar[str] = "pack"
    pack: int | None = None
    voltage_v: float | None = None
    current_a: float | None = None
    cell_count: int | None = None
    first_cell: int | None = 1
    cell_voltages_v: tuple[float | None, ...] | None = ()
    quality: Quality = ()


@dataclass(frozen=True, slots=True)
class CellVoltages(Record):
    """The cell-voltage block; ``packs`` is ``None`` when the pack count is a sentinel."""

    name: ClassVar[str] = "cell_voltages"
    packs: tuple[VoltagePack, ...] | None = ()
    quality: Quality = ()


HEAD_2016: Final = Layout(
    (
        # Table B.6 gives the subsystem number no sentinels, and it is a row key: 0xFE/0xFF
        # stay numbers (flagged out of range), as in the rows (docs/protocols, "Sentinels").
        Field("pack", "B", lo=1, hi=250, sentinel=False),
        Field("voltage_v", "H", div=10, hi=10_000),
        Field("current_a", "H", div=10, sub=10_000, hi=20_000),
        Field("cell_count", "H", lo=1, hi=65_531),
        Field("first_cell", "H", lo=1, hi=65_531),
    )
)
HEAD_2025: Final = Layout(
    (
        Field("pack", "B", lo=1, hi=50),
        Field("voltage_v", "H", div=10, hi=60_000),
        Field("current_a", "H", div=10, sub=30_000, hi=60_000),
    )
)


def decode_2016(buf: bytes, off: int, end: int) -> tuple[CellVoltages, int]:
    count, quality = read_count(buf, off, end, "B", "packs", 1, 250, "cell_voltages")
    off += 1
    if count is None:
        return CellVoltages(None, quality), off
    need_items(off, count, HEAD_2016.size + 1, end, "cell_voltages")
    packs = []
    for _ in range(count):
        (pack, volt, curr, total, first), q = HEAD_2016.read(buf, off, end, "cell_voltages")
        off += HEAD_2016.size
        # Accept up to 255 cells per page: the text says 200 but the field is a BYTE.
        m, mq = read_count(buf, off, end, "B", "cell_voltages_v", 1, 200, "cell_voltages")
        off += 1
        cells: tuple[Any, ...] | None = None
        if m is not None:
            need_items(off, m, 2, end, "cell_voltages")
            cells = decode_array(buf, off, m, "H", 1000, 0)
            off += 2 * m
        packs.append(VoltagePack(pack, volt, curr, total, first, cells, q + mq))
    return CellVoltages(tuple(packs), quality), off


def decode_2025(buf: bytes, off: int, end: int) -> tuple[CellVoltages, int]:
    count, quality = read_count(buf, off, end, "B", "packs", 0, 50, "cell_voltages")
    off += 1
    if count is None:
        return CellVoltages(None, quality), off
    need_items(off, count, HEAD_2025.size + 2, end, "cell_voltages")
    packs = []
    for _ in range(count):
        (pack, volt, curr), q = HEAD_2025.read(buf, off, end, "cell_voltages")
        off += HEAD_2025.size
        n, nq = read_count(buf, off, end, "H", "cell_count", 1, 65_531, "cell_voltages")
        off += 2
        cells: tuple[Any, ...] | None = None
        if n is not None:
            need_items(off, n, 2, end, "cell_voltages")
            cells = decode_array(buf, off, n, "H", 1000, 0)
            off += 2 * n
        packs.append(VoltagePack(pack, volt, curr, n, 1, cells, q + nq))
    return CellVoltages(tuple(packs), quality), off


def _encode_packs(rec: Any, one: Any) -> bytes:
    if rec.packs is None:
        return write_count("B", None, is_abnormal(rec.quality, "packs"))
    return write_count("B", len(rec.packs), False) + b"".join(one(p) for p in rec.packs)


def _cells(p: Any) -> bytes:
    return b"" if p.cell_voltages_v is None else encode_array(p.cell_voltages_v, "H", 1000, 0)


def encode_2016(rec: Any) -> bytes:
    def one(p: Any) -> bytes:
        head = HEAD_2016.write(
            [p.pack, p.voltage_v, p.current_a, p.cell_count, p.first_cell], p.quality
        )
        m = None if p.cell_voltages_v is None else len(p.cell_voltages_v)
        return head + write_count("B", m, is_abnormal(p.quality, "cell_voltages_v")) + _cells(p)

    return _encode_packs(rec, one)


def encode_2025(rec: Any) -> bytes:
    def one(p: Any) -> bytes:
        head = HEAD_2025.write([p.pack, p.voltage_v, p.current_a], p.quality)
        n = None if p.cell_voltages_v is None else len(p.cell_voltages_v)
        return head + write_count("H", n, is_abnormal(p.quality, "cell_count")) + _cells(p)

    return _encode_packs(rec, one)


CODEC_2016: Final = BlockCodec(CellVoltages, decode_2016, encode_2016)
CODEC_2025: Final = BlockCodec(CellVoltages, decode_2025, encode_2025)
