"""Stream framer: whole frames out of a TCP byte stream (sans-I/O, for a future gateway).

GB/T 32960 has no escaping, so ``##`` / ``$$`` may occur inside payloads, reads may split or
glue frames ("sticky" frames), and some terminals put stray bytes (e.g. 0x7E) between frames.
The framer follows the resynchronisation every serious implementation uses (§1.4): find a
start marker, read the 24-byte header, refuse a length over 65531, read N + 1 more bytes,
check the BCC; on any failure advance ONE byte and search again. Everything that is not part
of a good frame is reported as ``Skipped`` with the reason of its first byte, so nothing is
dropped silently.

Memory is bounded: a candidate frame is at most 65556 bytes, and bytes before the current
search position are released on every ``feed``.

Limit: a false start whose length field is large makes the framer wait for that many bytes
before it can reject it (a BCC needs the whole candidate), so a burst of garbage can delay the
next good frame by up to 64 KiB of input. That is inherent in the protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ingest.decoders.checksum import bcc
from ingest.decoders.envelope import HEADER_SIZE, MAX_DATA_LENGTH

__all__ = ["RawFrame", "Skipped", "StreamFramer"]

# Skip reasons: no start marker in these bytes; a candidate whose length field exceeds 65531;
# a candidate whose BCC failed; bytes left over when the stream ended.
NO_START: Final = "no_start"
BAD_LENGTH: Final = "bad_length"
BAD_CHECKSUM: Final = "bad_checksum"
INCOMPLETE: Final = "incomplete"
_PRIORITY: Final = {NO_START: 0, INCOMPLETE: 1, BAD_LENGTH: 2, BAD_CHECKSUM: 3}


@dataclass(frozen=True, slots=True)
class RawFrame:
    """A frame whose envelope and BCC are good, and its offset in the stream."""

    data: bytes
    offset: int


@dataclass(frozen=True, slots=True)
class Skipped:
    """Bytes that belong to no good frame, where they were, and why: ``no_start`` (no start
    marker), ``bad_length`` / ``bad_checksum`` (a candidate frame was rejected in the run),
    ``incomplete`` (the stream ended inside a candidate)."""

    data: bytes
    offset: int
    reason: str


class StreamFramer:
    """Feed chunks with ``feed``; it returns the frames and skipped runs they completed, in
    stream order. Call ``close`` at end of stream to flush what is left."""

    __slots__ = ("_buf", "_skip_reason", "_skip_start", "_start", "frames", "skipped_bytes")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._start = 0  # stream offset of _buf[0]
        self._skip_start: int | None = None  # buffer index where the current skipped run began
        self._skip_reason = NO_START
        self.frames = 0  # totals, for metrics and reports
        self.skipped_bytes = 0

    def feed(self, data: bytes | bytearray | memoryview) -> list[RawFrame | Skipped]:
        """Add bytes from the stream; return everything they completed, in stream order."""
        self._buf += data
        out: list[RawFrame | Skipped] = []
        buf = self._buf
        scan = 0
        while True:
            p = _find_start(buf, scan)
            if p < 0:
                # Keep a trailing "#" or "$": it may be the first half of a marker.
                keep = len(buf) - 1 if buf and buf[-1] in (0x23, 0x24) else len(buf)
                if keep > scan:
                    self._mark_skip(scan, NO_START)
                scan = keep
                break
            if p > scan:
                self._mark_skip(scan, NO_START)
            if len(buf) - p < HEADER_SIZE:
                scan = p
                break
            n = buf[p + 22] << 8 | buf[p + 23]
            if n > MAX_DATA_LENGTH:
                self._mark_skip(p, BAD_LENGTH)
                scan = p + 1
                continue
            end = p + HEADER_SIZE + n
            if len(buf) <= end:
                scan = p
                break
            if bcc(buf, p + 2, end) != buf[end]:
                self._mark_skip(p, BAD_CHECKSUM)
                scan = p + 1
                continue
            self._flush_skip(p, out)
            out.append(RawFrame(bytes(buf[p : end + 1]), self._start + p))
            self.frames += 1
            scan = end + 1
        # Bytes before ``scan`` can never start a frame: report and release them, so memory
        # stays bounded by one candidate frame (<= 65556 bytes) whatever the input.
        self._flush_skip(scan, out)
        del buf[:scan]
        self._start += scan
        return out

    def close(self) -> list[Skipped]:
        """End of stream: whatever is still buffered belongs to no frame."""
        out: list[RawFrame | Skipped] = []
        if self._buf:
            self._mark_skip(0, INCOMPLETE)
            self._flush_skip(len(self._buf), out)
        self._start += len(self._buf)
        self._buf.clear()
        return [s for s in out if isinstance(s, Skipped)]

    def _mark_skip(self, at: int, reason: str) -> None:
        if self._skip_start is None:
            self._skip_start = at
            self._skip_reason = reason
        elif _PRIORITY[reason] > _PRIORITY[self._skip_reason]:
            # A run that contains a rejected candidate frame says so, even if it began with
            # plain garbage: "a frame was lost here" is what an operator needs to know.
            self._skip_reason = reason

    def _flush_skip(self, upto: int, out: list[RawFrame | Skipped]) -> None:
        if self._skip_start is None:
            return
        data = bytes(self._buf[self._skip_start : upto])
        if data:
            out.append(Skipped(data, self._start + self._skip_start, self._skip_reason))
            self.skipped_bytes += len(data)
        self._skip_start = None


def _find_start(buf: bytearray, pos: int) -> int:
    a = buf.find(b"##", pos)
    b = buf.find(b"$$", pos)
    if a < 0:
        return b
    if b < 0:
        return a
    return min(a, b)
