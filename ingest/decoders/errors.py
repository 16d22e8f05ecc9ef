"""The one exception the decoders raise: ``FrameError``, with a stable machine-readable reason."""

from __future__ import annotations

from typing import Final

# Stable reasons: storage, the dead-letter topic, metrics labels and tools depend on these strings.
BAD_START: Final = "bad_start"  # first two bytes are neither "##" (2016) nor "$$" (2025)
TRUNCATED: Final = "truncated"  # fewer bytes than the header or a field needs
LENGTH_MISMATCH: Final = "length_mismatch"  # frame size disagrees with the data-unit length
BAD_CHECKSUM: Final = "bad_checksum"  # BCC (XOR of bytes 2..end-1) differs from the last byte
UNKNOWN_COMMAND: Final = "unknown_command"  # command byte the decoder has no layout for
BAD_FIELD: Final = "bad_field"  # a field's value makes the rest undecodable (count overrun, ...)
BAD_IDENTITY: Final = (
    "bad_identity"  # the 17-byte unique ID is no VIN / printable code (identity.py)
)
COUNT_MISMATCH: Final = (
    "count_mismatch"  # a motor / pack count disagrees with the blocks (counts.py)
)

REASONS: Final = frozenset(
    {
        BAD_START,
        TRUNCATED,
        LENGTH_MISMATCH,
        BAD_CHECKSUM,
        UNKNOWN_COMMAND,
        BAD_FIELD,
        BAD_IDENTITY,
        COUNT_MISMATCH,
    }
)


class FrameError(ValueError):
    """A frame the decoder rejects. ``reason`` is one of ``REASONS``; ``offset`` is the byte
    offset in the frame where decoding failed; ``detail`` is for people."""

    __slots__ = ("detail", "offset", "reason")

    def __init__(self, reason: str, offset: int, detail: str = "") -> None:
        super().__init__(f"{reason} at byte {offset}" + (f": {detail}" if detail else ""))
        self.reason = reason
        self.offset = offset
        self.detail = detail
