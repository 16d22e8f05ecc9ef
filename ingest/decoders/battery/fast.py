"""The pack profile's fast path: one frame to flat rows (``contract.battery``).

Real-time and reissue command packets -- nearly all the traffic -- go from bytes to a
``PackTelemetryRow`` directly: the envelope checks inline, validated header IDs and pack codes
cached by their raw bytes, the five information types read with precompiled layouts, cell and
probe arrays kept as the frame's own bytes with their min/max. Custom blocks are skipped by
their WORD length. When the walk meets something it does not place (an unknown type, an
overrun, the 2025 signature) it asks the structured decoder (``decode_pack_frame``), which
applies the same rules, whether the frame is partial; the rows of the blocks before that
point are kept. Every other frame goes through the structured decoder, and login / logout
become a ``PackSessionRow``. Raises only ``FrameError``; agrees with ``decode_pack_frame``
(tests/unit/test_battery_fast.py).

If a type repeats in one frame, the last one wins (in both decoders' rows).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from contract.battery import PackAlarmRow, PackFrameRows, PackSessionRow, PackTelemetryRow
from ingest.decoders.battery.blocks import SITE_ID_SIZE, STATE_LAYOUT
from ingest.decoders.battery.frame import (
    PackFrame,
    PackLogin,
    PackLogout,
    decode_pack_frame,
)
from ingest.decoders.envelope import EDITION_2016, EDITION_2025
from ingest.decoders.errors import FrameError
from ingest.decoders.fast_common import TIMES, U32_LISTS, frame_time, plain_data
from ingest.decoders.fast_extremes import cell_extremes, probe_extremes
from ingest.decoders.pack_code import CODE_LENGTH
from ingest.decoders.text import decode_text

__all__ = ["decode_pack_rows", "rows_of_pack_frame"]

_COMMAND: Final = 0xFE
# blocks.STATE_LAYOUT as one struct: a generic ``Layout.read`` costs a tenth of the frame
# budget; tests/unit/test_battery_fast.py checks the inline conversions agree with it.
_STATE: Final = STATE_LAYOUT.struct
_new: Final = object.__new__
_NO_STATE: Final = (None,) * 8
_CACHE_MAX: Final = 1 << 16
_IDS: dict[bytes, str] = {}  # header ID bytes -> ID (valid ones only)
_CODES: dict[bytes, str] = {}  # pack code bytes -> code (valid ones only)


class _Stop(Exception):
    """The walk met something only the structured decoder places."""


def decode_pack_rows(
    frame: bytes | bytearray | memoryview, received_at: datetime | None = None
) -> PackFrameRows:
    """Decode one whole frame into rows; ``received_at`` goes into the telemetry row."""
    buf = frame if type(frame) is bytes else bytes(frame)
    plain = plain_data(buf)
    if plain is not None and plain[2] >= 30 + CODE_LENGTH:
        command, raw_id, end = plain
        ident = _IDS.get(raw_id)
        code = _CODES.get(buf[30:54])
        if ident is not None and code is not None and code[7:] == ident:
            edition = EDITION_2016 if buf[0] == 0x23 else EDITION_2025
            return _data(buf, edition, command, code, end, received_at)
        # First sight of this pack: the structured decoder checks the frame in its order
        # (time, then pack code, then ID) and raises its exact error; then cache both.
        structured = decode_pack_frame(buf)
        if structured.pack_code is not None:
            _remember(raw_id, buf[30:54], structured.ident, structured.pack_code)
            edition = EDITION_2016 if buf[0] == 0x23 else EDITION_2025
            return _data(buf, edition, command, structured.pack_code, end, received_at)
        return rows_of_pack_frame(structured)
    return rows_of_pack_frame(decode_pack_frame(buf))


def _remember(raw_id: bytes, raw_code: bytes, ident: str, code: str) -> None:
    if len(_IDS) >= _CACHE_MAX:
        _IDS.clear()
        _CODES.clear()
    _IDS[raw_id] = ident
    _CODES[raw_code] = code


def _data(
    buf: bytes, edition: int, command: int, code: str, end: int, received_at: datetime | None
) -> PackFrameRows:
    key = buf[24:30]
    hit = TIMES.get(key)
    ts, ts_ms = hit if hit is not None else frame_time(key, 24)
    state: Any = _NO_STATE
    site_id = slot = None
    cell_count = cell_min = cell_max = probe_count = probe_min = probe_max = None
    cells_raw = probes_raw = b""
    alarm: Any = None
    pos = 30 + CODE_LENGTH
    tail = None
    try:
        while pos < end:
            t = buf[pos]
            if t == 0x01:
                if pos + 1 + _STATE.size > end:
                    raise _Stop
                stage, work, soc, soh, cycles, v, i, ins = _STATE.unpack_from(buf, pos + 1)
                # blocks.STATE_LAYOUT's fields, their sentinels to None inline (see _STATE).
                state = (
                    None if stage >= 0xFE else stage,
                    None if work >= 0xFE else work,
                    None if soc >= 0xFE else soc,
                    None if soh >= 0xFE else soh,
                    None if cycles >= 0xFFFE else cycles,
                    None if v >= 0xFFFE else v / 10,
                    None if i >= 0xFFFE else (i - 30_000) / 10,
                    None if ins >= 0xFFFE else ins,
                )
                pos += 1 + _STATE.size
            elif t == 0x02:
                if pos + 3 + SITE_ID_SIZE > end:
                    raise _Stop
                site_id = decode_text(buf[pos + 1 : pos + 1 + SITE_ID_SIZE]) or None
                s = buf[pos + 1 + SITE_ID_SIZE] << 8 | buf[pos + 2 + SITE_ID_SIZE]
                slot = None if s >= 0xFFFE else s
                pos += 3 + SITE_ID_SIZE
            elif t == 0x03 or t == 0x04:
                # A counted list (cells WORD mV, probes BYTE °C+40), count FFFE/FFFF: none.
                # Extremes with the vehicle path's C-speed helpers (fast_extremes.py).
                if pos + 3 > end:
                    raise _Stop
                n = buf[pos + 1] << 8 | buf[pos + 2]
                pos += 3
                raw = b""
                low = high = count = None
                if n < 0xFFFE:
                    count = n
                    stop = pos + (n << 1 if t == 0x03 else n)
                    if stop > end:
                        raise _Stop
                    raw = buf[pos:stop]
                    low, high = cell_extremes(raw) if t == 0x03 else probe_extremes(raw)
                    pos = stop
                if t == 0x03:
                    cell_count, cells_raw, cell_min, cell_max = count, raw, low, high
                else:
                    probe_count, probes_raw, probe_min, probe_max = count, raw, low, high
            elif t == 0x05:
                alarm, pos = _alarm(buf, pos, end)
            elif 0x80 <= t <= 0xFE and pos + 3 <= end:
                n = buf[pos + 1] << 8 | buf[pos + 2]
                if pos + 3 + n > end:
                    raise _Stop
                pos += 3 + n
            else:
                raise _Stop
    except (_Stop, FrameError):
        structured = decode_pack_frame(buf)
        tail = structured.tail_offset if structured.partial else None
    level = flags = None
    faults = 0
    alarm_row = None
    if alarm is not None:
        level, flags, codes = alarm
        faults = len(codes) if codes is not None else 0
        if level or flags:
            alarm_row = tuple.__new__(PackAlarmRow, (code, ts, level, flags, list(codes or ())))
    values = (
        code,
        ts,
        received_at,
        edition,
        command,
        *state,
        site_id,
        slot,
        cell_count,
        cells_raw,
        cell_min,
        cell_max,
        probe_count,
        probes_raw,
        probe_min,
        probe_max,
        level,
        flags,
        faults,
    )
    # Slots filled inline like fast.py's FrameRows (a shared helper costs a call per frame on
    # the vehicle hot path): the pairing ``duplicates`` reports here is deliberate.
    rows: PackFrameRows = _new(PackFrameRows)
    rows.edition = edition
    rows.command = command
    rows.pack_code = code
    rows.ts_ms = ts_ms
    rows.encrypted = False
    rows.partial = tail is not None
    rows.telemetry = tuple.__new__(PackTelemetryRow, values)
    rows.alarm = alarm_row
    rows.session = None
    rows.response = _COMMAND
    rows.tail_offset = tail
    return rows


def _alarm(buf: bytes, pos: int, end: int) -> tuple[tuple[Any, ...], int]:
    if pos + 7 > end:
        raise _Stop
    level = buf[pos + 1]
    flags = int.from_bytes(buf[pos + 2 : pos + 6], "big")
    n = buf[pos + 6]
    pos += 7
    codes: tuple[int, ...] | None = None
    if n < 0xFE:
        if pos + 4 * n > end:
            raise _Stop
        codes = U32_LISTS[n].unpack_from(buf, pos)
        pos += 4 * n
    return (None if level >= 0xFE else level, flags, codes), pos


def rows_of_pack_frame(frame: PackFrame) -> PackFrameRows:
    """The rows of a structured frame that is not real-time data: the envelope, and the
    session row of a login / logout command packet."""
    session = None
    body = frame.body
    code = frame.pack_code if frame.pack_code is not None else frame.ident
    if frame.time is not None and frame.pack_code is not None:
        if isinstance(body, PackLogin):
            values: tuple[object, ...] = (
                code,
                frame.time,
                "login",
                body.login_seq,
                body.iccid,
                body.original_code,
                body.rated_capacity_ah,
                body.rated_energy_kwh,
                body.nominal_voltage_v,
                body.cell_count,
                body.probe_count,
            )
            session = tuple.__new__(PackSessionRow, values)
        elif isinstance(body, PackLogout):
            out = (code, frame.time, "logout", body.logout_seq, *(None,) * 7)
            session = tuple.__new__(PackSessionRow, out)
    return PackFrameRows(
        edition=frame.edition,
        command=frame.command,
        pack_code=code,
        ts_ms=frame.ts_ms,
        encrypted=frame.encrypted,
        partial=frame.partial,
        session=session,
        response=frame.response,
        tail_offset=frame.tail_offset if frame.partial else None,
    )
