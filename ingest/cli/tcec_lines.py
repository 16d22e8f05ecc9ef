"""T/CEC 102 push lines, as ``nev-ingest decode --profile tcec`` and ``nev-ingest rules test
--kind charger`` read them: one JSON object a line, either the push's business JSON itself (its
envelope's interface, OperatorID, TimeStamp and Seq from the command's ``--interface``,
``--operator``, ``--timestamp`` and ``--seq``) or ``{"interface": ..., "operator_id": ...,
"timestamp": ..., "seq": ..., "data": {...}}`` whose fields take the place of the flags. One
reader for both commands, so that a file ``decode`` reads is one ``rules test`` reads, and a
push has the same time in both.

The pushes that take both TimeStamp and Seq from the flags are numbered as a gateway numbers
one second's pushes: the first gets ``--seq`` (0001 when not given), each next one the Seq
after, in file order (``FlagSeqs``). With one Seq for all, every push of a connector would
have the same time (TimeStamp + Seq µs), and the alert engine would judge the first and count
the others as duplicates; an operator's file of one second's status changes would raise
nothing. The numbering skips the Seqs the wrapped lines of the same operator before it gave in
that second, and a wrapped line whose Seq an earlier push of its operator was numbered with is
refused (``bad_time``): no operator's two pushes share a (TimeStamp, Seq), as the gateway
takes each pair once per operator (docs/gateway.md). A wrapped line with a ``timestamp`` and
no ``seq`` takes ``--seq`` as given (docs/alerts.md), not numbered. Past Seq 9999 a second is
full: a usage error says to give the wrapped form."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import orjson

from ingest.decoders.charger.tcec import SEQ_DIGITS, is_seq
from ingest.decoders.errors import BAD_TIME, MISSING_FIELD, FrameError
from ingest.errors import UserError

__all__ = [
    "FlagSeqs",
    "Push",
    "add_envelope_arguments",
    "check_envelope_arguments",
    "decode_push",
    "is_wrapped",
]

SEQ_MAX: Final = 10**SEQ_DIGITS - 1  # 9999: the last Seq of a second
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Push:
    """One line's push: its business JSON and its envelope's fields (TimeStamp and Seq as
    given, None when neither the line nor the flags have one); ``numbered``: its Seq is one
    ``FlagSeqs.take`` gave."""

    data: bytes
    interface: str
    operator: str
    timestamp: str | None
    seq: str | None
    numbered: bool = False


def add_envelope_arguments(parser: argparse.ArgumentParser, what: str, no_stamp: str) -> None:
    """The envelope flags (``what``: which input they are for, e.g. ``tcec``; ``no_stamp``:
    what a push without a TimeStamp gets)."""
    parser.add_argument(
        "--interface", help=f"{what}: the interface, e.g. notification_stationStatus"
    )
    parser.add_argument(
        "--operator", help=f"{what}: the OperatorID (9 digits / upper-case letters)"
    )
    parser.add_argument(
        "--timestamp",
        help=f"{what}: the envelope TimeStamp yyyyMMddHHmmss, Beijing time ({no_stamp})",
    )
    parser.add_argument(
        "--seq",
        help=f"{what}: the envelope Seq, 4 digits (the tcec_seq header), of the first line "
        "taking TimeStamp and Seq from the flags (default 0001); each next such line gets the "
        "next Seq, as a gateway numbers one second's pushes. A push's time is TimeStamp + Seq "
        "µs, as stored; past Seq 9999 give the lines in the wrapped form, each with its own "
        "timestamp and seq",
    )


def check_envelope_arguments(args: argparse.Namespace, used: bool, hint: str) -> None:
    """Refuse the envelope flags where no push is read (``hint``: the option that reads
    pushes), and a ``--seq`` that is not one."""
    if not used and (args.interface or args.operator or args.timestamp or args.seq):
        raise UserError(f"--interface, --operator, --timestamp and --seq are for {hint}")
    if args.seq is not None and not is_seq(args.seq):
        raise UserError(f"--seq {args.seq!r}: give the envelope's Seq, 4 digits (e.g. 0001)")


def is_wrapped(doc: Any) -> bool:
    """Whether a parsed line is the wrapped form (``{"data": ..., "interface": ...}``)."""
    return type(doc) is dict and "data" in doc


class FlagSeqs:
    """The Seqs of the pushes that take TimeStamp and Seq from the flags, one per push in file
    order from ``--seq`` (0001 when not given: a gateway's first Seq of a second). One per
    command run: ``decode``'s files are numbered on, since they share the one TimeStamp.

    A wrapped line may give a Seq of ``--timestamp``'s second itself (its own ``seq``, or
    ``--seq`` as given when it has a ``timestamp`` and no ``seq``). Two pushes of one operator
    with one (TimeStamp, Seq) are what the gateway refuses (it takes a pair once per operator,
    docs/gateway.md), and of one connector they have one time, the alert engine counting the
    later a duplicate, never judged: so the numbering skips every Seq a wrapped line of that
    second and operator used before, and a wrapped line whose Seq an earlier push of its
    operator was numbered with is refused (``claim``). Pushes of two operators are two
    entities to the engine (``operator_id:connector_id``) and two senders to the gateway: one
    Seq for both is no clash. Keyed by the operator, not the connector: the gateway would refuse
    an operator's second push of one (TimeStamp, Seq) whatever connector it is about. Lines are
    read once, in order (``decode`` reads stdin), so a Seq used later in the file cannot be
    skipped ahead of time."""

    __slots__ = ("_given", "_next", "_start", "_taken", "_wrapped")

    def __init__(self, start: str | None) -> None:
        self._start = 1 if start is None else int(start)
        self._next = self._start
        self._taken = 0  # pushes numbered so far
        self._given: set[tuple[str, int]] = set()  # (operator, Seq) numbered
        self._wrapped: set[tuple[str, int]] = set()  # (operator, Seq) wrapped lines gave

    def take(self, operator: str) -> str:
        """The next Seq no wrapped line of ``operator`` used in the second; ``UserError`` once
        the second's 9999 are used up."""
        while (operator, self._next) in self._wrapped:
            self._next += 1
        self._taken += 1
        if self._next > SEQ_MAX:
            first = f"{self._start:0{SEQ_DIGITS}d}"
            raise UserError(
                f"Seq past {SEQ_MAX}: the pushes taking --timestamp's second are numbered from "
                f"Seq {first}, and push {self._taken} would get {self._next}; "
                "give them in the wrapped form, one JSON object per line with its own "
                '"timestamp" and "seq"'
            )
        self._given.add((operator, self._next))
        seq = f"{self._next:0{SEQ_DIGITS}d}"
        self._next += 1
        return seq

    def release(self, push: Push) -> None:
        """``push`` was skipped (its line not decodable): a Seq it was numbered with clashes
        with no push any more, so a later wrapped line may use it. The numbering goes on from
        where it was (a push's Seq is its place among the numbered lines, skipped ones too)."""
        if push.numbered and push.seq is not None:
            self._given.discard((push.operator, int(push.seq)))

    def claim(self, operator: str, seq: str) -> None:
        """A wrapped line's Seq in ``--timestamp``'s second: skipped by ``operator``'s numbering
        from now on; ``FrameError`` (bad_time) when an earlier push of ``operator`` was numbered
        with it."""
        if not is_seq(seq):
            return  # refused as bad_time by push_time, at no time of its own
        number = int(seq)
        if (operator, number) in self._given:
            raise FrameError(
                BAD_TIME,
                0,
                f"Seq {seq} of --timestamp's second was given to an earlier push of operator "
                f"{operator} taking --timestamp (numbered from --seq): with one (TimeStamp, "
                "Seq), one of the two would be a duplicate; put the wrapped lines before the "
                "others, or start --seq past their Seqs",
            )
        self._wrapped.add((operator, number))


def _push_of(line: bytes, doc: Any, args: argparse.Namespace, seqs: FlagSeqs) -> Push:
    """The push of ``line`` (parsed: ``doc``), its fields before the flags; a push taking both
    TimeStamp and Seq from the flags gets its Seq from ``seqs``. ``FrameError``
    (``missing_field``) naming the flag or field to give when the interface or the operator is
    missing, or a Seq comes without its TimeStamp."""
    data = line
    interface, operator, stamp = args.interface, args.operator, args.timestamp
    seq = args.seq
    own_envelope = False  # the line gives its TimeStamp or its Seq
    if is_wrapped(doc):
        interface = doc.get("interface", interface)
        operator = doc.get("operator_id", operator)
        stamp = doc.get("timestamp", stamp)
        seq = doc.get("seq", seq)
        own_envelope = "timestamp" in doc or "seq" in doc
        data = orjson.dumps(doc["data"])
    # Checked before a Seq is numbered or claimed: a line refused here takes none.
    for value, what in ((interface, "interface"), (operator, "operator")):
        if type(value) is not str or not value:
            field = "operator_id" if what == "operator" else what
            raise FrameError(
                MISSING_FIELD, 0, f"no {what}: give --{what} or the line's {field!r} field"
            )
    if stamp is None and seq is not None:
        raise FrameError(
            MISSING_FIELD,
            0,
            "a Seq counts within its TimeStamp: give --timestamp or the line's 'timestamp' field",
        )
    numbered = stamp is not None and not own_envelope
    if numbered:
        # --timestamp's second, shared by all such lines: each its own Seq (FlagSeqs).
        seq = seqs.take(operator)
    elif seq is not None and stamp is not None and str(stamp) == args.timestamp:
        # A wrapped line's Seq in that second: the numbering must not give it again.
        seqs.claim(operator, str(seq))
    return Push(
        data, interface, operator, None if stamp is None else str(stamp),
        None if seq is None else str(seq), numbered,
    )  # fmt: skip


def decode_push(
    line: bytes,
    doc: Any,
    args: argparse.Namespace,
    seqs: FlagSeqs,
    decode: Callable[[Push], _T],
) -> _T:
    """``decode`` of ``_push_of``'s push. When ``decode`` refuses it (``FrameError``: the line
    is skipped, never judged), a Seq it was numbered with is released (``FlagSeqs.release``):
    kept, a later wrapped line of that Seq was refused as clashing with a push that is not
    there."""
    push = _push_of(line, doc, args, seqs)
    try:
        return decode(push)
    except FrameError:
        seqs.release(push)
        raise
