"""The charger profile's fast path: one frame to the rows of ``contract.charger``.

Real-time and reissue command packets -- nearly all the traffic -- go from bytes to rows in
one walk: the envelope checks of the vehicle fast path (``fast_common.plain_data``), header
codes, ConnectorIDs and VINs cached by their raw bytes (valid ones only), the five
information types read with precompiled ``struct`` layouts and their sentinels turned into
``None`` inline, the rows built as tuples. This is the layout of ``blocks.py`` written out a
second time on purpose: a generic ``Layout.read`` per block costs a third of the frame
budget. ``tests/unit/test_charger_fast.py`` checks both agree, field for field.

The walk is optimistic: at the first thing it does not place (an unknown type, a block that
overruns the data unit, a code outside T/CEC 102, an ID seen for the first time that fails
its check ...) it hands the whole frame to the structured decoder (``decode_charger_frame``)
and returns its rows, or lets its ``FrameError`` out. The structured decoder is therefore
the one judge of every reject (reason and offset), and the fast path cannot disagree with it
on one. Every other command (login, logout, heartbeat, responses, encrypted data) is rare and
goes the structured way too.
"""

from __future__ import annotations

import struct
from datetime import datetime
from typing import Any, Final

from contract.charger import (
    SOURCE_FRAME,
    ChargerFaultRow,
    ChargerRows,
    ChargerTelemetryRow,
    ChargingSessionRow,
    ConnectorStatusRow,
)
from ingest.decoders.charger.blocks import (
    CONNECTOR_ID_SIZE,
    CONNECTOR_STATUS,
    LOCK_STATUS,
    ORDER_STATES,
    PARK_STATUS,
    SEQ_SIZE,
    VIN_SIZE,
    code_string,
)
from ingest.decoders.charger.frame import check_charger_id, decode_charger_frame
from ingest.decoders.charger.rows import rows_of_charger_frame
from ingest.decoders.errors import FrameError
from ingest.decoders.fast_common import TIMES, U32_LISTS, frame_time, plain_data

__all__ = ["decode_charger_rows"]

_COMMAND: Final = 0xFE
_C: Final = CONNECTOR_ID_SIZE
_OUTPUT: Final = struct.Struct(">HHHIB")  # 0x02 after the ConnectorID (blocks._OUTPUT)
_DEMAND: Final = struct.Struct(">BHH")  # 0x03 after ConnectorID + VIN (blocks._DEMAND)
_MONEY: Final = struct.Struct(">III")  # 0x04 after ConnectorID, seq, state, time
_STATUS_SIZE: Final = _C + 3
_OUTPUT_SIZE: Final = _C + _OUTPUT.size
_DEMAND_SIZE: Final = _C + VIN_SIZE + _DEMAND.size
_ORDER_SIZE: Final = _C + SEQ_SIZE + 1 + 6 + _MONEY.size
_VIN_BYTES: Final = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_NO_VIN: Final = b"\x00" * VIN_SIZE
_NO_CID: Final = b"\x00" * _C
_new: Final = object.__new__

# Raw bytes -> text of valid header codes, ConnectorIDs, StartChargeSeqs and VINs (the sizes,
# 17 / 26 / 27 / 17, keep header codes and VINs apart by the dict, not the size). A consumer
# sees the same connectors every few seconds; the dicts are cleared when full.
_CACHE_MAX: Final = 1 << 16
_HEADS: dict[bytes, str] = {}
_TEXTS: dict[bytes, str] = {}


class _Stop(Exception):
    """The walk met something only the structured decoder places."""


def decode_charger_rows(
    frame: bytes | bytearray | memoryview, received_at: datetime | None = None
) -> ChargerRows:
    """One whole charger frame to rows; ``received_at`` goes into the telemetry rows.
    Raises ``FrameError`` only, with the structured decoder's reason and offset."""
    buf = frame if type(frame) is bytes else bytes(frame)
    plain = plain_data(buf)
    if plain is not None and buf[0] == 0x23 and plain[2] >= 30:  # "##" and a time
        command, raw_id, end = plain
        try:
            return _data(buf, command, raw_id, end, received_at)
        except (_Stop, FrameError):
            pass
    return rows_of_charger_frame(decode_charger_frame(buf), received_at)


def _text(raw: bytes, what: str) -> str:
    """A ConnectorID / StartChargeSeq not cached yet: checked as ``blocks.code_string`` does
    (its ``FrameError`` sends the frame to the structured decoder)."""
    text = code_string(raw, 0, len(raw), what)
    if len(_TEXTS) >= _CACHE_MAX:
        _TEXTS.clear()
    _TEXTS[raw] = text
    return text


def _data(
    buf: bytes, command: int, raw_id: bytes, end: int, received_at: datetime | None
) -> ChargerRows:
    charger_id = _HEADS.get(raw_id)
    if charger_id is None:
        charger_id = check_charger_id(raw_id)
        if len(_HEADS) >= _CACHE_MAX:
            _HEADS.clear()
        _HEADS[raw_id] = charger_id
    op = charger_id[:9]
    key = buf[24:30]
    hit = TIMES.get(key)
    ts, ts_ms = hit if hit is not None else frame_time(key, 24)
    texts = _TEXTS
    new = tuple.__new__
    statuses: list[Any] = []
    faults: list[Any] = []
    outputs: dict[str, tuple[Any, ...]] = {}
    demands: dict[str, tuple[Any, ...]] = {}
    orders: list[tuple[str, str, int, datetime, Any, Any, Any]] = []
    pos = 30
    while pos < end:
        t = buf[pos]
        pos += 1
        raw = buf[pos : pos + _C]
        cid = texts.get(raw)
        if t == 0x02:
            if pos + _OUTPUT_SIZE > end:
                raise _Stop
            if cid is None:
                cid = _text(raw, "ConnectorID")
            v, i, w, e, temp = _OUTPUT.unpack_from(buf, pos + _C)
            outputs[cid] = (
                None if v >= 0xFFFE else v / 10,
                None if i >= 0xFFFE else i / 10,
                None if w >= 0xFFFE else w / 10,
                None if e >= 0xFFFFFFFE else e / 1000,
                None if temp >= 0xFE else temp - 40,
            )
            pos += _OUTPUT_SIZE
        elif t == 0x03:
            if pos + _DEMAND_SIZE > end:
                raise _Stop
            if cid is None:
                cid = _text(raw, "ConnectorID")
            p = pos + _C
            raw_vin = buf[p : p + VIN_SIZE]
            vin = None
            if raw_vin != _NO_VIN:
                vin = texts.get(raw_vin)
                if vin is None:
                    vin = _vin(raw_vin)
            soc, dv, di = _DEMAND.unpack_from(buf, p + VIN_SIZE)
            demands[cid] = (
                vin,
                None if soc >= 0xFE else soc,
                None if dv >= 0xFFFE else dv / 10,
                None if di >= 0xFFFE else di / 10,
            )
            pos += _DEMAND_SIZE
        elif t == 0x01:
            if pos + _STATUS_SIZE > end:
                raise _Stop
            if cid is None:
                cid = _text(raw, "ConnectorID")
            p = pos + _C
            st, park, lock = buf[p], buf[p + 1], buf[p + 2]
            if st not in CONNECTOR_STATUS or park not in PARK_STATUS or lock not in LOCK_STATUS:
                raise _Stop
            row = (op, cid, ts, st, park, lock, SOURCE_FRAME)
            statuses.append(new(ConnectorStatusRow, row))
            pos += _STATUS_SIZE
        elif t == 0x04:
            if pos + _ORDER_SIZE > end:
                raise _Stop
            if cid is None:
                cid = _text(raw, "ConnectorID")
            p = pos + _C
            raw_seq = buf[p : p + SEQ_SIZE]
            seq = texts.get(raw_seq)
            if seq is None:
                seq = _text(raw_seq, "StartChargeSeq")
            if len(seq) != SEQ_SIZE:
                raise _Stop
            p += SEQ_SIZE
            state = buf[p]
            if state not in ORDER_STATES:
                raise _Stop
            tkey = buf[p + 1 : p + 7]
            thit = TIMES.get(tkey)
            start = (thit if thit is not None else frame_time(tkey, p + 1))[0]
            em, sm, tm = _MONEY.unpack_from(buf, p + 7)
            orders.append(
                (
                    cid,
                    seq,
                    state,
                    start,
                    None if em >= 0xFFFFFFFE else em / 100,
                    None if sm >= 0xFFFFFFFE else sm / 100,
                    None if tm >= 0xFFFFFFFE else tm / 100,
                )
            )
            pos += _ORDER_SIZE
        elif t == 0x05:
            p = pos + _C
            if p + 1 > end:
                raise _Stop
            n = buf[p]
            if p + 1 + 4 * n > end:
                raise _Stop
            if cid is None:
                cid = "" if raw == _NO_CID else _fault_cid(raw)
            codes = list(U32_LISTS[n].unpack_from(buf, p + 1))
            faults.append(new(ChargerFaultRow, (op, cid, ts, charger_id, codes, SOURCE_FRAME)))
            pos = p + 1 + 4 * n
        else:
            raise _Stop
    rows: ChargerRows = _new(ChargerRows)
    rows.operator_id = op
    rows.charger_id = charger_id
    rows.command = command
    rows.ts_ms = ts_ms
    rows.response = _COMMAND
    rows.encrypted = False
    rows.connectors = []
    rows.statuses = statuses
    rows.faults = faults
    rows.telemetry = telemetry = []
    rows.sessions = sessions = []
    # The join of rows.py: connectors in first-seen order, output ones before demand-only ones.
    keys = outputs if demands.keys() <= outputs.keys() else dict.fromkeys([*outputs, *demands])
    for cid in keys:
        out = outputs.get(cid, _NO_OUTPUT)
        dem = demands.get(cid, _NO_DEMAND)
        values = (op, cid, ts, received_at, charger_id, *out, *dem, SOURCE_FRAME)
        telemetry.append(new(ChargerTelemetryRow, values))
    for cid, seq, state, start, em, sm, tm in orders:
        o = outputs.get(cid)
        d = demands.get(cid)
        values = (
            op,
            cid,
            ts,
            seq,
            "progress",
            state,
            start,
            None,
            None if o is None else o[3],
            em,
            sm,
            tm,
            None,
            None if d is None else d[0],
            SOURCE_FRAME,
        )
        sessions.append(new(ChargingSessionRow, values))
    return rows


_NO_OUTPUT: Final = (None, None, None, None, None)
_NO_DEMAND: Final = (None, None, None, None)


def _vin(raw: bytes) -> str:
    for b in raw:
        if b not in _VIN_BYTES:
            raise _Stop
    vin = raw.decode("ascii")
    if len(_TEXTS) >= _CACHE_MAX:
        _TEXTS.clear()
    _TEXTS[raw] = vin
    return vin


def _fault_cid(raw: bytes) -> str:
    """A fault block's ConnectorID: all padding is the pile (""), else a ConnectorID."""
    if not raw.strip(b"\x00 "):
        return ""
    return _text(raw, "ConnectorID")
