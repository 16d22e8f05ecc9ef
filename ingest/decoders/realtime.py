"""The block walk of a real-time (0x02) / reissue (0x03) data unit: 2016 Table 7, 2025 Table 7.

After the 6-byte time: ``type BYTE + body``, repeated to the end (2016), or to the 0xFF
signature marker (2025). There is no block count and no per-block length except for the
custom types, so the walk must know every type it passes. Blocks may repeat and come in any
order (real Dongfeng frames put 0x09 before 0x08), so the result is a list, not a struct.

When the walk cannot go on -- a type whose length cannot be known, a custom WORD length that
overruns the data unit, a known block whose counts overrun it -- it stops and keeps what it
decoded; the rest of the unit is the opaque tail with a reason (never a guess). In 2025 the
signature is then still searched for backwards from the end (§3.12 step 3).
"""

from __future__ import annotations

from typing import Final, NamedTuple

from ingest.decoders.blocks.custom import CustomBlock
from ingest.decoders.counts import COUNTED
from ingest.decoders.envelope import EDITION_2025
from ingest.decoders.errors import OVER_LIMIT, FrameError
from ingest.decoders.fields import Record
from ingest.decoders.registry import Registry
from ingest.decoders.signature import (
    SIGNATURE_MARKER,
    Signature,
    decode_signature,
    find_signature,
)

__all__ = ["BLOCKS_PER_FRAME", "TAIL_REASONS", "Walk", "too_many_blocks", "walk_blocks"]

# The input limit ``blocks_per_frame`` (docs/security.md, "Input limits"; repeated as
# ingest.config.limits.BLOCKS_PER_FRAME and native/src/error.rs, tests keep them equal): the most
# information blocks one data unit may hold. Real frames carry under 20; a 64 KiB unit of tiny
# blocks (5-byte engine blocks, 3-byte empty custom blocks) would be thousands. The walk rejects
# the frame at the first block decoded over it (the signature and a tail do not count).
BLOCKS_PER_FRAME: Final = 64

# Why a data unit has an opaque tail (``Frame.tail_reason``). The walk's own reasons, plus
# the FrameError reasons of a block that failed ("truncated", "bad_field"), plus the frame's:
# "encrypted", "custom_command", "trailing_bytes", "unknown_param", "unknown_param_length".
UNKNOWN_TYPE: Final = "unknown_type"  # a type of undefined length (2016 0x0A-0x7F, 2025 ...)
CUSTOM_OVERRUN: Final = "custom_overrun"  # a 0x80-0xFE block whose WORD length overruns
BAD_SIGNATURE: Final = "bad_signature"  # 2025: a 0xFF marker whose Table 8 does not fit
TAIL_REASONS: Final = frozenset(
    {
        UNKNOWN_TYPE,
        CUSTOM_OVERRUN,
        BAD_SIGNATURE,
        "truncated",
        "bad_field",
        "count_mismatch",  # a response echoing data whose count disagrees (counts.py)
        "encrypted",
        "custom_command",
        "trailing_bytes",
        "unknown_param",
        "unknown_param_length",
    }
)


class Walk(NamedTuple):
    """What the walk found; ``tail_start`` is ``None`` when it consumed the whole unit."""

    blocks: tuple[Record, ...]
    signature: Signature | None
    tail_start: int | None
    tail_end: int
    tail_reason: str | None
    tail_detail: str
    counted: tuple[int, ...] = ()  # type-byte offsets of the counted blocks met (counts.py)


def _stop(
    buf: bytes,
    blocks: list[Record],
    pos: int,
    end: int,
    du_start: int,
    edition: int,
    reason: str,
    detail: str,
    counted: list[int],
) -> Walk:
    signature = None
    tail_end = end
    if edition == EDITION_2025:
        p = find_signature(buf, pos, end)
        if p is not None:
            signature, _ = decode_signature(buf, p + 1, end, du_start, p)
            tail_end = p
    if tail_end == pos:  # e.g. a bad marker right before a good signature: nothing opaque
        return Walk(tuple(blocks), signature, None, end, None, "")
    return Walk(tuple(blocks), signature, pos, tail_end, reason, detail, tuple(counted))


def too_many_blocks(at: int) -> FrameError:
    """The ``over_limit`` reject of a data unit whose block at ``at`` is one over
    ``BLOCKS_PER_FRAME`` (the native walks' text, native/src/error.rs)."""
    return FrameError(
        OVER_LIMIT,
        at,
        f"more than {BLOCKS_PER_FRAME} information blocks is over the limit blocks_per_frame "
        f"({BLOCKS_PER_FRAME}): real frames carry under 20 (docs/security.md, Input limits)",
    )


def walk_blocks(
    buf: bytes, pos: int, end: int, du_start: int, edition: int, registry: Registry
) -> Walk:
    """Decode the blocks of ``buf[pos:end]`` (after the time) for ``edition``. Raises
    ``FrameError`` only over ``BLOCKS_PER_FRAME`` (``over_limit``); a block it cannot walk
    ends the walk with a tail."""
    blocks: list[Record] = []
    counted: list[int] = []
    is_counted = COUNTED[edition].__contains__
    get = registry.get
    while pos < end:
        start = pos
        t = buf[pos]
        codec = get(edition, t)
        if codec is not None:
            if is_counted(t):
                counted.append(pos)
            try:
                rec, pos = codec.decode(buf, pos + 1, end)
            except FrameError as exc:
                return _stop(
                    buf, blocks, pos, end, du_start, edition, exc.reason, exc.detail, counted
                )
            blocks.append(rec)
            if len(blocks) > BLOCKS_PER_FRAME:  # counted once decoded: not a tail's block
                raise too_many_blocks(start)
            continue
        if t == SIGNATURE_MARKER and edition == EDITION_2025:
            try:
                sig, after = decode_signature(buf, pos + 1, end, du_start, pos)
            except FrameError as exc:
                detail = exc.detail
            else:
                if after == end:
                    return Walk(tuple(blocks), sig, None, end, None, "")
                detail = f"signature ends at {after}, the data unit at {end}"
            return _stop(buf, blocks, pos, end, du_start, edition, BAD_SIGNATURE, detail, counted)
        if 0x80 <= t <= 0xFE:
            size = (buf[pos + 1] << 8 | buf[pos + 2]) if pos + 3 <= end else -1
            if size < 0 or pos + 3 + size > end:
                detail = f"custom type {t:#04x}: length {size} overruns the data unit"
                return _stop(
                    buf, blocks, pos, end, du_start, edition, CUSTOM_OVERRUN, detail, counted
                )
            blocks.append(CustomBlock(t, buf[pos + 3 : pos + 3 + size]))
            if len(blocks) > BLOCKS_PER_FRAME:
                raise too_many_blocks(start)
            pos += 3 + size
            continue
        detail = f"type {t:#04x} has no defined length in the {edition} edition"
        return _stop(buf, blocks, pos, end, du_start, edition, UNKNOWN_TYPE, detail, counted)
    return Walk(tuple(blocks), None, None, end, None, "")
