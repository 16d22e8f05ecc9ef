"""The frames of ``nev-ingest rules test``: one line each, decoded as one entity kind's frames.

A line is hex (as ``nev-ingest decode`` reads it), a JSON object with a ``hex`` member, (for
vehicles) a JSON frame in the decoded-row form of ``alerts.frames``, or (for chargers) a T/CEC
102 push in the line form of ``nev-ingest decode --profile tcec`` (ingest.cli.tcec_lines). Hex
is decoded by the decoder of the kind under test (``--kind``), as the pipeline decodes that
kind's topic, and the pipeline's input limits apply: a frame it would dead-letter raises
nothing here. A push is decoded by the pipeline's decoder of the T/CEC topic with the envelope
fields as the headers the gateway sets, so its rows carry the pipeline's time (TimeStamp + Seq
µs: the order time of alerts.subjects) and its rejects (a missing TimeStamp, a bad OperatorID).

The three binary profiles share the GB/T 32960 envelope: a charger's or a pack's frame read as
a vehicle's decodes as a partial vehicle frame (its connector read as a vehicle), and the
pipeline dead-letters it as ``wrong_topic`` (``ingest.pipeline.wrong_kind``). Here such a frame,
and any frame the kind's decoder refuses that another profile's decoder reads, is skipped as
``wrong_topic`` naming the ``--kind`` that takes it: scored as a vehicle it once raised nothing
and the run reported success.
"""

from __future__ import annotations

import argparse
import binascii
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final, TypeVar

import orjson

from alerts.frames import FrameSpecError, frame_from_json
from contract.battery import PackFrameRows
from contract.charger import ChargerRows
from contract.rows import FrameRows
from ingest.cli.tcec_lines import FlagSeqs, Push, decode_push, is_wrapped
from ingest.decoders.errors import MISSING_FIELD, FrameError
from ingest.decoders.fast import decode_rows
from ingest.errors import UserError
from ingest.pipeline import wire
from ingest.pipeline.adapters import decode_battery_batch, decode_charger_batch, decode_tcec_record
from ingest.pipeline.limits import limit_rows
from ingest.pipeline.wrong_kind import WRONG_TOPIC, profile_of

__all__ = ["WRONG_TOPIC", "read_frames"]

_R = TypeVar("_R")
# The envelope flags of the pushes and the numbering of the Seqs they take (one per file).
_Envelope = tuple[argparse.Namespace, FlagSeqs]

# The charger profile's and the pack profile's decoders, one value at a time (the CLI is not
# the hot path); the time is the receive time their rows keep.
_BATCH_DECODERS: Final[dict[str, Callable[[list[bytes], list[int]], list[Any]]]] = {
    "charger": decode_charger_batch,
    "battery": decode_battery_batch,
}


class WrongKind(FrameError):
    """A frame of another entity kind's profile than the one under test."""

    __slots__ = ("kind",)

    def __init__(self, kind: str, tested: str, what: str = "") -> None:
        what = what or f"a {kind}-profile frame"
        super().__init__(WRONG_TOPIC, 0, f"{what}, not a {tested}'s: test it with --kind {kind}")
        self.kind = kind


def _carries_data(rows: object) -> bool:
    if isinstance(rows, FrameRows):
        return rows.vehicle is not None and not rows.partial
    if isinstance(rows, PackFrameRows):
        return rows.telemetry is not None or rows.alarm is not None
    if isinstance(rows, ChargerRows):
        return bool(rows.statuses or rows.telemetry)
    return False


def _other_kind(raw: bytes, received_ms: int, tested: str) -> str | None:
    """The kind whose profile a frame the ``tested`` kind's decoder refused belongs to."""
    for kind, decode in _BATCH_DECODERS.items():
        if kind != tested and _carries_data(decode([raw], [received_ms])[0]):
            return kind
    if tested != "vehicle":
        try:
            if _carries_data(decode_rows(raw)):
                return "vehicle"
        except FrameError:
            pass
    return None


def _decode(raw: bytes, kind: str, received_ms: int) -> Any:
    """``raw``'s rows as the pipeline decodes the topic of ``kind``; raises ``FrameError``."""
    if kind == "vehicle":
        checked = _limited(decode_rows(raw))
        # Only a partial frame is tried, as the pipeline does (ingest.pipeline.limits).
        if checked.partial:
            other = profile_of(raw, received_ms, checked.tail_offset)
            if other is not None:
                raise WrongKind(other, kind)
        return checked
    (rows,) = _BATCH_DECODERS[kind]([raw], [received_ms])
    if isinstance(rows, FrameError):
        other = _other_kind(raw, received_ms, kind)
        raise rows if other is None else WrongKind(other, kind)
    return _limited(rows)


def _limited(rows: _R) -> _R:
    """``rows`` within the pipeline's input limits (``limit_rows``), or that ``FrameError``."""
    checked = limit_rows(rows)
    if isinstance(checked, FrameError):
        raise checked
    return checked


def _push_rows(line: str, doc: Any, envelope: _Envelope, received_ms: int) -> Any:
    """A T/CEC 102 push's rows as the pipeline decodes the T/CEC topic's record: the line's
    envelope fields (or the flags, their Seq numbered) are the headers the gateway would have
    set."""
    return decode_push(line.encode(), doc, *envelope, lambda push: _record_rows(push, received_ms))


def _record_rows(push: Push, received_ms: int) -> Any:
    """The rows of `push` as decode_tcec_record gives them to the pipeline."""
    if push.timestamp is None:
        # The pipeline rejects a push without one (missing_header): it is the push's time.
        raise FrameError(
            MISSING_FIELD,
            0,
            "no timestamp: give --timestamp or the line's 'timestamp' field (the envelope's "
            "TimeStamp, yyyyMMddHHmmss: the push's time, by which the rules judge it)",
        )
    headers = wire.tcec_headers(push.interface, push.operator, push.timestamp, seq=push.seq)
    return _limited(decode_tcec_record(push.data, received_ms, headers))


def _line_rows(line: str, kind: str, received_ms: int, envelope: _Envelope) -> Any:
    if not line.startswith("{"):
        return _decode(
            binascii.unhexlify(line.replace(" ", "").removeprefix("0x")), kind, received_ms
        )
    obj = orjson.loads(line)
    if isinstance(obj, dict) and "hex" in obj:
        raw = binascii.unhexlify(str(obj["hex"]).replace(" ", ""))
        return _decode(raw, kind, received_ms)
    if kind == "charger":
        return _push_rows(line, obj, envelope, received_ms)
    if is_wrapped(obj):
        raise WrongKind("charger", kind, "a T/CEC 102 push (a charger's)")
    if kind != "vehicle":
        raise FrameSpecError(f"a decoded-row JSON frame is a vehicle's: give {kind} frames as hex")
    return _limited(frame_from_json(obj))


# What a line that is no input of the kind was expected to be, for the skip's message.
_EXPECTED: Final = {
    "vehicle": "neither hex nor a JSON frame",
    "charger": "neither a hex frame nor a T/CEC 102 push (a JSON object)",
    "battery": "not a hex frame",
}


def read_frames(
    path: str, kind: str, bad: Counter[str], envelope: argparse.Namespace
) -> Iterator[Any]:
    """The decoded frames (and, for chargers, pushes) of ``path`` for entity ``kind``; each
    line skipped is counted in ``bad`` by reason and reported on stderr with its line number.
    ``envelope``: the T/CEC envelope flags (``interface``, ``operator``, ``timestamp``,
    ``seq``) for push lines that do not carry them; the lines that take TimeStamp and Seq from
    them get Seqs counting up from ``seq`` in file order (``FlagSeqs``)."""
    try:
        f = Path(path).open("rb")  # noqa: SIM115 - closed below, streamed
    except OSError as exc:
        raise UserError(f"cannot read frames file {path}: {exc.strerror}") from None
    received_ms = time.time_ns() // 1_000_000
    pushes = (envelope, FlagSeqs(envelope.seq))
    with f:
        for n, raw in enumerate(f, start=1):
            try:
                # Per line: one line in another encoding is a skipped line, not a traceback.
                line = raw.decode("utf-8").strip()
                if not line or line.startswith(("#", ";")):
                    continue
                yield _line_rows(line, kind, received_ms, pushes)
            except WrongKind as exc:
                bad[exc.reason] += 1
                print(f"{path}:{n}: skipped ({exc.reason}), {exc.detail}", file=sys.stderr)
            except FrameError as exc:
                bad[exc.reason] += 1
                print(f"{path}:{n}: skipped, not decodable: {exc}", file=sys.stderr)
            except (binascii.Error, ValueError, FrameSpecError) as exc:  # UnicodeDecodeError too
                bad["bad_line"] += 1
                print(f"{path}:{n}: skipped, {_EXPECTED[kind]}: {exc}", file=sys.stderr)
