"""Vehicle position: 2016 type 0x05 (Tables 14-15, 9 bytes), 2025 type 0x05 (Tables 21-22, 10).

    field          type   meaning
    status         BYTE   bit 0: 1 = invalid fix; bit 1: 1 = south; bit 2: 1 = west; 3-7 reserved
    coord_system   BYTE   2025 only: 0x01 WGS84, 0x02 GCJ-02, 0x03 other
    longitude      DWORD  degrees x 10^6, unsigned; the sign comes from status bit 2
    latitude       DWORD  degrees x 10^6, unsigned; the sign comes from status bit 1

``valid`` is the inverse of bit 0 (a 1 means *invalid*; the terminal then repeats the last fix).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from ingest.decoders.codec import BlockCodec
from ingest.decoders.fields import ABNORMAL, OUT_OF_RANGE, Quality, Record, need

__all__ = ["CODEC_2016", "CODEC_2025", "Position"]


@dataclass(frozen=True, slots=True)
class Position(Record):
    """The position block: signed degrees (west and south negative)."""

    name: ClassVar[str] = "position"
    valid: bool = False
    longitude: float | None = None
    latitude: float | None = None
    coord_system: int | None = None  # 2025 only
    status: int = 0  # the raw status byte, reserved bits included
    quality: Quality = ()


_S2016: Final = struct.Struct(
    ">"
    "B"  # status bits
    "I"  # longitude x 1e6
    "I"  # latitude x 1e6
)
_S2025: Final = struct.Struct(
    ">"
    "B"  # status bits
    "B"  # coordinate system
    "I"  # longitude x 1e6
    "I"  # latitude x 1e6
)
_LIMITS: Final = {"longitude": 180_000_000, "latitude": 90_000_000}


def _coord(raw: int, negative: bool, name: str, quality: list[tuple[str, str]]) -> float | None:
    if raw >= 0xFFFFFFFE:
        if raw == 0xFFFFFFFE:
            quality.append((name, ABNORMAL))
        return None
    if raw > _LIMITS[name]:
        quality.append((name, OUT_OF_RANGE))
    # Signed as an integer, then scaled: a zero coordinate has no hemisphere, and a west or
    # south 0 is 0.0, not -0.0 (which PostgreSQL would store and print as -0).
    return (-raw if negative else raw) / 1_000_000


def _decode(status: int, cs: int | None, lon: int, lat: int) -> Position:
    quality: list[tuple[str, str]] = []
    longitude = _coord(lon, bool(status & 0x04), "longitude", quality)
    latitude = _coord(lat, bool(status & 0x02), "latitude", quality)
    if cs is not None and not 1 <= cs <= 3:
        quality.append(("coord_system", OUT_OF_RANGE))
    return Position(not status & 0x01, longitude, latitude, cs, status, tuple(quality))


def decode_2016(buf: bytes, off: int, end: int) -> tuple[Position, int]:
    need(off, 9, end, "position")
    status, lon, lat = _S2016.unpack_from(buf, off)
    return _decode(status, None, lon, lat), off + 9


def decode_2025(buf: bytes, off: int, end: int) -> tuple[Position, int]:
    need(off, 10, end, "position")
    status, cs, lon, lat = _S2025.unpack_from(buf, off)
    return _decode(status, cs, lon, lat), off + 10


def _negative(value: float | None, bit: int, status: int) -> bool:
    # A zero (decoded as 0.0 whatever its hemisphere bit) and a sentinel keep the bit recorded
    # in ``status``, so that a frame re-encodes byte for byte (forwarding, the round-trip
    # tests); a -0.0 built by hand still counts as negative.
    if value is None or (value == 0 and math.copysign(1.0, value) > 0):
        return bool(status & bit)
    return math.copysign(1.0, value) < 0


def _raw(value: float | None, name: str, quality: Quality) -> int:
    if value is None:
        return 0xFFFFFFFE if (name, ABNORMAL) in quality else 0xFFFFFFFF
    return round(abs(value) * 1_000_000)


def _status(rec: Position) -> int:
    """The status byte: reserved bits as recorded, validity and hemispheres from the values."""
    return (
        (rec.status & 0xF8)
        | (0 if rec.valid else 0x01)
        | (0x02 if _negative(rec.latitude, 0x02, rec.status) else 0)
        | (0x04 if _negative(rec.longitude, 0x04, rec.status) else 0)
    )


def encode_2016(rec: Any) -> bytes:
    q = rec.quality
    return _S2016.pack(
        _status(rec), _raw(rec.longitude, "longitude", q), _raw(rec.latitude, "latitude", q)
    )


def encode_2025(rec: Any) -> bytes:
    q = rec.quality
    cs = 0xFF if rec.coord_system is None else rec.coord_system
    return _S2025.pack(
        _status(rec), cs, _raw(rec.longitude, "longitude", q), _raw(rec.latitude, "latitude", q)
    )


CODEC_2016: Final = BlockCodec(Position, decode_2016, encode_2016)
CODEC_2025: Final = BlockCodec(Position, decode_2025, encode_2025)
