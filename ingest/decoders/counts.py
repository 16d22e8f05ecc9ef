"""Counts that disagree with the data: a motor or pack count larger than the entries sent.

The drive-motor and cell-voltage/temperature blocks have no length, only an entry count, so a
count of 3 over two motors makes the walk read the next block's bytes as a third motor and go
on misaligned: invented rows, then usually a stop (a ``partial`` frame). Nothing inside the
block can tell; the rest of the data unit can. So when a walk stops early, each counted block
before the stop (latest first) is tried with fewer entries: if the walk from that entry
boundary consumes the rest of the data unit (or reaches the 2025 signature that ends it), the
count is what was wrong, and the frame is rejected with ``count_mismatch`` at the count byte
rather than stored with rows read out of another block. A stop that no smaller count explains
stays a partial frame (a vendor block of unknown length, §3.12).

Both decoders call ``find_miscount`` with their own walk as ``clean``, so they agree whenever
their walks agree (tests/unit/test_fast_agreement.py). Runs only for frames whose walk stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from ingest.decoders.envelope import EDITION_2016, EDITION_2025
from ingest.decoders.errors import COUNT_MISMATCH, FrameError

__all__ = ["COUNTED", "MAX_TRIES", "entry_bounds", "find_miscount"]

# The blocks whose entries become rows: drive motors and the RESS voltage / temperature blocks.
COUNTED: Final = {
    EDITION_2016: {0x02: "drive motors", 0x08: "RESS voltages", 0x09: "RESS temperatures"},
    EDITION_2025: {0x02: "drive motors", 0x07: "cell voltages", 0x08: "temperatures"},
}
# Each try is one walk of the rest of the unit: a bound, so that a hostile frame full of
# counted blocks costs a few walks, not blocks x entries of them.
MAX_TRIES: Final = 32
_MOTOR: Final = {EDITION_2016: 12, EDITION_2025: 10}


def _entry_size(buf: bytes, pos: int, end: int, edition: int, t: int) -> int | None:
    """Bytes of the entry at ``pos`` of a block of type ``t``; None when its header is cut."""
    if t == 0x02:
        return _MOTOR[edition]
    if edition == EDITION_2016 and t == 0x08:  # header 10 bytes, page count m BYTE at +9
        if pos + 10 > end:
            return None
        m = buf[pos + 9]
        return 10 + (0 if m >= 0xFE else 2 * m)
    if edition == EDITION_2025 and t == 0x07:  # header 7 bytes, unit count N WORD at +5
        if pos + 7 > end:
            return None
        n = buf[pos + 5] << 8 | buf[pos + 6]
        return 7 + (0 if n >= 0xFFFE else 2 * n)
    if pos + 3 > end:  # temperatures: pack BYTE, probe count N WORD, N bytes
        return None
    n = buf[pos + 1] << 8 | buf[pos + 2]
    return 3 + (0 if n >= 0xFFFE else n)


def entry_bounds(buf: bytes, at: int, end: int, edition: int) -> list[int]:
    """Where the counted block whose type byte is at ``at`` would end with 0, 1, ... fewer
    entries than its count says (only the boundaries inside the data unit)."""
    if at + 2 > end:
        return []
    t, n = buf[at], buf[at + 1]
    if n >= 0xFE:  # a sentinel count has no list: nothing to recount
        return []
    out: list[int] = []
    pos = at + 2
    for _ in range(n):
        if pos > end:
            break
        out.append(pos)
        size = _entry_size(buf, pos, end, edition, t)
        if size is None:
            break
        pos += size
    return out


def find_miscount(
    buf: bytes,
    counted: Sequence[int],
    end: int,
    edition: int,
    clean: Callable[[int], bool],
) -> FrameError | None:
    """The ``count_mismatch`` error of a stopped walk, or None when no count explains the stop.

    ``counted`` are the type-byte offsets of the counted blocks the walk met (in order);
    ``clean(pos)`` says whether a walk from ``pos`` consumes the rest of the data unit.
    """
    tries = MAX_TRIES
    names = COUNTED[edition]
    for at in reversed(counted):
        bounds = entry_bounds(buf, at, end, edition)
        for k in range(len(bounds) - 1, -1, -1):
            if tries == 0:
                return None
            tries -= 1
            if clean(bounds[k]):
                n = buf[at + 1]
                return FrameError(
                    COUNT_MISMATCH,
                    at + 1,
                    f"{names[buf[at]]} (type {buf[at]:#04x}): count {n}, but the blocks after "
                    f"it line up after {k} entries",
                )
    return None
