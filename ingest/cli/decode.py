"""``nev-ingest decode``: GB/T 32960 frames in, one JSON object per frame out.

Input is hex, one frame per line (blank lines and lines starting with ``;`` are ignored;
spaces and a ``0x`` prefix are tolerated), or with ``--binary`` a raw byte stream (a TCP
capture) that the stream framer splits into frames. Files are read in order; no file or ``-``
means stdin. A rejected frame is written as ``{"error": {...}, "source": ...}`` in its place.

Exit status: 0 when every frame decoded, 1 when some were rejected (with ``--binary`` this
includes candidate frames the framer dropped for a bad length or BCC, or cut off at the end;
stray bytes between frames are counted but are no failure), 2 for usage errors. Counts go to
stderr.
"""

from __future__ import annotations

import argparse
import binascii
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from typing import IO, Any

import orjson

from ingest.decoders import FrameError, StreamFramer, decode_frame, error_to_dict, frame_to_dict
from ingest.decoders.framer import BAD_CHECKSUM, BAD_LENGTH, INCOMPLETE, NO_START, RawFrame
from ingest.errors import UserError

__all__ = ["register", "run"]

_CHUNK = 1 << 16
BAD_HEX = "bad_hex"  # a CLI-level reason: the line is not hex (not a FrameError reason)


def register(subparsers: Any) -> None:
    """Add the ``decode`` subcommand."""
    p = subparsers.add_parser(
        "decode",
        help="decode GB/T 32960 frames (hex lines or a binary capture) to JSON lines",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="input files (default: stdin)")
    p.add_argument(
        "--binary", action="store_true", help="input is a raw byte stream, not hex lines"
    )
    p.add_argument("--pretty", action="store_true", help="indent the JSON output")
    p.add_argument(
        "-v", "--verbose", action="store_true", help="report every skipped byte run on stderr"
    )
    p.set_defaults(func=run)


class _Stats:
    def __init__(self) -> None:
        self.decoded = 0
        self.rejected: Counter[str] = Counter()
        self.skipped_bytes = 0
        self.skipped_runs = 0
        self.lost_candidates = 0  # skipped runs in which a candidate frame was rejected


def run(args: argparse.Namespace) -> int:
    """Decode every input; return the exit status."""
    option = orjson.OPT_APPEND_NEWLINE | (orjson.OPT_INDENT_2 if args.pretty else 0)
    out = sys.stdout.buffer
    stats = _Stats()
    names = args.files or ["-"]
    try:
        for name in names:
            with ExitStack() as stack:
                stream = _open(name, stack)
                if args.binary:
                    _decode_binary(name, stream, out, option, stats, args.verbose)
                else:
                    _decode_hex(name, stream, out, option, stats)
        out.flush()
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, like other filters do.
        sys.stderr.close()
        return 0
    return _report(stats, args.binary)


def _open(name: str, stack: ExitStack) -> IO[bytes]:
    if name == "-":
        return sys.stdin.buffer
    try:
        return stack.enter_context(open(name, "rb"))
    except OSError as exc:
        raise UserError(f"cannot read {name}: {exc.strerror}; check the path") from None


def _emit(obj: dict[str, Any], out: IO[bytes], option: int) -> None:
    out.write(orjson.dumps(obj, option=option))


def _decode_one(data: bytes, source: str, out: IO[bytes], option: int, stats: _Stats) -> None:
    try:
        frame = decode_frame(data)
    except FrameError as exc:
        stats.rejected[exc.reason] += 1
        _emit({**error_to_dict(exc), "source": source}, out, option)
        return
    stats.decoded += 1
    _emit(frame_to_dict(frame), out, option)


def _hex_lines(stream: IO[bytes]) -> Iterator[tuple[int, str]]:
    for number, raw in enumerate(stream, 1):
        line = raw.decode("ascii", errors="replace").strip()
        if line and not line.startswith(";"):
            yield number, line


def _decode_hex(name: str, stream: IO[bytes], out: IO[bytes], option: int, s: _Stats) -> None:
    label = "<stdin>" if name == "-" else name
    for number, line in _hex_lines(stream):
        text = "".join(line.split())
        if text[:2].lower() == "0x":
            text = text[2:]
        try:
            data = binascii.unhexlify(text)
        except (binascii.Error, ValueError) as exc:
            s.rejected[BAD_HEX] += 1
            error = {"reason": BAD_HEX, "offset": 0, "detail": f"not hex: {exc}"}
            _emit({"error": error, "source": f"{label}:{number}"}, out, option)
            continue
        _decode_one(data, f"{label}:{number}", out, option, s)


def _decode_binary(
    name: str, stream: IO[bytes], out: IO[bytes], option: int, s: _Stats, verbose: bool
) -> None:
    label = "<stdin>" if name == "-" else name
    framer = StreamFramer()

    def handle(events: list[Any]) -> None:
        for ev in events:
            if isinstance(ev, RawFrame):
                _decode_one(ev.data, f"{label}@{ev.offset}", out, option, s)
            else:
                s.skipped_bytes += len(ev.data)
                s.skipped_runs += 1
                if ev.reason in (BAD_CHECKSUM, BAD_LENGTH, INCOMPLETE):
                    s.lost_candidates += 1
                if verbose or ev.reason != NO_START:
                    print(
                        f"nev-ingest decode: {label}: skipped {len(ev.data)} bytes at offset "
                        f"{ev.offset} ({ev.reason})",
                        file=sys.stderr,
                    )

    while chunk := stream.read(_CHUNK):
        handle(framer.feed(chunk))
    handle(framer.close())


def _report(stats: _Stats, binary: bool) -> int:
    rejected = sum(stats.rejected.values())
    parts = [f"{stats.decoded + rejected} frames", f"{stats.decoded} decoded"]
    if rejected:
        reasons = ", ".join(f"{r}: {n}" for r, n in sorted(stats.rejected.items()))
        parts.append(f"{rejected} rejected ({reasons})")
    if binary:
        parts.append(
            f"{stats.skipped_bytes} bytes skipped in {stats.skipped_runs} runs "
            f"({stats.lost_candidates} with a rejected or cut-off frame)"
        )
    # Plain garbage between frames (a stray 0x7E) is reported but is no failure; a candidate
    # frame that failed its length or BCC check is a rejected frame.
    failed = rejected > 0 or stats.lost_candidates > 0
    hint = '; rejected frames are the {"error": ...} lines on stdout' if rejected else ""
    print(f"nev-ingest decode: {', '.join(parts)}{hint}", file=sys.stderr)
    return 1 if failed else 0
