"""T/CEC 102 business JSON (``nev.charger.tcec``) to the rows of ``contract.charger``.

The gateway checks and opens the operator's envelope (OperatorID, AES-128-CBC + Base64 Data,
TimeStamp, Seq, HMAC-MD5 Sig) and puts the decrypted ``Data`` on the topic with the operator
id, the interface name and the envelope TimeStamp in headers; this module reads that JSON.

    rows = decode_tcec(data, "notification_stationStatus", "MA01H3BQ2", pushed_at)

Field names and codes are the standard's (docs/protocols/charger.md, "T/CEC 102 pushes").
A message is taken whole or not at all: a missing required field, a code outside the
standard's set, a time that is not "yyyy-MM-dd HH:mm:ss" or a value of the wrong type
rejects the message with a named reason (``FrameError``, offset 0, or the JSON error's
position for ``bad_json``), and nothing is filled in by guess.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final

import orjson

from contract.charger import (
    SOURCE_TCEC,
    ChargerRows,
    ChargerTelemetryRow,
    ChargingSessionRow,
    ConnectorInfoRow,
    ConnectorStatusRow,
)
from contract.clock import CHINA_TZ, EARLIEST
from ingest.decoders.charger.blocks import (
    CONNECTOR_STATUS,
    CONNECTOR_TYPES,
    LOCK_STATUS,
    OPERATOR_ID_SIZE,
    ORDER_STATES,
    PARK_STATUS,
)
from ingest.decoders.errors import (
    BAD_CODE,
    BAD_FIELD,
    BAD_JSON,
    BAD_TIME,
    MISSING_FIELD,
    TCEC_REASONS,
    UNKNOWN_INTERFACE,
    FrameError,
)

__all__ = [
    "INTERFACES",
    "OPERATOR_ID_RULE",
    "TCEC_REASONS",
    "decode_tcec",
    "is_operator_id",
    "is_seq",
    "parse_tcec_timestamp",
    "push_time",
]

STOP_REASONS: Final = frozenset(range(100))  # 0..4 defined, 5..99 operator-defined
NATIONAL_STANDARDS: Final = frozenset({1, 2})
ID_MAX: Final = 50  # ConnectorID: 26 in T/CEC 102.4; regional profiles allow up to 50
SEQ_SIZE: Final = 27
SEQ_DIGITS: Final = 4  # the envelope's Seq, "0001".."9999" (not StartChargeSeq)
# A number must fit its column (real / integer), or the COPY fails at the database and the
# batch is bisected: a push with an absurd value is rejected here instead, as bad_field.
REAL_MAX: Final = 3.4e38
INT4_MAX: Final = 2**31 - 1

_Obj = dict[str, Any]
_ID: Final = re.compile(r"[\x21-\x7e]+")
_VIN: Final = re.compile(r"[0-9A-Z]{17}")
# OperatorID is the operator's organisation code (T/CEC 102: "运营商ID ... 组织机构代码", 9
# characters), whose alphabet (GB 11714 and GB 32100's code that embeds it) is digits and
# upper-case Latin letters. Lower case is refused everywhere (operators file, envelope, Kafka
# header, decoder): the binary profile's header code already requires it, and an account can
# only be scoped to [A-Z0-9]{9} (roles grant --scope, account_scopes' CHECK), so data stored
# under "ma01h3bq2" could never be shown to its operator.
_OPERATOR_ID: Final = re.compile(r"[0-9A-Z]{9}")
OPERATOR_ID_RULE: Final = "9 digits / upper-case letters, the organisation code"
_TIME: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}")


def is_operator_id(text: str) -> bool:
    """True for a T/CEC 102 OperatorID: 9 digits / upper-case letters."""
    return _OPERATOR_ID.fullmatch(text) is not None


def _fail(reason: str, detail: str) -> FrameError:
    return FrameError(reason, 0, detail)


def _get(obj: _Obj, key: str, path: str) -> Any:
    v = obj.get(key)
    if v is None:
        raise _fail(MISSING_FIELD, f"{path}{key} is required")
    return v


def _obj(v: Any, path: str) -> _Obj:
    if type(v) is not dict:
        raise _fail(BAD_FIELD, f"{path} must be an object")
    return v


def _str(obj: _Obj, key: str, path: str, size: int = ID_MAX) -> str:
    # An identifier is 1..size characters 0x21..0x7E, the binary profile's rule. No space, not
    # even a trailing one: the profile strips the padding of its fixed-width fields, but a JSON
    # string has no padding, and "C1 " read as is would be a connector other than "C1" (and
    # "   " one at all); stripped, it would be a guess. So it is refused, as bad_field.
    v = _get(obj, key, path)
    if type(v) is not str or len(v) > size or _ID.fullmatch(v) is None:
        raise _fail(
            BAD_FIELD,
            f"{path}{key} = {repr(v)[: size + 10]} must be 1..{size} printable ASCII characters "
            "(0x21..0x7E, no spaces)",
        )
    return v


def _optional(obj: _Obj, key: str) -> Any:
    """An optional field's value; None when absent, null or "": platforms send an empty
    string for a field they do not fill, which says "not given", not a bad value."""
    v = obj.get(key)
    return None if v == "" else v


def _vin(obj: _Obj, key: str, path: str) -> str | None:
    """An optional VIN: not given, or 17 digits / upper-case letters (the binary profile's
    rule, docs/protocols/charger.md), else bad_field."""
    v = _optional(obj, key)
    if v is None:
        return None
    if type(v) is not str or _VIN.fullmatch(v) is None:
        raise _fail(
            BAD_FIELD, f"{path}{key} = {repr(v)[:30]} must be 17 digits / upper-case letters"
        )
    return v


def _num(
    obj: _Obj, key: str, path: str, required: bool = True, limit: float = REAL_MAX
) -> float | None:
    """A number field as a float (None: an optional one not given); beyond ``limit``, or not
    a number, is bad_field (the push to the dead-letter topic)."""
    v = obj.get(key) if required else _optional(obj, key)
    if v is None:
        if required:
            raise _fail(MISSING_FIELD, f"{path}{key} is required")
        return None
    if type(v) is not int and type(v) is not float:
        raise _fail(BAD_FIELD, f"{path}{key} must be a number, not {type(v).__name__}")
    if not -limit <= v <= limit:
        raise _fail(BAD_FIELD, f"{path}{key} = {v!r} is out of range (|value| <= {limit:g})")
    # A JSON number is a double here, written "5" or "5.0", as the profile has it. Kept an
    # int, one beyond 2**53 (orjson reads ints up to 2**64) reached the rule engine as is,
    # where the native runner refuses it (a double cannot compare it exactly) and the Python
    # one compared it exactly: the two judged the push differently. As a float, both judge
    # the same double. A double precision column stores that double; a real column (voltage,
    # current, SOC, power) stores the 4-byte float nearest it, as it would any double.
    return float(v)


def _whole(obj: _Obj, key: str, path: str) -> int:
    """A required number of an integer column (``INT4_MAX`` at most): ``750`` or ``750.0``
    is 750; a fraction is bad_field. ``int()`` once truncated 750.9 to 750 without a word."""
    v = _num(obj, key, path, limit=INT4_MAX)  # required: never None
    if v is not None and v.is_integer():
        return int(v)
    raise _fail(
        BAD_FIELD, f"{path}{key} = {obj.get(key)!r} must be a whole number (an integer column)"
    )


def _code(obj: _Obj, key: str, path: str, codes: frozenset[int], required: bool = True) -> Any:
    v = obj.get(key) if required else _optional(obj, key)
    if v is None:
        if required:
            raise _fail(MISSING_FIELD, f"{path}{key} is required")
        return None
    if type(v) is not int or v not in codes:
        raise _fail(BAD_CODE, f"{path}{key} = {v!r} is not one of {sorted(codes)}")
    return v


def _time(obj: _Obj, key: str, path: str) -> datetime:
    v = _get(obj, key, path)
    # "yyyy-MM-dd HH:mm:ss", Beijing time, and nothing else: every digit where the pattern has
    # one. A looser check let "2025-03-01 10:00-05" through to fromisoformat, which read it as
    # 10:00 at UTC-5, and the offset was then replaced by +08:00 without a word.
    if type(v) is not str or _TIME.fullmatch(v) is None:
        raise _fail(BAD_TIME, f"{path}{key} = {v!r}: expected 'yyyy-MM-dd HH:mm:ss'")
    try:
        at = datetime.strptime(v, "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA_TZ)
    except ValueError:
        raise _fail(BAD_TIME, f"{path}{key} = {v!r}: not a date and time") from None
    # No charge is older than 2000 (contract.clock.EARLIEST). "0001-01-01 00:00:00" (.NET's
    # DateTime.MinValue, a common "unset") once passed here as a StartTime, which no time
    # window judges, and overflowed asyncpg's timestamptz encoder: the batch was bisected.
    if at < EARLIEST:
        raise _fail(
            BAD_TIME, f"{path}{key} = {v!r} is before 2000-01-01: send the real time (China time)"
        )
    return at


def _seq(obj: _Obj, path: str, op: str) -> str:
    seq = _str(obj, "StartChargeSeq", path, SEQ_SIZE)
    if len(seq) != SEQ_SIZE:
        raise _fail(BAD_FIELD, f"{path}StartChargeSeq {seq!r} must be 27 characters")
    # "运营商ID+唯一编号" (OperatorID + 18): the prefix must be the pushing operator's. The
    # session key has no operator (start_charge_seq, ts, event, source), so another operator's
    # push with this number and the same EndTime suppressed the real order as a duplicate.
    if seq[:OPERATOR_ID_SIZE] != op:
        raise _fail(BAD_FIELD, f"{path}StartChargeSeq {seq!r} must begin with the OperatorID {op}")
    return seq


def _station_status(data: _Obj, op: str, pushed_at: datetime, rows: ChargerRows) -> None:
    info = data.get("ConnectorStatusInfo")
    if info is None:
        raise _fail(MISSING_FIELD, "ConnectorStatusInfo is required")
    # The standard pushes one object; some platforms send a list of them: both are read,
    # and one bad entry rejects the message.
    items = info if type(info) is list else [info]
    if not items:
        raise _fail(MISSING_FIELD, "ConnectorStatusInfo is empty")
    for i, raw in enumerate(items):
        path = f"ConnectorStatusInfo[{i}]." if type(info) is list else "ConnectorStatusInfo."
        o = _obj(raw, path[:-1])
        rows.statuses.append(
            ConnectorStatusRow(
                op,
                _str(o, "ConnectorID", path),
                pushed_at,
                _code(o, "Status", path, CONNECTOR_STATUS),
                _code(o, "ParkStatus", path, PARK_STATUS, required=False),
                _code(o, "LockStatus", path, LOCK_STATUS, required=False),
                SOURCE_TCEC,
            )
        )


def _charge_status(data: _Obj, op: str, pushed_at: datetime, rows: ChargerRows) -> None:
    seq = _seq(data, "", op)
    state = _code(data, "StartChargeSeqStat", "", ORDER_STATES)
    cid = _str(data, "ConnectorID", "")
    status = _code(data, "ConnectorStatus", "", CONNECTOR_STATUS)
    current = _num(data, "CurrentA", "")
    voltage = _num(data, "VoltageA", "")
    soc = _num(data, "Soc", "")
    start = _time(data, "StartTime", "")
    end = _time(data, "EndTime", "")  # "本次采样时间": the time of this sample
    # The rows' time is EndTime + the push's Seq in µs (``push_time`` put the Seq into
    # pushed_at's microseconds; whole seconds come from the TimeStamp), as status pushes are
    # at TimeStamp + Seq µs: EndTime has whole seconds, and two pushes of one connector in one
    # second (charging, then ended) shared a key, so the later was dropped as a duplicate
    # while latest_state took it. Now both are stored, in Seq order, and the later wins in
    # both; a push delivered again has the same Seq, hence the same rows.
    ts = end + timedelta(microseconds=pushed_at.microsecond)
    energy = _num(data, "TotalPower", "")
    vin = _vin(data, "Vin", "")
    if soc is not None and not 0 <= soc <= 100:
        # the value as sent (150, not the float 150.0 it became)
        raise _fail(BAD_FIELD, f"Soc = {data['Soc']!r} is not 0..100")
    # As in charge_order_info: a session cannot start after its sample. The sample time is
    # judged by the frame-time window, so this also keeps a StartTime ahead of it (2099) out
    # of the session start of the charging_sessions view.
    if end < start:
        raise _fail(BAD_TIME, f"EndTime {end:%Y-%m-%d %H:%M:%S} is before StartTime")
    rows.statuses.append(ConnectorStatusRow(op, cid, ts, status, None, None, SOURCE_TCEC))
    rows.telemetry.append(
        ChargerTelemetryRow(
            op,
            cid,
            ts,
            None,
            None,
            voltage,
            current,
            None,
            energy,
            None,
            vin,
            soc,
            None,
            None,
            SOURCE_TCEC,
        )
    )
    rows.sessions.append(
        ChargingSessionRow(
            op, cid, ts, seq, "progress", state, start, None, energy,
            _num(data, "ElecMoney", "", False), _num(data, "SeviceMoney", "", False),
            _num(data, "TotalMoney", "", False), None, vin, SOURCE_TCEC,
        )
    )  # fmt: skip


def _order_info(data: _Obj, op: str, pushed_at: datetime, rows: ChargerRows) -> None:
    seq = _seq(data, "", op)
    cid = _str(data, "ConnectorID", "")
    start = _time(data, "StartTime", "")
    end = _time(data, "EndTime", "")
    energy = _num(data, "TotalPower", "")
    elec = _num(data, "TotalElecMoney", "")
    service = _num(data, "TotalSeviceMoney", "")
    total = _num(data, "TotalMoney", "")
    stop = _code(data, "StopReason", "", STOP_REASONS)
    vin = _vin(data, "Vin", "")
    if end < start:
        raise _fail(BAD_TIME, f"EndTime {end:%Y-%m-%d %H:%M:%S} is before StartTime")
    rows.sessions.append(
        ChargingSessionRow(
            op, cid, end, seq, "order", None, start, end, energy, elec, service, total, stop,
            vin, SOURCE_TCEC,
        )
    )  # fmt: skip


def _station_info(data: _Obj, op: str, pushed_at: datetime, rows: ChargerRows) -> None:
    st = _obj(_get(data, "StationInfo", ""), "StationInfo")
    station = _str(st, "StationID", "StationInfo.", 20)
    equipments = _get(st, "EquipmentInfos", "StationInfo.")
    if type(equipments) is not list:
        raise _fail(BAD_FIELD, "StationInfo.EquipmentInfos must be a list")
    for i, eq_raw in enumerate(equipments):
        ep = f"StationInfo.EquipmentInfos[{i}]."
        eq = _obj(eq_raw, ep[:-1])
        equipment = _str(eq, "EquipmentID", ep, 23)
        connectors = _get(eq, "ConnectorInfos", ep)
        if type(connectors) is not list:
            raise _fail(BAD_FIELD, f"{ep}ConnectorInfos must be a list")
        for j, c_raw in enumerate(connectors):
            cp = f"{ep}ConnectorInfos[{j}]."
            c = _obj(c_raw, cp[:-1])
            upper = _whole(c, "VoltageUpperLimits", cp)
            lower = _whole(c, "VoltageLowerLimits", cp)
            current = _whole(c, "Current", cp)
            rows.connectors.append(
                ConnectorInfoRow(
                    op,
                    _str(c, "ConnectorID", cp),
                    pushed_at,
                    station,
                    equipment,
                    None,
                    _code(c, "ConnectorType", cp, CONNECTOR_TYPES),
                    upper,
                    lower,
                    current,
                    _num(c, "Power", cp),
                    _code(c, "NationalStandard", cp, NATIONAL_STANDARDS, required=False),
                    SOURCE_TCEC,
                )
            )


_Handler = Callable[[_Obj, str, datetime, ChargerRows], None]
INTERFACES: Final[dict[str, _Handler]] = {
    "notification_stationStatus": _station_status,
    "notification_equip_charge_status": _charge_status,
    "notification_charge_order_info": _order_info,
    "notification_stationInfo": _station_info,
}


def decode_tcec(
    data: bytes | bytearray | memoryview, interface: str, operator_id: str, pushed_at: datetime
) -> ChargerRows:
    """One T/CEC 102 push (the decrypted ``Data``) to rows; ``pushed_at`` (``push_time``:
    the envelope's TimeStamp + Seq µs, aware) is the time of the interfaces that carry none
    of their own (status and station pushes), and its Seq µs are added to EndTime for
    equip_charge_status rows. Raises ``FrameError`` only."""
    handler = INTERFACES.get(interface)
    if handler is None:
        raise _fail(
            UNKNOWN_INTERFACE, f"interface {interface!r} is not one of {sorted(INTERFACES)}"
        )
    if not is_operator_id(operator_id):
        raise _fail(BAD_FIELD, f"operator id {operator_id!r}: OperatorID is {OPERATOR_ID_RULE}")
    try:
        doc = orjson.loads(bytes(data))
    except orjson.JSONDecodeError as exc:
        raise FrameError(BAD_JSON, exc.pos, f"{interface}: {exc.msg}") from None
    if type(doc) is not dict:
        raise _fail(
            BAD_JSON, f"{interface}: the data is a JSON {type(doc).__name__}, not an object"
        )
    rows = ChargerRows(operator_id=operator_id)
    handler(doc, operator_id, pushed_at, rows)
    return rows


def parse_tcec_timestamp(text: str) -> datetime:
    """The envelope's TimeStamp (``yyyyMMddHHmmss``, Beijing time; the ``tcec_timestamp``
    header) as an aware datetime; ``FrameError(bad_time)`` for anything else."""
    if len(text) != 14 or not text.isascii() or not text.isdigit():
        raise _fail(BAD_TIME, f"TimeStamp {text!r}: expected yyyyMMddHHmmss (14 digits)")
    try:
        return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=CHINA_TZ)
    except ValueError:
        raise _fail(BAD_TIME, f"TimeStamp {text!r}: not a date and time") from None


def is_seq(text: str) -> bool:
    """Whether ``text`` is an envelope Seq: 4 ASCII digits ("0000".."9999"; ``isdigit`` alone
    takes other scripts' digits and superscripts, which ``int`` may read or refuse). The one
    check of the decoder and the CLIs' ``--seq``, so that both take the same Seqs."""
    return len(text) == SEQ_DIGITS and text.isascii() and text.isdigit()


def push_time(timestamp: str, seq: str | None = None) -> datetime:
    """The time of a push's rows that carry none of their own (status, station info): the
    envelope's TimeStamp, plus its Seq ("0000".."9999") as microseconds when known.

    TimeStamp has whole seconds, and two pushes of one connector in one second (occupied, then
    charging) would share a time, the key of their rows: the later would be a duplicate. The
    gateway takes a (TimeStamp, Seq) pair once per operator (docs/gateway.md), so with Seq the
    pushes of a second keep distinct times, in Seq order, and the seconds stay the TimeStamp's;
    a redelivered push has the same pair, hence the same rows. T/CEC 102's Seq restarts with
    each second and rises within it, so Seq order is send order; a sender whose Seq runs on
    across seconds and wraps (9999 -> 0000) inside one gets its pushes stored as numbered, the
    later one first: the time must follow from the pair alone, which cannot tell a wrap
    (docs/protocols/charger.md). ``FrameError(bad_time)`` for a TimeStamp or Seq of another
    shape."""
    at = parse_tcec_timestamp(timestamp)
    if seq is None:
        return at
    if not is_seq(seq):
        raise _fail(BAD_TIME, f"Seq {seq!r}: expected 4 digits")
    return at + timedelta(microseconds=int(seq))
