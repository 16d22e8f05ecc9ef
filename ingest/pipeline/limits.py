"""The input limits (``ingest.config.limits``) applied to consumed records.

Two checks, each a FrameError with the limit's reason, so that the batch builder dead-letters
the record like any decoder reject (docs/security.md, "Input limits"):

- ``refuse_record``: the record's key length and headers, before its value is decoded. The
  value's size (``kafka.max_record_bytes``, ``too_large``) is checked before this, by the
  caller. A missing key is judged after decoding: only a record that carries rows needs one.
- ``limit_rows`` (in ``check_decoded``): the counts of what a frame decoded to, before the
  rows join the batch.
  Counting needs the frame walked, which is the native decoder's job; counting the rows it
  made costs a few ``len`` calls, and the walk itself is bounded by the frame size (64 KiB).

Both run once per record on the hot path: plain loops over locals, no allocation unless a
limit is crossed.
"""

from __future__ import annotations

from typing import Final, TypeVar

from contract.battery import PackFrameRows
from contract.charger import ChargerRows
from contract.rows import FrameRows
from ingest.config.limits import (
    BAD_HEADER,
    BAD_KEY,
    CELLS_PER_FRAME,
    HEADER_BYTES,
    HEADERS_PER_RECORD,
    KEY_BYTES,
    MISSING_KEY,
    MOTORS_PER_FRAME,
    PACK_ROWS_PER_FRAME,
    PROBES_PER_FRAME,
)
from ingest.decoders.errors import FrameError
from ingest.pipeline import wire
from ingest.pipeline.row_limits import SEE, over_limit
from ingest.pipeline.wire import DeadLetter, Record
from ingest.pipeline.wrong_kind import other_profile

__all__ = [
    "ORIGINAL_HEADER_BYTES",
    "ORIGINAL_HEADER_COUNT",
    "ORIGINAL_KEY_SIZE",
    "BulkyRecord",
    "check_decoded",
    "cut_letter",
    "limit_rows",
    "refuse_record",
    "without_bulk",
]

R = TypeVar("R")

# On the cut dead letter of a record over key_bytes or a header limit (``cut_letter``):
ORIGINAL_KEY_SIZE: Final = "original.key_size"  # bytes of the original key, decimal
ORIGINAL_HEADER_COUNT: Final = "original.header_count"  # headers of the original record
ORIGINAL_HEADER_BYTES: Final = "original.header_bytes"  # their names + values, bytes
# What of the original key the cut letter keeps (a VIN or code is 17-36 bytes).
_KEY_KEPT: Final = 4 * KEY_BYTES


class BulkyRecord(FrameError):
    """A record refused for the size of its key or headers: its dead letter must not repeat
    them (``cut_letter``). A dead letter that copies 8 KiB of headers costs the worker's
    producer ten times a plain one (docs/performance.md), so copying them would make a
    record just over the limit an inexpensive way to slow every good frame down."""

    __slots__ = ()


def _bulky(limit: str, value: int, what: str, fix: str) -> BulkyRecord:
    reason = BAD_KEY if limit == "key_bytes" else BAD_HEADER
    return BulkyRecord(reason, 0, f"{what} is over the limit {limit} ({value}): {fix} ({SEE})")


def cut_letter(rec: Record, error: FrameError) -> DeadLetter | None:
    """The dead letter of ``rec`` refused as a ``BulkyRecord``: its value (within
    kafka.max_record_bytes), the key's first 256 bytes, none of its headers but a plain
    ``received_at``, the error headers and what was cut (``original.*``). None for any other
    error: its letter is the whole original record (docs/kafka.md)."""
    if not isinstance(error, BulkyRecord):
        return None
    key, kept, more = _cut(rec)
    return wire.dead_letter(
        key=key,
        value=rec.value,
        headers=kept,
        reason=error.reason,
        detail=str(error),
        stage="decode",
        topic=rec.topic,
        partition=rec.partition,
        offset=rec.offset,
        timestamp_ms=rec.timestamp,
        more=more,
    )


def _cut(rec: Record) -> tuple[bytes | None, wire.Headers, wire.Headers]:
    """What a letter keeps of ``rec``'s key and headers when they broke a limit: the key's
    first bytes, a plain ``received_at``; and the ``original.*`` headers saying what was cut."""
    headers = rec.headers or ()
    size = wire.header_bytes(headers)
    received = wire.header(headers, wire.RECEIVED_AT)
    kept = [(wire.RECEIVED_AT, received)] if received is not None and len(received) <= 20 else []
    key = rec.key
    more = [
        (ORIGINAL_KEY_SIZE, str(len(key) if key is not None else -1).encode()),
        (ORIGINAL_HEADER_COUNT, str(len(headers)).encode()),
        (ORIGINAL_HEADER_BYTES, str(size).encode()),
    ]
    return (key[:_KEY_KEPT] if key is not None else None), kept, more


def without_bulk(letter: DeadLetter, rec: Record) -> DeadLetter:
    """``letter`` (``wire.letter_of(rec, ...)``'s form: the record's headers first) without a
    key or headers of ``rec`` that break a limit, as ``cut_letter`` leaves them out: for the
    records refused before their key and headers are judged (empty, too large, no decoder),
    whose letters would otherwise repeat up to a megabyte of them."""
    if refuse_record(rec) is None:
        return letter
    key, kept, more = _cut(rec)
    own = letter.headers[len(rec.headers or ()) :]
    return DeadLetter(key, letter.value, [*kept, *own, *more])


def refuse_record(rec: Record, header_size: int | None = None) -> BulkyRecord | None:
    """Why ``rec``'s key or headers break a limit, or None when they do not. ``header_size``:
    the bytes of its headers (``wire.header_bytes``), when the caller counted them already."""
    key = rec.key
    if key and len(key) > KEY_BYTES:  # no key at all: judged with the rows (check_decoded)
        return _bulky(
            "key_bytes",
            KEY_BYTES,
            f"key of {len(key)} bytes",
            "the key must be the device identity",
        )
    headers = rec.headers
    if headers:
        if len(headers) > HEADERS_PER_RECORD:
            return _bulky(
                "headers_per_record",
                HEADERS_PER_RECORD,
                f"{len(headers)} headers",
                "send only the gateway's headers",
            )
        size = wire.header_bytes(headers) if header_size is None else header_size
        if size > HEADER_BYTES:
            return _bulky(
                "header_bytes",
                HEADER_BYTES,
                f"{size} bytes of headers",
                "send only the gateway's headers",
            )
    return None


def check_decoded(rows: R, rec: Record, received_ms: int) -> R | FrameError:
    """What record ``rec`` decoded to, after the row limits (``limit_rows``), the key (a record
    that carries rows needs one) and, for a partial vehicle frame only, the check that it is no
    charger's or pack's frame on the wrong topic (``ingest.pipeline.wrong_kind``)."""
    checked = limit_rows(rows)
    if not rec.key and _carries_rows(checked):
        # Only data needs the key: it orders a device's rows on one partition, which the alert
        # rules rely on. The gateway keys a heartbeat of a terminal without a code with None.
        return FrameError(
            MISSING_KEY,
            0,
            "record has no key: produce it with the device identity (VIN, charger code, pack "
            f"code) as the key, which keeps the device's frames in order on one partition ({SEE})",
        )
    if isinstance(checked, FrameRows) and checked.partial:
        wrong = other_profile(rec.value or b"", received_ms, checked.tail_offset)
        if wrong is not None:
            return wrong
    return checked


def _carries_rows(rows: object) -> bool:
    """Whether decoded ``rows`` hold data (not a heartbeat, time sync, response or error)."""
    if isinstance(rows, FrameRows):
        return rows.vehicle is not None or rows.session is not None
    if isinstance(rows, PackFrameRows):
        return rows.telemetry is not None or rows.alarm is not None or rows.session is not None
    if isinstance(rows, ChargerRows):
        return bool(
            rows.connectors or rows.statuses or rows.telemetry or rows.sessions or rows.faults
        )
    return False


def limit_rows(rows: R) -> R | FrameError:
    """``rows``, or the FrameError of the first row limit they cross. Anything but a vehicle
    or pack frame's rows (an exception of the decoder, a charger's rows) passes unchanged:
    chargers' lists are bounded by their fixed-size frames and by kafka.max_record_bytes."""
    if isinstance(rows, FrameRows):
        motors = len(rows.motors)
        if motors > MOTORS_PER_FRAME:
            return over_limit("motors_per_frame", motors)
        packs = rows.packs
        if not packs:
            return rows
        if len(packs) > PACK_ROWS_PER_FRAME:
            return over_limit("pack_rows_per_frame", len(packs))
        cell_bytes = probes = 0
        for pack in packs:
            cell_bytes += len(pack.cell_voltages_raw)
            probes += len(pack.probe_temps_raw)
        return _cells(rows, cell_bytes // 2, probes)
    if isinstance(rows, PackFrameRows) and rows.telemetry is not None:
        t = rows.telemetry
        return _cells(rows, len(t.cell_voltages_raw) // 2, len(t.probe_temps_raw))
    return rows


def _cells(rows: R, cells: int, probes: int) -> R | FrameError:
    if cells > CELLS_PER_FRAME:
        return over_limit("cells_per_frame", cells)
    if probes > PROBES_PER_FRAME:
        return over_limit("probes_per_frame", probes)
    return rows
