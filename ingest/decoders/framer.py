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

A false start (a ``##`` in garbage) may declare a large length; waiting for that many bytes
would hold every later frame back. So while a candidate is incomplete, the framer looks for a
complete, checked frame behind it in what is already buffered, and if there is one, drops the
candidate (a genuine frame's bytes cannot contain another complete frame, short of a frame
nested in a payload with a matching BCC). At ``close`` an incomplete candidate is dead and
the bytes behind it are still searched.

``StreamFramer`` is the readable reference; ``NativeStreamFramer`` is the same framer with the
scan in native code (native/src/framer.rs), which the gateway uses: the Python scan cost ~9 µs of
the gateway's ~24 µs per frame. tests/unit/test_native_framer.py proves the two agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from ingest.decoders.checksum import bcc
from ingest.decoders.envelope import HEADER_SIZE, MAX_DATA_LENGTH
from ingest.decoders.native import nev_native

__all__ = ["NativeStreamFramer", "RawFrame", "Skipped", "StreamFramer"]

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
        scan = self._scan(out, final=False)
        # Bytes before ``scan`` can never start a frame: report and release them, so memory
        # stays bounded by one candidate frame (<= 65556 bytes) whatever the input.
        self._flush_skip(scan, out)
        del self._buf[:scan]
        self._start += scan
        return out

    def close(self) -> list[RawFrame | Skipped]:
        """End of stream: a candidate still waiting for bytes is dead; frames behind it are
        still found, and whatever is left is reported."""
        out: list[RawFrame | Skipped] = []
        self._scan(out, final=True)
        self._flush_skip(len(self._buf), out)
        self._start += len(self._buf)
        self._buf.clear()
        return out

    def _scan(self, out: list[RawFrame | Skipped], final: bool) -> int:
        buf = self._buf
        scan = 0
        while True:
            p = _find_start(buf, scan)
            if p < 0:
                # Keep a trailing "#" or "$" not yet taken (a BCC is): it may start a marker.
                half = not final and len(buf) > scan and buf[-1] in (0x23, 0x24)
                keep = len(buf) - 1 if half else len(buf)
                if keep > scan:
                    self._mark_skip(scan, NO_START)
                return keep
            if p > scan:
                self._mark_skip(scan, NO_START)
            status, end = _candidate(buf, p)
            if status is None:
                self._flush_skip(p, out)
                out.append(RawFrame(bytes(buf[p : end + 1]), self._start + p))
                self.frames += 1
                scan = end + 1
            elif status == INCOMPLETE:
                if final:
                    self._mark_skip(p, INCOMPLETE)
                    scan = p + 1
                    continue
                # A false start with a large length would hold every later frame back until
                # that many bytes arrived. If a complete, checked frame already follows, the
                # candidate cannot be genuine (its bytes would contain that frame): drop it.
                q = _next_complete(buf, p + 1)
                if q is None:
                    return p
                self._mark_skip(p, BAD_LENGTH)
                scan = q
            else:
                self._mark_skip(p, status)
                scan = p + 1

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


def _candidate(buf: bytearray, p: int) -> tuple[str | None, int]:
    """Check the candidate frame at ``p``: (None, BCC offset) when good, else a reason."""
    if len(buf) - p < HEADER_SIZE:
        return INCOMPLETE, 0
    n = buf[p + 22] << 8 | buf[p + 23]
    if n > MAX_DATA_LENGTH:
        return BAD_LENGTH, 0
    end = p + HEADER_SIZE + n
    if len(buf) <= end:
        return INCOMPLETE, 0
    if bcc(buf, p + 2, end) != buf[end]:
        return BAD_CHECKSUM, 0
    return None, end


def _next_complete(buf: bytearray, pos: int) -> int | None:
    """The first marker at or after ``pos`` that starts a complete, checked frame."""
    q = _find_start(buf, pos)
    while q >= 0:
        if _candidate(buf, q)[0] is None:
            return q
        q = _find_start(buf, q + 1)
    return None


# One pass for either marker: two ``find`` calls would each scan to the end of the buffer when
# their marker is absent, which made resynchronising on marker-dense garbage quadratic.
_START: Final = re.compile(rb"##|\$\$")


def _find_start(buf: bytearray, pos: int) -> int:
    m = _START.search(buf, pos)
    return -1 if m is None else m.start()


# The native scan's span kinds (native/src/framer.rs ``Kind``): 0 is a frame.
_KINDS: Final = ("frame", NO_START, BAD_LENGTH, BAD_CHECKSUM, INCOMPLETE)
_frame_spans: Final = nev_native.frame_spans


class NativeStreamFramer:
    """``StreamFramer`` with the scan in native code: the same frames and skipped runs for
    any input and any split of it. ``feed_frames`` is the gateway's call: good frames as
    plain ``bytes`` (no ``RawFrame`` per frame), skipped runs as ``Skipped``."""

    __slots__ = ("_rest", "_start", "frames", "skipped_bytes")

    def __init__(self) -> None:
        # The bytes not yet covered by a frame or a skipped run: at most one candidate frame
        # (<= 65556 bytes) or a trailing half marker, as in ``StreamFramer``.
        self._rest = b""
        self._start = 0  # stream offset of _rest[0]
        self.frames = 0
        self.skipped_bytes = 0

    def feed(self, data: bytes | bytearray | memoryview) -> list[RawFrame | Skipped]:
        """Add bytes from the stream; return everything they completed, in stream order."""
        return self._located(self._scan(data, last=False))

    def feed_frames(self, data: bytes | bytearray | memoryview) -> list[bytes | Skipped]:
        """Like ``feed``, with each good frame as its bytes (the gateway's hot path)."""
        buf, spans, start = self._scan(data, last=False)
        out: list[bytes | Skipped] = []
        for s, e, kind in spans:
            if kind == 0:
                out.append(buf[s:e])
            else:
                out.append(Skipped(buf[s:e], start + s, _KINDS[kind]))
                self.skipped_bytes += e - s
        return out

    def close(self) -> list[RawFrame | Skipped]:
        """End of stream: as ``StreamFramer.close``."""
        return self._located(self._scan(b"", last=True))

    def _scan(
        self, data: bytes | bytearray | memoryview, last: bool
    ) -> tuple[bytes, list[tuple[int, int, int]], int]:
        chunk = data if type(data) is bytes else bytes(data)
        buf = self._rest + chunk if self._rest else chunk
        consumed, spans = _frame_spans(buf, last)
        # Keep only what no span covers: at most one candidate frame or a half marker.
        self._rest = buf[consumed:] if consumed < len(buf) else b""
        start = self._start
        self._start = start + consumed
        self.frames += sum(1 for span in spans if span[2] == 0)
        return buf, spans, start

    def _located(
        self, scanned: tuple[bytes, list[tuple[int, int, int]], int]
    ) -> list[RawFrame | Skipped]:
        buf, spans, start = scanned
        out: list[RawFrame | Skipped] = []
        for s, e, kind in spans:
            if kind == 0:
                out.append(RawFrame(buf[s:e], start + s))
            else:
                out.append(Skipped(buf[s:e], start + s, _KINDS[kind]))
                self.skipped_bytes += e - s
        return out
