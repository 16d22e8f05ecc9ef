"""The BCC check code of GB/T 32960.3 (§6.2 of both editions): XOR of the frame's bytes.

The check covers the command flag (offset 2) through the last data-unit byte. A byte loop in
Python costs as much as decoding the whole frame (shared/MEASUREMENTS.md), so the range is read
as one big integer and folded in halves: XOR-ing the high half onto the low half keeps the XOR of
all byte columns, and each fold is one C-level operation over the integer's digits.
"""

from __future__ import annotations

__all__ = ["bcc"]

_Buffer = bytes | bytearray | memoryview

# Low-half masks for folds of frames up to ~1 KiB (a typical real-time frame is ~330 bytes):
# building the mask costs as much as the fold itself. ~130 KB of ints; larger frames compute it.
_MASK_CACHE = 512
_MASKS: tuple[int, ...] = tuple((1 << (h << 3)) - 1 for h in range(_MASK_CACHE))


def bcc(buf: _Buffer, start: int, end: int) -> int:
    """XOR of ``buf[start:end]`` as an int 0..255 (0 for an empty range)."""
    n = end - start
    if n <= 0:
        return 0
    x = int.from_bytes(buf[start:end], "big")
    # Fold the n-byte integer onto its low ceil(n/2) bytes until one byte is left. The high part
    # is never longer than the low one, so no byte column is lost.
    while n > 8:
        half = (n + 1) >> 1
        bits = half << 3
        mask = _MASKS[half] if half < _MASK_CACHE else (1 << bits) - 1
        x = (x >> bits) ^ (x & mask)
        n = half
    # Below 8 bytes the value fits a machine word; fixed shifts are cheaper than computing masks.
    x ^= x >> 32
    x ^= x >> 16
    x ^= x >> 8
    return x & 0xFF
