"""Custom (user-defined) blocks: types 0x80..0xFE of both editions (2016 Table 19, 2025
Table 27): ``length WORD (1..65531) + length bytes``, kept opaque.

The WORD length is the only way to step over a block whose content is unknown. Some fleets
send 0x81/0x82 blocks without it (Shanghai buses); when the length overruns the data unit the
frame walker stops and keeps the rest as an opaque tail instead of guessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

from ingest.decoders.fields import Record

__all__ = ["CUSTOM_TYPES", "CustomBlock", "encode_custom"]

CUSTOM_TYPES: Final = range(0x80, 0xFF)


@dataclass(frozen=True, slots=True)
class CustomBlock(Record):
    """An opaque user-defined block: its type code and its bytes (without the length)."""

    name: ClassVar[str] = "custom"
    type: int = 0x80
    data: bytes = b""


def encode_custom(rec: CustomBlock) -> bytes:
    """Type byte, WORD length and data."""
    if rec.type not in CUSTOM_TYPES:
        raise ValueError(f"custom block type {rec.type:#04x} is outside 0x80..0xFE")
    if len(rec.data) > 65531:
        raise ValueError(f"custom block of {len(rec.data)} bytes exceeds 65531")
    return bytes((rec.type,)) + len(rec.data).to_bytes(2, "big") + rec.data
