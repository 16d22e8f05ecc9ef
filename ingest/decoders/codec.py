"""The shape every block codec shares, and helpers for counts and arrays.

A block decoder is ``decode(buf, off, end) -> (record, new_off)``: ``off`` is the first byte of
the block body (after its type byte), ``end`` the end of the region it may read (the data unit,
or the signature start in 2025). It raises only ``FrameError``. An encoder is
``encode(record) -> bytes`` (the body, without the type byte) and raises ``ValueError`` for a
record that cannot be represented.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

from ingest.decoders.errors import BAD_FIELD, FrameError
from ingest.decoders.fields import (
    ABNORMAL,
    OUT_OF_RANGE,
    Layout,
    Quality,
    Record,
    array_struct,
    need,
)

__all__ = [
    "BlockCodec",
    "CountedList",
    "decode_array",
    "encode_array",
    "fixed_codec",
    "is_abnormal",
    "need_items",
    "read_count",
    "read_counted",
    "write_count",
    "write_counted",
]

Decode = Callable[[bytes, int, int], tuple[Record, int]]
Encode = Callable[[Any], bytes]


class BlockCodec(NamedTuple):
    """How one (edition, type) block is read and written."""

    record: type[Record]
    decode: Decode
    encode: Encode


def fixed_codec(layout: Layout, cls: type[Record], what: str) -> BlockCodec:
    """A codec for a block that is one fixed layout whose field names are the record's."""
    names = layout.names
    size = layout.size
    make: Callable[..., Record] = cls

    def decode(buf: bytes, off: int, end: int) -> tuple[Record, int]:
        values, quality = layout.read(buf, off, end, what)
        kw: dict[str, Any] = dict(zip(names, values, strict=True))
        return make(**kw, quality=quality), off + size

    def encode(rec: Any) -> bytes:
        return layout.write([getattr(rec, n) for n in names], rec.quality)

    return BlockCodec(cls, decode, encode)


_COUNT_TOP = {"B": 0xFF, "H": 0xFFFF}
_COUNT_SIZE = {"B": 1, "H": 2}


def read_count(
    buf: bytes, off: int, end: int, code: str, name: str, lo: int, hi: int, what: str
) -> tuple[int | None, Quality]:
    """A count field (BYTE or WORD). A sentinel count is ``None`` and no list follows it."""
    width = 1 if code == "B" else 2
    if off + width > end:
        need(off, width, end, what)
    n = buf[off] if width == 1 else (buf[off] << 8) | buf[off + 1]
    top = _COUNT_TOP[code]
    if n >= top - 1:
        return None, (((name, ABNORMAL),) if n == top - 1 else ())
    if n < lo or n > hi:
        return n, ((name, OUT_OF_RANGE),)
    return n, ()


def write_count(code: str, n: int | None, abnormal: bool) -> bytes:
    """A count field; ``None`` becomes the abnormal or invalid sentinel."""
    top = _COUNT_TOP[code]
    if n is None:
        n = top - 1 if abnormal else top
    return n.to_bytes(1 if code == "B" else 2, "big")


def need_items(off: int, count: int, size: int, end: int, what: str) -> None:
    """Raise ``bad_field`` when ``count`` items of ``size`` bytes overrun ``end`` (count at
    ``off - 1`` or ``off - 2``: the count is what is wrong, not the frame length)."""
    if off + count * size > end:
        raise FrameError(
            BAD_FIELD,
            off,
            f"{what}: {count} items need {count * size} bytes, {max(end - off, 0)} left",
        )


def decode_array(
    buf: bytes, off: int, count: int, code: str, div: int, sub: int, sentinel: bool = True
) -> tuple[float | int | None, ...]:
    """``count`` scaled values of ``code`` (B/H/I) from ``off``; sentinels become ``None``."""
    raws = array_struct(code, count).unpack_from(buf, off)
    if code != "I":
        # Cell voltages and probe temperatures are most of a frame's values: a lookup table
        # per (width, scale) turns the conversion into one C-level map.
        return tuple(map(_table(code, div, sub, sentinel).__getitem__, raws))
    cut = _ARRAY_CUT[code] if sentinel else 1 << 32
    if div == 1:
        return tuple([None if r >= cut else r - sub for r in raws])
    return tuple([None if r >= cut else (r - sub) / div for r in raws])


@lru_cache(maxsize=16)
def _table(code: str, div: int, sub: int, sentinel: bool) -> tuple[float | int | None, ...]:
    """Every raw value of a BYTE/WORD mapped to its value (a WORD table is ~1 MB)."""
    top = _COUNT_TOP[code]
    cut = top - 1 if sentinel else top + 1
    return tuple(
        None if r >= cut else (r - sub if div == 1 else (r - sub) / div) for r in range(top + 1)
    )


_ARRAY_CUT = {"B": 0xFE, "H": 0xFFFE, "I": 0xFFFFFFFE}


def encode_array(values: Sequence[float | int | None], code: str, div: int, sub: int) -> bytes:
    """The inverse of ``decode_array``; ``None`` becomes the invalid sentinel."""
    top = _COUNT_TOP.get(code, 0xFFFFFFFF)
    raws = [
        top if v is None else (int(v) + sub if div == 1 else round(v * div) + sub) for v in values
    ]
    try:
        return array_struct(code, len(raws)).pack(*raws)
    except struct.error as exc:
        raise ValueError(f"array values {values!r} do not fit {code}: {exc}") from None


def is_abnormal(quality: Quality, name: str) -> bool:
    """Whether ``quality`` marks ``name`` abnormal (for re-encoding a sentinel count)."""
    return (name, ABNORMAL) in quality


class CountedList(NamedTuple):
    """A count field and the list it counts (``values`` is ``None`` for a sentinel count)."""

    n: int | None  # the count; None for a sentinel
    values: tuple[Any, ...] | None  # floats or ints by the item's scale, as the record wants
    quality: Quality
    end: int  # the offset after the list


def read_counted(
    buf: bytes,
    off: int,
    end: int,
    count: tuple[str, str, int, int, str],
    item: tuple[str, int, int],
    what: str,
    sentinel: bool = True,
) -> CountedList:
    """A count field (``count``: its code, name, lo, hi and block name as for ``read_count``)
    followed by that many values (``item``: code, div, sub as for ``decode_array``);
    ``what`` names the list in the overrun error. The shape of every cell / probe list."""
    code, name, lo, hi, block = count
    n, quality = read_count(buf, off, end, code, name, lo, hi, block)
    off += _COUNT_SIZE[code]
    if n is None:
        return CountedList(None, None, quality, off)
    item_code, div, sub = item
    width = _COUNT_SIZE[item_code]
    need_items(off, n, width, end, what)
    values = decode_array(buf, off, n, item_code, div, sub, sentinel)
    return CountedList(n, values, quality, off + width * n)


def write_counted(
    code: str,
    values: Sequence[float | int | None] | None,
    abnormal: bool,
    item: tuple[str, int, int],
) -> bytes:
    """The inverse of ``read_counted``: the count (``None`` values: the sentinel, abnormal
    when ``abnormal``) and the list."""
    if values is None:
        return write_count(code, None, abnormal)
    return write_count(code, len(values), False) + encode_array(values, *item)
