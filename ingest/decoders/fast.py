"""The fast path: one GB/T 32960 frame to flat, typed rows (``ingest.decoders.rows``).

The pipeline needs rows for the database writer and the rule engine, not a structured
document, so this path goes straight from bytes to the row NamedTuples: precompiled
``struct`` layouts, sentinels to ``None`` inline, cell and probe arrays kept as the frame's
own bytes with per-row min/max. It agrees with the structured decoder field for field
(tests/unit/test_fast_agreement.py) and like it raises nothing but ``FrameError``.

    rows = decode_rows(frame, received_at)
    rows.vehicle   # VehicleRow for real-time (0x02) / reissue (0x03) data
    rows.motors, rows.packs, rows.alarm
    rows.session   # SessionRow for vehicle login (0x01) / logout (0x04)

Partial frames (a block of unknown length, or a custom block whose WORD length overruns the
data unit) keep every row decoded before it, with ``partial`` and ``tail_offset`` set;
encrypted frames give the envelope only (``encrypted``).
"""

from __future__ import annotations

import struct
from datetime import datetime
from typing import Final

from ingest.decoders.checksum import bcc
from ingest.decoders.envelope import (
    EDITION_2016,
    EDITION_2025,
    HEADER,
    HEADER_SIZE,
    MAX_DATA_LENGTH,
    parse_envelope,
)
from ingest.decoders.errors import BAD_FIELD, TRUNCATED, UNKNOWN_COMMAND, FrameError
from ingest.decoders.fast_2016 import walk_2016
from ingest.decoders.fast_2025 import walk_2025
from ingest.decoders.fast_common import (
    NO_EXTREMES,
    TIMES,
    derive_extremes,
    frame_time,
    join_packs,
)
from ingest.decoders.rows import AlarmRow, FrameRows, SessionRow, VehicleRow
from ingest.decoders.text import decode_text

__all__ = ["decode_rows"]

_COMMAND: Final = 0xFE  # response flag of a command packet (anything else is a response)
_NO_VEHICLE: Final = (None,) * 13
_NO_POSITION: Final = (None, None, None)
_LOGIN_HEAD: Final = struct.Struct(">H20sB")  # serial, ICCID, RESS/BMS count (after the time)
_WORD: Final = struct.Struct(">H")
_new: Final = object.__new__

# Commands with a layout in each edition (§2.1); 0xC0-0xFE are platform-exchange custom data,
# passed through as an envelope. Anything else is ``unknown_command``.
_KNOWN_2016: Final = frozenset({*range(0x01, 0x09), 0x80, 0x81, 0x82, *range(0xC0, 0xFF)})
_KNOWN_2025: Final = _KNOWN_2016 | {0x09, 0x0A, 0x0B}
# Commands whose data unit starts with the 6-byte time (all but heartbeat, time calibration,
# activation response, key exchange and custom data).
_TIMED: Final = frozenset({0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x09, 0x80, 0x81, 0x82})


def decode_rows(
    frame: bytes | bytearray | memoryview, received_at: datetime | None = None
) -> FrameRows:
    """Decode one whole frame (start marker through BCC) into rows; ``received_at`` (the
    gateway's receive time) is copied into the vehicle row. Raises ``FrameError`` only."""
    buf = frame if type(frame) is bytes else bytes(frame)
    size = len(buf)
    # The envelope checks of ``parse_envelope`` for a well-formed frame, without building an
    # Envelope; any doubt goes to ``parse_envelope`` itself, which raises the exact error.
    if size > HEADER_SIZE and buf[0] == buf[1] and (buf[0] == 0x23 or buf[0] == 0x24):
        _, command, response, vin_raw, encryption, length = HEADER.unpack_from(buf)
        end = HEADER_SIZE + length
        if size != end + 1 or length > MAX_DATA_LENGTH or bcc(buf, 2, end) != buf[end]:
            parse_envelope(buf)
            raise AssertionError("parse_envelope accepted a frame the fast check rejected")
        edition = EDITION_2016 if buf[0] == 0x23 else EDITION_2025
        vin = _VINS.get(vin_raw) or _vin(vin_raw)
    else:
        edition, command, response, vin, encryption, length = parse_envelope(buf)
        end = HEADER_SIZE + length
    if encryption != 0x01:
        # Ciphertext (or an undefined scheme): nothing to read past the header, not even time.
        return FrameRows(
            edition=edition,
            command=command,
            vin=vin,
            ts_ms=None,
            encrypted=True,
            response=response,
        )
    if command == 0x02 or command == 0x03:
        if response == _COMMAND:
            return _data(buf, edition, command, vin, end, received_at)
    elif edition == EDITION_2016:
        if command not in _KNOWN_2016:
            raise FrameError(UNKNOWN_COMMAND, 2, f"command {command:#04x} (2016)")
    elif command not in _KNOWN_2025:
        raise FrameError(UNKNOWN_COMMAND, 2, f"command {command:#04x} (2025)")
    ts: datetime | None = None
    ts_ms: int | None = None
    if (command in _TIMED or response != _COMMAND) and length >= 6:
        ts, ts_ms = frame_time(buf[24:30], 24)
    session = None
    if response == _COMMAND and ts is not None:
        if command == 0x01:
            session = _login(buf, edition, vin, ts, end)
        elif command == 0x04:
            session = _logout(buf, vin, ts, end)
    elif response == _COMMAND and command in (0x01, 0x04):
        raise FrameError(TRUNCATED, HEADER_SIZE, "login/logout needs a 6-byte time")
    return FrameRows(
        edition=edition,
        command=command,
        vin=vin,
        ts_ms=ts_ms,
        session=session,
        response=response,
    )


# VIN strings by their 17 raw bytes: a consumer sees the same vehicles every few seconds.
# Bounded, and cleared wholesale when full (a miss only costs ~0.3 us).
_VIN_CACHE_MAX: Final = 1 << 16
_VINS: dict[bytes, str] = {}


def _vin(raw: bytes) -> str:
    vin = decode_text(raw)
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
    if edition == EDITION_2016:
        veh, position, extremes, alarm, motors, volts, temps, tail, hints = walk_2016(
            buf, 30, end, vin, ts
        )
    else:
        veh, position, extremes, alarm, motors, volts, temps, tail, hints = walk_2025(
            buf, 30, end, vin, ts
        )
    packs = join_packs(vin, ts, volts, temps, hints) if volts or temps else []
    derived = False
    if extremes is None and packs and edition != EDITION_2016:
        extremes = derive_extremes(packs)
        derived = extremes is not None
    head = (vin, ts, received_at, edition, command)
    body = (veh or _NO_VEHICLE) + (position or _NO_POSITION) + (extremes or NO_EXTREMES)
    alarm_row = None
    if alarm is None:
        values = (*head, *body, derived, None, None, 0)
    else:
        level, flags, faults, ress, motor, engine, other, bit_levels = alarm
        values = (*head, *body, derived, level, flags, faults)
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
    return rows


def _login(buf: bytes, edition: int, vin: str, ts: datetime, end: int) -> SessionRow:
    """Vehicle login (§3.1): serial, ICCID and the pack codes (2016: n codes of m bytes;
    2025: BMS count, packs per BMS, then 24-byte GB/T 34014 codes)."""
    pos = 30
    if pos + 23 > end:
        raise FrameError(TRUNCATED, pos, "vehicle login needs serial, ICCID and a count")
    seq, iccid, n = _LOGIN_HEAD.unpack_from(buf, pos)
    pos += 23
    codes: list[str] = []
    if n < 0xFE:
        if edition == EDITION_2016:
            if pos >= end:
                raise FrameError(TRUNCATED, pos, "vehicle login needs the RESS code length")
            width = buf[pos]
            pos += 1
            count = n if width < 0xFE else 0
        else:
            if pos + n > end:
                raise FrameError(BAD_FIELD, pos - 1, f"{n} BMS pack counts overrun the data unit")
            count = sum(m for m in buf[pos : pos + n] if m < 0xFE)
            pos += n
            width = 24
        if width and count:
            if pos + count * width > end:
                raise FrameError(BAD_FIELD, pos - 1, f"{count} pack codes overrun the data unit")
            codes = [
                decode_text(buf[p : p + width]) for p in range(pos, pos + count * width, width)
            ]
    return tuple.__new__(
        SessionRow,
        (vin, ts, "login", None if seq >= 0xFFFE else seq, decode_text(iccid), codes),
    )


def _logout(buf: bytes, vin: str, ts: datetime, end: int) -> SessionRow:
    """Vehicle logout (§3.2): the time and the serial of the login it ends."""
    if end < 32:
        raise FrameError(TRUNCATED, 30, "vehicle logout needs the 2-byte serial")
    (seq,) = _WORD.unpack_from(buf, 30)
    return tuple.__new__(SessionRow, (vin, ts, "logout", None if seq >= 0xFFFE else seq, None, []))
