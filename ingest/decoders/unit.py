"""Pieces of a decoded data unit that the vehicle, pack and charger frames share.

The three profiles differ in identity rules, commands and bodies, but not in how a frame's
time is read back, how an opaque (encrypted / custom) data unit is kept, or how the result of
``realtime.walk_blocks`` lands in a frame's fields: those live here, once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ingest.decoders.errors import FrameError
from ingest.decoders.fields import TIME, decode_time, epoch_ms
from ingest.decoders.realtime import Walk

__all__ = ["FrameTimes", "opaque_fields", "optional_time", "walk_fields"]


class FrameTimes:
    """Mixin of the frame records: ``ts_ms`` and ``encrypted`` from ``time`` / ``encryption``."""

    __slots__ = ()
    time: datetime | None
    encryption: int

    @property
    def ts_ms(self) -> int | None:
        """The frame time as epoch milliseconds, or ``None`` for commands without a time."""
        return None if self.time is None else epoch_ms(self.time)

    @property
    def encrypted(self) -> bool:
        """The data unit is not plain text (0x01): ciphertext, kept opaque in ``tail``."""
        return self.encryption != 0x01


def optional_time(buf: bytes, start: int, end: int) -> tuple[datetime | None, int]:
    """The 6-byte time at ``start`` when the unit holds one that decodes, and where the rest
    begins; otherwise ``(None, start)`` (a response may carry anything after its header)."""
    if end - start >= TIME.size:
        try:
            return decode_time(buf, start), start + TIME.size
        except FrameError:
            pass
    return None, start


def opaque_fields(buf: bytes, start: int, end: int, reason: str) -> dict[str, Any]:
    """The tail fields of a data unit kept whole (encrypted, custom command)."""
    tail = buf[start:end] or None
    return {"tail": tail, "tail_reason": reason if tail else None, "tail_offset": start}


def walk_fields(buf: bytes, walk: Walk) -> dict[str, Any]:
    """The frame fields of a block walk: blocks, signature and the tail where it stopped."""
    tail = None if walk.tail_start is None else buf[walk.tail_start : walk.tail_end]
    return {
        "blocks": walk.blocks,
        "signature": walk.signature,
        "tail": tail,
        "tail_reason": walk.tail_reason,
        "tail_offset": walk.tail_start,
        "tail_detail": walk.tail_detail,
    }
