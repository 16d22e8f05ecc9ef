"""The fast path: one GB/T 32960 frame to flat, typed rows (``contract.rows``).

The pipeline needs rows for the database writer and the rule engine, not a structured
document, so real-time and reissue data -- nearly all the traffic -- go straight from bytes
to the row NamedTuples: precompiled ``struct`` layouts, sentinels to ``None`` inline, cell
and probe arrays kept as the frame's own bytes with per-row min/max. Every other frame (login,
logout, heartbeat, responses, platform and parameter commands, encrypted or custom data) is
rare, so it goes through the structured decoder (``decode_frame``) and only its envelope and
session fields become rows: one set of rules for those, and the same answers by construction.

    rows = decode_rows(frame, received_at)
    rows.vehicle   # VehicleRow for real-time (0x02) / reissue (0x03) data
    rows.motors, rows.packs, rows.alarm
    rows.session   # SessionRow for vehicle login (0x01) / logout (0x04)

A frame whose blocks cannot all be walked (a type of unknown length, a custom WORD length or
a count overrunning the data unit) keeps every row decoded before that block, with
``partial`` and ``tail_offset`` set -- unless a smaller motor / pack count explains the stop,
then the frame is rejected (``count_mismatch``, ``counts.py``); encrypted frames give the
envelope (``encrypted``). A 2025 data unit without its signature sets ``signature_missing``.
The ID must be a VIN (``identity.py``), else ``bad_identity``.
The fast path agrees with ``decode_frame`` field for field, errors included
(tests/unit/test_fast_agreement.py), and raises nothing but ``FrameError``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from contract.rows import AlarmRow, FrameRows, SessionRow, VehicleRow
from ingest.decoders.commands.login import Login
from ingest.decoders.commands.session import Logout
from ingest.decoders.counts import find_miscount
from ingest.decoders.envelope import EDITION_2016, EDITION_2025, HEADER_SIZE
from ingest.decoders.errors import TRUNCATED, FrameError
from ingest.decoders.fast_2016 import walk_2016
from ingest.decoders.fast_2025 import walk_2025
from ingest.decoders.fast_common import TIMES, frame_time, join_packs, plain_data
from ingest.decoders.fast_extremes import NO_EXTREMES, derive_extremes
from ingest.decoders.frame import Frame, decode_frame
from ingest.decoders.identity import check_identity
from ingest.decoders.signature import find_signature

__all__ = ["decode_rows", "rows_of_frame"]

_COMMAND: Final = 0xFE  # response flag of a command packet (anything else is a response)
_NO_VEHICLE: Final = (None,) * 13
_NO_POSITION: Final = (None, None, None)
_new: Final = object.__new__


def decode_rows(
    frame: bytes | bytearray | memoryview, received_at: datetime | None = None
) -> FrameRows:
    """Decode one whole frame (start marker through BCC) into rows; ``received_at`` (the
    gateway's receive time) is copied into the vehicle row. Raises ``FrameError`` only."""
    buf = frame if type(frame) is bytes else bytes(frame)
    plain = plain_data(buf)
    if plain is not None:
        command, vin_raw, end = plain
        vin = _VINS.get(vin_raw) or _vin(vin_raw)
        edition = EDITION_2016 if buf[0] == 0x23 else EDITION_2025
        return _data(buf, edition, command, vin, end, received_at)
    return rows_of_frame(decode_frame(buf))


def rows_of_frame(frame: Frame) -> FrameRows:
    """The rows of a structured frame that is not real-time / reissue data: the envelope, and
    the session row of a vehicle login or logout (command packets only: an ack is no login)."""
    session = None
    body = frame.body
    if frame.time is not None and frame.response == _COMMAND:
        if isinstance(body, Login):
            values = (
                frame.vin,
                frame.time,
                "login",
                body.login_seq,
                body.iccid,
                list(body.pack_codes),
            )
            session = tuple.__new__(SessionRow, values)
        elif isinstance(body, Logout):
            out: tuple[object, ...] = (frame.vin, frame.time, "logout", body.logout_seq, None, [])
            session = tuple.__new__(SessionRow, out)
    partial = frame.partial
    return FrameRows(
        edition=frame.edition,
        command=frame.command,
        vin=frame.vin,
        ts_ms=frame.ts_ms,
        encrypted=frame.encrypted,
        partial=partial,
        session=session,
        response=frame.response,
        tail_offset=frame.tail_offset if partial else None,
        signature_missing=frame.signature_missing,
    )


# VIN strings by their 17 raw bytes: a consumer sees the same vehicles every few seconds.
# Bounded, and cleared wholesale when full (a miss only costs ~0.3 us).
_VIN_CACHE_MAX: Final = 1 << 16
_VINS: dict[bytes, str] = {}


def _vin(raw: bytes) -> str:
    # Only real-time / reissue command packets come here: their ID must be a VIN. A bad one
    # raises and is never cached, so the cache holds valid VINs only.
    vin = check_identity(raw, True)
    if len(_VINS) >= _VIN_CACHE_MAX:
        _VINS.clear()
    _VINS[raw] = vin
    return vin


def _data(
    buf: bytes, edition: int, command: int, vin: str, end: int, received_at: datetime | None
) -> FrameRows:
    """Real-time / reissue data unit -> vehicle, motor, pack and alarm rows."""
    if end < 30:
        raise FrameError(TRUNCATED, HEADER_SIZE, "real-time data needs a 6-byte time")
    key = buf[24:30]
    hit = TIMES.get(key)
    ts, ts_ms = hit if hit is not None else frame_time(key, 24)
    walk = walk_2016 if edition == EDITION_2016 else walk_2025
    veh, position, extremes, alarm, motors, volts, temps, tail, hints, counted, signed = walk(
        buf, 30, end, vin, ts
    )
    if tail is not None:
        if edition == EDITION_2025:
            at = find_signature(buf, tail, end)
            signed = at is not None
            if at == tail:
                tail = None  # the walk stopped right at the signature (found backwards)
        if tail is not None and counted:
            _check_counts(buf, counted, end, edition, vin, ts)
    packs = join_packs(vin, ts, volts, temps, hints) if volts or temps else []
    derived = False
    if extremes is None and packs and edition != EDITION_2016:
        extremes = derive_extremes(packs)
        derived = extremes is not None
    unsigned = edition == EDITION_2025 and not signed
    head = (vin, ts, received_at, edition, command)
    body = (veh or _NO_VEHICLE) + (position or _NO_POSITION) + (extremes or NO_EXTREMES)
    alarm_row = None
    if alarm is None:
        values = (*head, *body, derived, None, None, 0, unsigned)
    else:
        level, flags, faults, ress, motor, engine, other, bit_levels = alarm
        values = (*head, *body, derived, level, flags, faults, unsigned)
        if level or flags:
            alarm_row = tuple.__new__(
                AlarmRow, (vin, ts, level, flags, ress, motor, engine, other, bit_levels)
            )
    # FrameRows' keyword __init__ costs ~0.35 us more than filling the slots directly, 5 % of
    # a frame; tests/unit/test_fast.py checks that every slot is set.
    rows: FrameRows = _new(FrameRows)
    rows.edition = edition
    rows.command = command
    rows.vin = vin
    rows.ts_ms = ts_ms
    rows.encrypted = False
    rows.partial = tail is not None
    rows.vehicle = tuple.__new__(VehicleRow, values)
    rows.motors = motors
    rows.packs = packs
    rows.alarm = alarm_row
    rows.session = None
    rows.response = _COMMAND
    rows.tail_offset = tail
    rows.signature_missing = unsigned
    rows.copy = None
    return rows


def _check_counts(
    buf: bytes, counted: list[int], end: int, edition: int, vin: str, ts: datetime
) -> None:
    """Raise ``count_mismatch`` when a smaller motor / pack count explains a stopped walk."""
    walk = walk_2016 if edition == EDITION_2016 else walk_2025

    def clean(at: int) -> bool:
        tail = walk(buf, at, end, vin, ts)[7]
        return tail is None or (edition == EDITION_2025 and find_signature(buf, tail, end) == tail)

    miscount = find_miscount(buf, counted, end, edition, clean)
    if miscount is not None:
        raise miscount
