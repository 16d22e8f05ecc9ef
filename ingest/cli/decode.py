"""``nev-ingest decode``: GB/T 32960 frames (or T/CEC 102 pushes) in, one JSON object each out.

``--profile`` picks the decoder: ``vehicle`` (default; the structured frame,
docs/protocols/gbt32960.md), ``battery`` (the pack profile's structured frame,
docs/protocols/battery.md), ``charger`` (the charger profile's rows by table, what the
pipeline stores) or ``tcec`` (T/CEC 102 pushes, the same rows; docs/protocols/charger.md).

Frames are hex, one frame per line (blank lines and lines starting with ``;`` are ignored;
spaces and a ``0x`` prefix are tolerated), or with ``--binary`` a raw byte stream (a TCP
capture) that the stream framer splits into frames. Files are read in order; no file or ``-``
means stdin. With ``--profile tcec`` each line is one JSON object: the push's business JSON
itself (interface, operator, TimeStamp and Seq from ``--interface``, ``--operator``,
``--timestamp`` and ``--seq``), or ``{"interface": ..., "operator_id": ..., "timestamp": ...,
"seq": ..., "data": {...}}`` whose fields take the place of the flags. A line carries no
Kafka headers: the Seq (the ``tcec_seq`` header the gateway sets) is read from ``--seq`` or
the line's ``"seq"`` only. The lines that take both TimeStamp and Seq from the flags are
numbered, as a gateway numbers one second's pushes and as ``rules test`` does: the first gets
``--seq`` (0001 when not given), each next one (across the files) the Seq after; past 9999
give them in the wrapped form, each with its own timestamp and seq. A wrapped line with a
timestamp and no Seq has its TimeStamp as its time, as the pipeline stores a record that has
no ``tcec_seq``. Each push's output adds ``"pushed_at"``: TimeStamp
+ Seq microseconds, the time its status and station rows are stored with (the rows' ``ts``
show it too; a charge status is at its EndTime + Seq microseconds, an order at its own
EndTime); a line with no TimeStamp (neither ``--timestamp`` nor ``"timestamp"``) is pushed
now, to the whole second. A rejected frame or push is
written as ``{"error": {...}, "source": ...}`` in its place.

Exit status: 0 when every frame decoded, 1 when some were rejected (with ``--binary`` this
includes candidate frames the framer dropped for a bad length or BCC, or cut off at the end;
stray bytes between frames are counted but are no failure, unless the input held bytes and not
one frame: then it was no capture, e.g. hex text given with ``--binary``), 2 for usage errors.
Counts go to stderr.
"""

from __future__ import annotations

import argparse
import binascii
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import IO, Any

import orjson

from contract.charger import ChargerRows
from ingest.cli.output import discard_stdout, note
from ingest.cli.tcec_lines import (
    FlagSeqs,
    Push,
    add_envelope_arguments,
    check_envelope_arguments,
    decode_push,
)
from ingest.decoders import FrameError, decode_frame, error_to_dict, frame_to_dict
from ingest.decoders.battery import decode_pack_frame, pack_frame_to_dict
from ingest.decoders.charger import (
    charger_rows_to_dict,
    decode_charger_rows,
    decode_tcec,
    push_time,
)
from ingest.decoders.errors import BAD_JSON
from ingest.decoders.framer import (
    BAD_CHECKSUM,
    BAD_LENGTH,
    INCOMPLETE,
    NO_START,
    NativeStreamFramer,
    RawFrame,
)
from ingest.decoders.jsonview import fast_frame_json
from ingest.errors import UserError

__all__ = ["register", "run"]

_CHUNK = 1 << 16
BAD_HEX = "bad_hex"  # a CLI-level reason: the line is not hex (not a FrameError reason)

# The binary profiles: frame bytes -> the JSON object printed; each raises FrameError only.
_Decoder = Callable[[bytes], dict[str, Any]]
PROFILES: dict[str, _Decoder] = {
    "vehicle": lambda data: frame_to_dict(decode_frame(data)),
    "battery": lambda data: pack_frame_to_dict(decode_pack_frame(data)),
    "charger": lambda data: charger_rows_to_dict(decode_charger_rows(data)),
}
# Profiles whose common frames have their JSON written natively (the same bytes as the
# profile's decoder + orjson; None: use the decoder). Not with --pretty (orjson indents).
_Fast = Callable[[bytes], bytes | None]
FAST: dict[str, _Fast] = {"vehicle": fast_frame_json}
TCEC = "tcec"


def register(subparsers: Any) -> None:
    """Add the ``decode`` subcommand."""
    p = subparsers.add_parser(
        "decode",
        help="decode GB/T 32960 frames (hex lines, a binary capture) or T/CEC pushes to JSON",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="input files (default: stdin)")
    p.add_argument(
        "--binary", action="store_true", help="input is a raw byte stream, not hex lines"
    )
    p.add_argument(
        "--profile",
        choices=[*PROFILES, TCEC],
        default="vehicle",
        help="the decoder: vehicle (default), charger, battery frames; tcec JSON pushes",
    )
    add_envelope_arguments(p, "tcec", "default: now")
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
        self.fast: _Fast | None = None


def run(args: argparse.Namespace) -> int:
    """Decode every input; return the exit status."""
    option = orjson.OPT_APPEND_NEWLINE | (orjson.OPT_INDENT_2 if args.pretty else 0)
    out = sys.stdout.buffer
    stats = _Stats()
    names = args.files or ["-"]
    tcec = args.profile == TCEC
    if tcec and args.binary:
        raise UserError("--binary reads GB/T 32960 frames; drop it for --profile tcec (JSON lines)")
    check_envelope_arguments(args, tcec, "--profile tcec")
    decode = None if tcec else PROFILES[args.profile]
    stats.fast = None if args.pretty else FAST.get(args.profile)
    # One numbering for all files: they share --timestamp's second (ingest.cli.tcec_lines).
    seqs = FlagSeqs(args.seq)
    # A reader that goes away (``| head``) while frames are written ends the command quietly
    # (ingest.cli.main); one that is gone by the last flush leaves the counts and the status.
    for name in names:
        with ExitStack() as stack:
            stream = _open(name, stack)
            if decode is None:
                _decode_tcec(name, stream, out, option, stats, (args, seqs))
            elif args.binary:
                _decode_binary(name, stream, out, option, stats, args.verbose, decode)
            else:
                _decode_hex(name, stream, out, option, stats, decode)
    try:
        out.flush()
    except BrokenPipeError:
        discard_stdout()
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


def _decode_one(
    data: bytes, source: str, out: IO[bytes], option: int, stats: _Stats, decode: _Decoder
) -> None:
    if stats.fast is not None:
        fast = stats.fast(data)
        if fast is not None:
            stats.decoded += 1
            out.write(fast + b"\n")
            return
    try:
        obj = decode(data)
    except FrameError as exc:
        stats.rejected[exc.reason] += 1
        _emit({**error_to_dict(exc), "source": source}, out, option)
        return
    stats.decoded += 1
    _emit(obj, out, option)


def _hex_lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes | str]]:
    """Numbered lines to decode: a bare hex line as its bytes (the common case, kept out of
    str), any other as stripped text; blank lines and ``;`` comments are dropped."""
    for number, raw in enumerate(stream, 1):
        line = raw.strip()
        if line and _BARE_HEX.fullmatch(line):
            yield number, line
            continue
        text = raw.decode("ascii", errors="replace").strip()
        if text and not text.startswith(";"):
            yield number, text


_BARE_HEX = re.compile(rb"[0-9A-Fa-f]+")


def _decode_hex(
    name: str, stream: IO[bytes], out: IO[bytes], option: int, s: _Stats, decode: _Decoder
) -> None:
    label = "<stdin>" if name == "-" else name
    for number, line in _hex_lines(stream):
        text = line
        if isinstance(text, str):  # spaces, a 0x prefix, or not hex at all
            text = "".join(text.split())
            if text[:2].lower() == "0x":
                text = text[2:]
        try:
            data = binascii.unhexlify(text)
        except (binascii.Error, ValueError) as exc:
            s.rejected[BAD_HEX] += 1
            error = {"reason": BAD_HEX, "offset": 0, "detail": f"not hex: {exc}"}
            _emit({"error": error, "source": f"{label}:{number}"}, out, option)
            continue
        _decode_one(data, f"{label}:{number}", out, option, s, decode)


def _decode_binary(
    name: str,
    stream: IO[bytes],
    out: IO[bytes],
    option: int,
    s: _Stats,
    verbose: bool,
    decode: _Decoder,
) -> None:
    label = "<stdin>" if name == "-" else name
    # The native scan: the same frames and skipped runs (tests/unit/test_native_framer.py),
    # linear on crafted captures where the reference's search behind a false start is not.
    framer = NativeStreamFramer()

    def handle(events: list[Any]) -> None:
        for ev in events:
            if isinstance(ev, RawFrame):
                _decode_one(ev.data, f"{label}@{ev.offset}", out, option, s, decode)
            else:
                s.skipped_bytes += len(ev.data)
                s.skipped_runs += 1
                if ev.reason in (BAD_CHECKSUM, BAD_LENGTH, INCOMPLETE):
                    s.lost_candidates += 1
                if verbose or ev.reason != NO_START:
                    note(
                        f"nev-ingest decode: {label}: skipped {len(ev.data)} bytes at offset "
                        f"{ev.offset} ({ev.reason})"
                    )

    while chunk := stream.read(_CHUNK):
        handle(framer.feed(chunk))
    handle(framer.close())


def _decode_tcec(
    name: str,
    stream: IO[bytes],
    out: IO[bytes],
    option: int,
    s: _Stats,
    envelope: tuple[argparse.Namespace, FlagSeqs],
) -> None:
    label = "<stdin>" if name == "-" else name
    for number, raw in enumerate(stream, 1):
        line = raw.strip()
        if not line or line.startswith(b";"):
            continue
        source = f"{label}:{number}"
        try:
            rows, pushed_at = _tcec_line(line, *envelope)
        except FrameError as exc:
            s.rejected[exc.reason] += 1
            _emit({**error_to_dict(exc), "source": source}, out, option)
            continue
        s.decoded += 1
        # Added last, so that the fields before it stay as they were.
        _emit({**charger_rows_to_dict(rows, TCEC), "pushed_at": pushed_at}, out, option)


def _tcec_line(
    line: bytes, args: argparse.Namespace, seqs: FlagSeqs
) -> tuple[ChargerRows, datetime]:
    """One JSON line (ingest.cli.tcec_lines): the push's rows and time, or ``FrameError``."""
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise FrameError(BAD_JSON, exc.pos, f"not JSON: {exc.msg}") from None
    return decode_push(line, doc, args, seqs, _push_rows)


def _push_rows(push: Push) -> tuple[ChargerRows, datetime]:
    # The time of the status and station pushes, which carry none of their own: the
    # pipeline's (push_time: TimeStamp + Seq µs), so that it is the time they are stored with.
    stamp, seq = push.timestamp, push.seq
    # No TimeStamp: now, to the second, as a TimeStamp without Seq gives. Its microseconds
    # would be added to a charge status's EndTime, a time the pipeline never stores (it adds
    # Seq <= 9999 µs).
    pushed_at = datetime.now(UTC).replace(microsecond=0) if stamp is None else push_time(stamp, seq)
    return decode_tcec(push.data, push.interface, push.operator, pushed_at), pushed_at


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
    if binary and not stats.decoded and not rejected and stats.skipped_bytes:
        # Bytes and not one frame: no capture (hex text read as bytes, another format).
        failed = True
        hint = "; no frame in the input: is it hex text? (then leave out --binary)"
    note(f"nev-ingest decode: {', '.join(parts)}{hint}")
    return 1 if failed else 0
