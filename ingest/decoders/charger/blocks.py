"""The charger profile's bodies and information blocks (docs/protocols/charger.md).

Each block is a fixed layout except the fault list; every one is declared once (``Field`` /
``Layout`` of the vehicle codec: scaling and 0xFE/0xFF sentinels live in the declaration) and
read by ``decode(buf, off, end) -> (record, new_off)``, written by ``encode(record) -> bytes``
(the body, without the type byte): the ``BlockCodec`` shape of ``ingest.decoders.codec``.
The T/CEC 102 code sets are checked here, because a code outside them cannot be mapped onto
what regulators receive: such a block is ``bad_field``, never stored as a guess.

The records and layouts below look alike on purpose (``duplicates`` pairs them): they are
declarative field tables in the order of T/CEC 102's tables; the logic lives once, in codec.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Final, NamedTuple

from ingest.decoders.codec import BlockCodec
from ingest.decoders.errors import BAD_FIELD, FrameError
from ingest.decoders.fields import (
    TIME,
    Field,
    Layout,
    Quality,
    Record,
    array_struct,
    decode_time,
    encode_time,
    need,
)
from ingest.decoders.identity import ID_OFFSET
from ingest.decoders.text import encode_text

__all__ = [
    "BLOCKS",
    "CONNECTOR_STATUS",
    "CONNECTOR_TYPES",
    "OPERATOR_ID_SIZE",
    "ORDER_STATES",
    "ChargeOrder",
    "ConnectorEntry",
    "ConnectorStatus",
    "Faults",
    "Output",
    "VehicleDemand",
    "code_string",
    "opt_code_string",
]

# T/CEC 102 code sets (docs/protocols/charger.md, "Codes").
CONNECTOR_STATUS: Final = frozenset({0, 1, 2, 3, 4, 255})
PARK_STATUS: Final = frozenset({0, 10, 50})
LOCK_STATUS: Final = frozenset({0, 10, 50})
ORDER_STATES: Final = frozenset({1, 2, 3, 4, 5})
CONNECTOR_TYPES: Final = frozenset({1, 2, 3, 4, 5, 6})

CONNECTOR_ID_SIZE: Final = 26  # T/CEC ConnectorID: up to 26 characters
SEQ_SIZE: Final = 27  # StartChargeSeq: OperatorID (9) + 18, exactly 27
OPERATOR_ID_SIZE: Final = 9  # T/CEC OperatorID, the organisation code; StartChargeSeq's prefix
VIN_SIZE: Final = 17
_PRINTABLE: Final = frozenset(range(0x21, 0x7F))
_VIN_BYTES: Final = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_PAD: Final = frozenset(b"\x00 ")


# Identifiers by their raw bytes: a consumer sees the same connectors every few seconds, and
# checking 26 bytes one by one in Python costs more than the rest of a block. Only valid
# identifiers are cached; the cache is cleared when full (bounded memory).
_IDS: dict[bytes, str | None] = {}
_IDS_MAX: Final = 200_000


def opt_code_string(buf: bytes, off: int, size: int, what: str) -> str | None:
    """A fixed-width identifier: printable ASCII, then only NUL/space padding; ``None`` when
    the field is all padding; ``bad_field`` for any other byte."""
    raw = buf[off : off + size]
    hit = _IDS.get(raw, _IDS)
    if hit is not _IDS:
        return hit  # type: ignore[return-value]
    n = size
    while n and raw[n - 1] in _PAD:
        n -= 1
    if n == 0:
        return None
    for i in range(n):
        if raw[i] not in _PRINTABLE:
            raise FrameError(
                BAD_FIELD, off + i, f"{what}: byte {raw[i]:#04x} is not printable ASCII"
            )
    text = raw[:n].decode("ascii")
    if len(_IDS) >= _IDS_MAX:
        _IDS.clear()
    _IDS[raw] = text
    return text


def code_string(buf: bytes, off: int, size: int, what: str) -> str:
    """As ``opt_code_string``, but an empty field is ``bad_field``."""
    v = opt_code_string(buf, off, size, what)
    if v is None:
        raise FrameError(BAD_FIELD, off, f"{what}: empty")
    return v


def _code(value: int, allowed: frozenset[int], off: int, what: str) -> int:
    if value not in allowed:
        raise FrameError(BAD_FIELD, off, f"{what} {value} is not a T/CEC 102 code")
    return value


@dataclass(frozen=True, slots=True)
class ConnectorStatus(Record):
    """0x01: ConnectorStatusInfo."""

    name: ClassVar[str] = "connector_status"

    connector_id: str
    status: int
    park_status: int
    lock_status: int


@dataclass(frozen=True, slots=True)
class Output(Record):
    """0x02: the connector's output (DC, or phase A of AC) and session energy."""

    name: ClassVar[str] = "output"

    connector_id: str
    voltage_v: float | None
    current_a: float | None
    power_kw: float | None
    energy_kwh: float | None
    connector_temp_c: int | None
    quality: Quality = ()


@dataclass(frozen=True, slots=True)
class VehicleDemand(Record):
    """0x03: the connected vehicle (VIN, SOC) and its BMS demand."""

    name: ClassVar[str] = "vehicle_demand"

    connector_id: str
    vin: str | None
    soc_pct: int | None
    bms_voltage_demand_v: float | None
    bms_current_demand_a: float | None
    quality: Quality = ()


@dataclass(frozen=True, slots=True)
class ChargeOrder(Record):
    """0x04: the charging order in progress on the connector."""

    name: ClassVar[str] = "charge_order"

    connector_id: str
    start_charge_seq: str
    state: int
    start_time: datetime
    elec_money: float | None
    service_money: float | None
    total_money: float | None
    quality: Quality = ()


@dataclass(frozen=True, slots=True)
class Faults(Record):
    """0x05: fault codes of one connector, or of the pile (``connector_id`` None)."""

    name: ClassVar[str] = "faults"

    connector_id: str | None
    codes: tuple[int, ...]


class ConnectorEntry(NamedTuple):
    """One connector of a login (ConnectorInfo)."""

    connector_id: str
    connector_type: int
    voltage_upper_v: int | None
    voltage_lower_v: int | None
    current_a: int | None
    power_kw: float | None
    national_standard: int | None
    quality: Quality = ()


_OUTPUT: Final = Layout(
    [
        Field("voltage_v", "H", 10, hi=15000),
        Field("current_a", "H", 10, hi=20000),
        Field("power_kw", "H", 10, hi=15000),
        Field("energy_kwh", "I", 1000),
        Field("connector_temp_c", "B", 1, 40, hi=250),
    ]
)
_DEMAND: Final = Layout(
    [
        Field("soc_pct", "B", hi=100),
        Field("bms_voltage_demand_v", "H", 10, hi=15000),
        Field("bms_current_demand_a", "H", 10, hi=20000),
    ]
)
_MONEY: Final = Layout(
    [
        Field("elec_money", "I", 100),
        Field("service_money", "I", 100),
        Field("total_money", "I", 100),
    ]
)
ENTRY: Final = Layout(
    [
        Field("voltage_upper_v", "H"),
        Field("voltage_lower_v", "H"),
        Field("current_a", "H"),
        Field("power_kw", "H", 10),
        Field("national_standard", "B", lo=1, hi=2),
    ]
)
ENTRY_SIZE: Final = CONNECTOR_ID_SIZE + 1 + ENTRY.size


def _cid(rec: Any) -> bytes:
    return encode_text(rec.connector_id, CONNECTOR_ID_SIZE)


def _decode_status(buf: bytes, off: int, end: int) -> tuple[Record, int]:
    need(off, CONNECTOR_ID_SIZE + 3, end, "connector status")
    cid = code_string(buf, off, CONNECTOR_ID_SIZE, "ConnectorID")
    p = off + CONNECTOR_ID_SIZE
    st = _code(buf[p], CONNECTOR_STATUS, p, "connector Status")
    park = _code(buf[p + 1], PARK_STATUS, p + 1, "ParkStatus")
    lock = _code(buf[p + 2], LOCK_STATUS, p + 2, "LockStatus")
    return ConnectorStatus(cid, st, park, lock), p + 3


def _encode_status(rec: ConnectorStatus) -> bytes:
    return _cid(rec) + bytes((rec.status, rec.park_status, rec.lock_status))


def _decode_output(buf: bytes, off: int, end: int) -> tuple[Record, int]:
    need(off, CONNECTOR_ID_SIZE + _OUTPUT.size, end, "output")
    cid = code_string(buf, off, CONNECTOR_ID_SIZE, "ConnectorID")
    values, quality = _OUTPUT.read(buf, off + CONNECTOR_ID_SIZE, end, "output")
    v, i, w, e, t = values
    return Output(cid, v, i, w, e, t, quality), off + CONNECTOR_ID_SIZE + _OUTPUT.size


def _encode_output(rec: Output) -> bytes:
    return _cid(rec) + _OUTPUT.write(
        [rec.voltage_v, rec.current_a, rec.power_kw, rec.energy_kwh, rec.connector_temp_c],
        rec.quality,
    )


def _decode_demand(buf: bytes, off: int, end: int) -> tuple[Record, int]:
    size = CONNECTOR_ID_SIZE + VIN_SIZE + _DEMAND.size
    need(off, size, end, "vehicle demand")
    cid = code_string(buf, off, CONNECTOR_ID_SIZE, "ConnectorID")
    p = off + CONNECTOR_ID_SIZE
    raw = buf[p : p + VIN_SIZE]
    vin: str | None = None
    if raw.strip(b"\x00"):  # all NUL: no vehicle identified (e.g. an AC charge without BMS)
        vin = _IDS.get(raw)  # only valid VINs are cached: a VIN and a ConnectorID are
        if vin is None:  # never the same 17 vs 26 bytes
            for i, b in enumerate(raw):
                if b not in _VIN_BYTES:
                    raise FrameError(BAD_FIELD, p + i, f"VIN byte {b:#04x}: 17 digits/letters")
            vin = raw.decode("ascii")
            _IDS[raw] = vin
    values, quality = _DEMAND.read(buf, p + VIN_SIZE, end, "vehicle demand")
    soc, dv, di = values
    return VehicleDemand(cid, vin, soc, dv, di, quality), off + size


def _encode_demand(rec: VehicleDemand) -> bytes:
    vin = b"\x00" * VIN_SIZE if rec.vin is None else encode_text(rec.vin, VIN_SIZE)
    return (
        _cid(rec)
        + vin
        + _DEMAND.write(
            [rec.soc_pct, rec.bms_voltage_demand_v, rec.bms_current_demand_a], rec.quality
        )
    )


def _decode_order(buf: bytes, off: int, end: int) -> tuple[Record, int]:
    size = CONNECTOR_ID_SIZE + SEQ_SIZE + 1 + TIME.size + _MONEY.size
    need(off, size, end, "charge order")
    cid = code_string(buf, off, CONNECTOR_ID_SIZE, "ConnectorID")
    p = off + CONNECTOR_ID_SIZE
    seq = code_string(buf, p, SEQ_SIZE, "StartChargeSeq")
    if len(seq) != SEQ_SIZE:
        raise FrameError(BAD_FIELD, p, f"StartChargeSeq {seq!r}: 27 characters")
    # StartChargeSeq is "OperatorID + 18": its operator must be the frame's, the first 9
    # characters of the header code (checked as such before any block is read; ``buf`` is the
    # whole frame). The session key has no operator (start_charge_seq, ts, event, source), so
    # an order numbered under another operator's prefix would suppress that operator's real
    # order of the same time as a duplicate.
    op = buf[ID_OFFSET : ID_OFFSET + OPERATOR_ID_SIZE]
    if buf[p : p + OPERATOR_ID_SIZE] != op:
        raise FrameError(
            BAD_FIELD,
            p,
            f"StartChargeSeq {seq!r}: must begin with the frame's OperatorID "
            f"{op.decode('ascii', 'replace')}",
        )
    p += SEQ_SIZE
    state = _code(buf[p], ORDER_STATES, p, "StartChargeSeqStat")
    start = decode_time(buf, p + 1)
    values, quality = _MONEY.read(buf, p + 1 + TIME.size, end, "charge order")
    elec, service, total = values
    return ChargeOrder(cid, seq, state, start, elec, service, total, quality), off + size


def _encode_order(rec: ChargeOrder) -> bytes:
    return (
        _cid(rec)
        + encode_text(rec.start_charge_seq, SEQ_SIZE)
        + bytes((rec.state,))
        + encode_time(rec.start_time)
        + _MONEY.write([rec.elec_money, rec.service_money, rec.total_money], rec.quality)
    )


def _decode_faults(buf: bytes, off: int, end: int) -> tuple[Record, int]:
    need(off, CONNECTOR_ID_SIZE + 1, end, "faults")
    cid = opt_code_string(buf, off, CONNECTOR_ID_SIZE, "ConnectorID")
    p = off + CONNECTOR_ID_SIZE
    n = buf[p]
    if p + 1 + 4 * n > end:
        raise FrameError(BAD_FIELD, p, f"faults: {n} codes need {4 * n} bytes, {end - p - 1} left")
    codes = array_struct("I", n).unpack_from(buf, p + 1)
    return Faults(cid, codes), p + 1 + 4 * n


def _encode_faults(rec: Faults) -> bytes:
    cid = b"\x00" * CONNECTOR_ID_SIZE if rec.connector_id is None else _cid(rec)
    if len(rec.codes) > 255:
        raise ValueError(f"{len(rec.codes)} fault codes, a block holds 255")
    return cid + bytes((len(rec.codes),)) + array_struct("I", len(rec.codes)).pack(*rec.codes)


def decode_entry(buf: bytes, off: int, end: int) -> ConnectorEntry:
    """One login connector entry at ``off`` (``ENTRY_SIZE`` bytes)."""
    need(off, ENTRY_SIZE, end, "connector entry")
    cid = code_string(buf, off, CONNECTOR_ID_SIZE, "ConnectorID")
    p = off + CONNECTOR_ID_SIZE
    ctype = _code(buf[p], CONNECTOR_TYPES, p, "ConnectorType")
    values, quality = ENTRY.read(buf, p + 1, end, "connector entry")
    upper, lower, current, power, std = values
    return ConnectorEntry(cid, ctype, upper, lower, current, power, std, quality)


def encode_entry(e: ConnectorEntry) -> bytes:
    """The inverse of ``decode_entry``."""
    return _cid(e) + bytes((e.connector_type,)) + ENTRY.write(e[2:7], e.quality)


# type code -> codec; the profile's whole information-type table.
BLOCKS: Final[dict[int, BlockCodec]] = {
    0x01: BlockCodec(ConnectorStatus, _decode_status, _encode_status),
    0x02: BlockCodec(Output, _decode_output, _encode_output),
    0x03: BlockCodec(VehicleDemand, _decode_demand, _encode_demand),
    0x04: BlockCodec(ChargeOrder, _decode_order, _encode_order),
    0x05: BlockCodec(Faults, _decode_faults, _encode_faults),
}
