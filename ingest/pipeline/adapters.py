"""The decoders of the raw topics as the batch builder calls them: a record's value and
``received_at`` (epoch ms) -> the decoded object of its entity kind, or ``FrameError``.

The frame topics (vehicle, charger, battery) take the bytes and the receive time only, all
the values of one ``BatchBuilder.add`` call at once (``decode_*_batch``: one native call,
a rejected frame as a ``FrameError`` instance in its place); each dead-letters the frames whose
data unit cannot be read (encrypted, abnormal, reserved: ``unreadable``), whatever
``security.signatures`` says, as their decoders keep them opaque with no rows. The
T/CEC 102 topic also reads three headers (docs/kafka.md, "nev.charger.tcec"), and the
optional fourth, ``tcec_seq``: what the gateway took from the operator's envelope. A header
that is missing or malformed rejects the push with ``missing_header`` / ``bad_header`` before
the JSON is read; what the JSON holds is the decoder's to judge
(``ingest.decoders.charger.TCEC_REASONS``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final

from contract.battery import PackFrameRows
from contract.charger import ChargerRows
from contract.rows import FrameRows
from ingest.decoders.battery import decode_pack_rows_batch
from ingest.decoders.charger import (
    OPERATOR_ID_RULE,
    decode_charger_rows_batch,
    decode_tcec,
    is_operator_id,
    push_time,
)
from ingest.decoders.errors import FrameError
from ingest.decoders.fast import decode_rows_batch
from ingest.pipeline import wire
from ingest.pipeline.row_limits import VEHICLE_ROW_LIMITS
from ingest.pipeline.unreadable import dead_letter_unreadable
from ingest.pipeline.wire import Headers

__all__ = [
    "decode_battery_batch",
    "decode_charger_batch",
    "decode_tcec_record",
    "decode_vehicle_batch",
]


_RECEIVED: dict[int, datetime] = {}
_RECEIVED_MAX: Final = 4096


def received_at(received_ms: int) -> datetime:
    """``received_ms`` as an aware UTC datetime. Gateways stamp many frames with the same
    millisecond: one datetime object for all of them (a small cache, cleared when full)."""
    received = _RECEIVED.get(received_ms)
    if received is None:
        if len(_RECEIVED) > _RECEIVED_MAX:
            _RECEIVED.clear()
        received = _RECEIVED[received_ms] = datetime.fromtimestamp(received_ms / 1000, UTC)
    return received


class _VehicleBatch:
    """``decode_vehicle_batch``: a function with one attribute, ``rows_limited``."""

    # A frame over a row limit is rejected before its rows are built
    # (row_limits.VEHICLE_ROW_LIMITS): the batch builder need not count them again
    # (ingest.pipeline.decoding.rows_limited).
    rows_limited: Final = True

    def __call__(
        self, values: Sequence[bytes], received_ms: Sequence[int]
    ) -> list[FrameRows | FrameError]:
        return dead_letter_unreadable(
            values, decode_rows_batch(values, received_ms, VEHICLE_ROW_LIMITS)
        )


decode_vehicle_batch: Final = _VehicleBatch()


def decode_charger_batch(
    values: Sequence[bytes], received_ms: Sequence[int]
) -> list[ChargerRows | FrameError]:
    return dead_letter_unreadable(values, decode_charger_rows_batch(values, received_ms))


def decode_battery_batch(
    values: Sequence[bytes], received_ms: Sequence[int]
) -> list[PackFrameRows | FrameError]:
    return dead_letter_unreadable(values, decode_pack_rows_batch(values, received_ms))


def decode_tcec_record(value: bytes, received_ms: int, headers: Headers) -> ChargerRows:
    """One T/CEC 102 push to rows. ``ts_ms`` is set from the rows' time (the push carries no
    frame time of its own; the four interfaces give all rows of a push one time), so the
    frame-time window applies to pushes as to frames; telemetry rows get ``received_at``."""
    interface = _text(headers, wire.TCEC_INTERFACE)
    if not interface.isascii() or not interface.isprintable():
        raise FrameError(wire.BAD_HEADER, 0, f"{wire.TCEC_INTERFACE} {interface!r}: not ASCII")
    operator = _text(headers, wire.TCEC_OPERATOR_ID)
    if not is_operator_id(operator):  # upper case: see ingest.decoders.charger.tcec
        raise FrameError(
            wire.BAD_HEADER,
            0,
            f"{wire.TCEC_OPERATOR_ID} {operator!r}: expected the OperatorID, {OPERATOR_ID_RULE}",
        )
    seq = wire.header(headers, wire.TCEC_SEQ)  # optional: older gateways did not send it
    pushed_at = _timestamp(
        _text(headers, wire.TCEC_TIMESTAMP), None if seq is None else seq.decode("ascii", "replace")
    )
    received = received_at(received_ms)
    rows = decode_tcec(value, interface, operator, pushed_at)
    times = [r.ts for r in rows.connectors] + [r.ts for r in rows.statuses]
    times += [r.ts for r in rows.telemetry] + [r.ts for r in rows.sessions]
    if not times:  # a station without equipment: the push's own time
        times.append(pushed_at)
    # Should a push ever hold several times, the window judges the one farthest from the
    # receive time: the oldest if it lies further back than the newest lies ahead.
    oldest, newest = min(times), max(times)
    ts = oldest if received - oldest >= newest - received else newest
    rows.ts_ms = int(ts.timestamp() * 1000)
    if rows.telemetry:
        rows.telemetry = [
            r if r.received_at is not None else r._replace(received_at=received)
            for r in rows.telemetry
        ]
    return rows


def _text(headers: Headers, name: str) -> str:
    raw = wire.header(headers, name)
    if raw is None or not raw:
        raise FrameError(wire.MISSING_HEADER, 0, f"header {name} is required on this topic")
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise FrameError(wire.BAD_HEADER, 0, f"header {name} is not UTF-8 text") from None


def _timestamp(text: str, seq: str | None) -> datetime:
    """The envelope TimeStamp (+ Seq) as the decoder reads it (one parser: ``push_time``);
    its ``bad_time`` is ``bad_header`` here, since a header is what is wrong, not the JSON."""
    try:
        at = push_time(text)
    except FrameError as exc:
        raise FrameError(
            wire.BAD_HEADER, 0, f"header {wire.TCEC_TIMESTAMP}: {exc.detail}"
        ) from None
    try:
        return at if seq is None else push_time(text, seq)
    except FrameError as exc:
        raise FrameError(wire.BAD_HEADER, 0, f"header {wire.TCEC_SEQ}: {exc.detail}") from None
