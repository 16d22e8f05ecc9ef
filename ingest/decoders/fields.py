"""Primitives shared by every block and command decoder: time, sentinels, scaled fields.

A block's fixed part is declared once as a tuple of ``Field`` (name, struct code, resolution,
offset, valid range, sentinels); ``Layout`` compiles it into one ``struct.Struct`` and applies
the conversions, so scaling and sentinel rules live in the declaration, not in ad-hoc code.

Conventions (GB/T 32960.3 §6.1 and the tables of chapter 7, both editions):
- physical value = (raw - offset) / divisor; the standard's "offset X" is subtracted;
- the top raw value of a width means "invalid" and the one below "abnormal" (0xFF/0xFE,
  0xFFFF/0xFFFE, 0xFFFFFFFF/0xFFFFFFFE); both decode to ``None``, and an abnormal one is named
  in the record's ``quality`` so that the encoder can write the same byte back;
- a raw value outside the valid range that is not a sentinel is kept and named in ``quality``
  as "out_of_range".
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, ClassVar, Final, NamedTuple

from contract.clock import CHINA_TZ
from ingest.decoders.errors import BAD_FIELD, TRUNCATED, FrameError

__all__ = [
    "TIME",
    "Field",
    "Layout",
    "Quality",
    "Record",
    "Value",
    "array_struct",
    "decode_time",
    "encode_time",
    "epoch_ms",
    "need",
]

# Beijing time. Annex B says GMT+8; frames carry the wall clock and no zone.

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

TIME: Final = struct.Struct(
    ">"
    "B"  # year - 2000, 0..99
    "B"  # month 1..12
    "B"  # day 1..31
    "B"  # hour 0..23
    "B"  # minute 0..59
    "B"  # second 0..59
)

ABNORMAL: Final = "abnormal"
OUT_OF_RANGE: Final = "out_of_range"

Value = int | float | None
# (field name, "abnormal" | "out_of_range") pairs, in field order; empty for a clean block.
Quality = tuple[tuple[str, str], ...]


class Record:
    """Base of every decoded record: ``name`` is the block / body name of the JSON contract."""

    __slots__ = ()
    name: ClassVar[str] = ""


def need(off: int, size: int, end: int, what: str) -> None:
    """Raise ``truncated`` unless ``size`` bytes from ``off`` fit before ``end``."""
    if off + size > end:
        raise FrameError(TRUNCATED, off, f"{what}: need {size} bytes, {max(end - off, 0)} left")


def decode_time(buf: bytes, off: int) -> datetime:
    """The 6-byte time (Table 5) at ``off`` as an aware datetime in GMT+8."""
    yy, mo, dd, hh, mi, ss = TIME.unpack_from(buf, off)
    if yy > 99:
        raise FrameError(BAD_FIELD, off, f"time: year byte {yy} > 99")
    try:
        return datetime(2000 + yy, mo, dd, hh, mi, ss, tzinfo=CHINA_TZ)
    except ValueError as exc:
        raw = buf[off : off + 6].hex()
        raise FrameError(BAD_FIELD, off, f"time {raw}: {exc}") from None


def encode_time(dt: datetime) -> bytes:
    """``dt`` as the 6-byte Beijing wall clock; naive datetimes are taken as Beijing time.

    Sub-second parts are dropped (the standard has whole seconds).
    """
    local = dt.astimezone(CHINA_TZ) if dt.tzinfo is not None else dt
    if not 2000 <= local.year <= 2099:
        raise ValueError(f"time {dt.isoformat()}: the year must be 2000..2099")
    return TIME.pack(
        local.year - 2000, local.month, local.day, local.hour, local.minute, local.second
    )


def epoch_ms(dt: datetime) -> int:
    """Epoch milliseconds of an aware datetime (exact: integer arithmetic)."""
    return (dt - _EPOCH) // timedelta(milliseconds=1)


@lru_cache(maxsize=1024)
def array_struct(code: str, count: int) -> struct.Struct:
    """A compiled big-endian layout of ``count`` items of ``code`` (cell lists, fault codes)."""
    return struct.Struct(f">{count}{code}")


_TOP: Final = {"B": 0xFF, "H": 0xFFFF, "I": 0xFFFFFFFF}


class Field(NamedTuple):
    """One scalar of a fixed layout: value = (raw - sub) / div, valid raw range lo..hi."""

    name: str
    code: str  # struct code: "B" BYTE, "H" WORD, "I" DWORD
    div: int = 1  # 10 for a 0.1 resolution, 1000 for 0.001, ...
    sub: int = 0  # the standard's offset, in raw units (1000 A at 0.1 A -> 10000)
    lo: int = 0
    hi: int | None = None  # None: everything below the sentinels is valid
    sentinel: bool = True  # False for the few fields the text gives no sentinels


class Layout:
    """A precompiled fixed layout: one ``struct.Struct`` for a sequence of ``Field``."""

    __slots__ = ("_plan", "_tops", "fields", "names", "size", "struct")

    def __init__(self, fields: Sequence[Field]) -> None:
        self.fields: tuple[Field, ...] = tuple(fields)
        self.names: tuple[str, ...] = tuple(f.name for f in fields)
        self.struct = struct.Struct(">" + "".join(f.code for f in fields))
        self.size: int = self.struct.size
        plan = []
        for f in fields:
            top = _TOP[f.code]
            # Raw values >= ``abnormal`` are sentinels; a field without sentinels never reaches it.
            abnormal = top - 1 if f.sentinel else top + 1
            hi = f.hi if f.hi is not None else (top - 2 if f.sentinel else top)
            plan.append((f.name, abnormal, f.lo, hi, f.sub, f.div))
        self._plan: tuple[tuple[str, int, int, int, int, int], ...] = tuple(plan)
        self._tops: tuple[int, ...] = tuple(_TOP[f.code] for f in fields)

    def read(self, buf: bytes, off: int, end: int, what: str) -> tuple[list[Any], Quality]:
        """Unpack the layout at ``off`` (bounded by ``end``): engineering values (``Value``:
        int, float or ``None``) and quality."""
        if off + self.size > end:
            need(off, self.size, end, what)
        values: list[Value] = []
        quality: list[tuple[str, str]] = []
        for (name, abnormal, lo, hi, sub, div), raw in zip(
            self._plan, self.struct.unpack_from(buf, off), strict=True
        ):
            if raw >= abnormal:
                values.append(None)
                if raw == abnormal:
                    quality.append((name, ABNORMAL))
                continue
            if raw < lo or raw > hi:
                quality.append((name, OUT_OF_RANGE))
            values.append(raw - sub if div == 1 else (raw - sub) / div)
        return values, tuple(quality)

    def write(self, values: Sequence[Value], quality: Quality = ()) -> bytes:
        """Pack engineering values; ``None`` becomes the invalid sentinel, or the abnormal one
        when ``quality`` says so."""
        abnormal_names = {n for n, q in quality if q == ABNORMAL}
        raws: list[int] = []
        for (name, abnormal, _lo, _hi, sub, div), top, v in zip(
            self._plan, self._tops, values, strict=True
        ):
            if v is None:
                if abnormal > top:
                    raise ValueError(f"{name}: has no sentinel, None cannot be encoded")
                raws.append(abnormal if name in abnormal_names else abnormal + 1)
            elif div == 1:
                raws.append(int(v) + sub)
            else:
                raws.append(round(v * div) + sub)
        try:
            return self.struct.pack(*raws)
        except struct.error as exc:
            raise ValueError(f"{self.names}: {raws} do not fit: {exc}") from None
