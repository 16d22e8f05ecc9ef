"""Parameter query (0x80) and set (0x81): Annex B Tables B.9-B.13 (2016) / B.5-B.9 (2025).

After the time:
    query command (platform -> terminal):  count BYTE (0..252, FE/FF) + count x param ID BYTE
    query reply / set (both directions):   count BYTE + count x (ID BYTE + value)

The value's width depends on the ID, and for 0x02/0x03 on the edition (``PARAMS``). The
domain values 0x05/0x0E take their length from the 0x04/0x0D item before them in the same
message. User-defined IDs 0x80..0xFE (and reserved ones) have no defined length: decoding
stops there and the rest of the message is kept as an opaque tail.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Final

from ingest.decoders.codec import need_items, read_count, write_count
from ingest.decoders.fields import Record, need
from ingest.decoders.text import decode_text, encode_text

__all__ = [
    "PARAMS",
    "Param",
    "ParamList",
    "QueryRequest",
    "decode_param_list",
    "decode_query",
    "encode_param_list",
    "encode_query",
    "param_name",
]

# kind: "B" BYTE, "H" WORD (both with FE/FF sentinels -> None), "L" a domain length BYTE,
# "S" STRING of 5, "D" domain bytes whose length is the preceding "L" item's value.
_COMMON: Final = {
    0x01: ("local_storage_period_ms", "H"),  # 2016: ms; 2025: 0.001 s (same bytes)
    0x04: ("platform_domain_length", "L"),
    0x05: ("platform_domain", "D"),
    0x06: ("platform_port", "H"),
    0x07: ("hardware_version", "S"),
    0x08: ("firmware_version", "S"),
    0x09: ("heartbeat_period_s", "B"),
    0x0A: ("terminal_response_timeout_s", "H"),
    0x0B: ("platform_response_timeout_s", "H"),
    0x0C: ("login_retry_interval_min", "B"),
    0x0D: ("public_platform_domain_length", "L"),
    0x0E: ("public_platform_domain", "D"),
    0x0F: ("public_platform_port", "H"),
    0x10: ("sampling_monitoring", "B"),  # 0x01 yes, 0x02 no
}
PARAMS: Final[dict[int, dict[int, tuple[str, str]]]] = {
    2016: {
        **_COMMON,
        0x02: ("report_period_s", "H"),  # WORD 1..600 s
        0x03: ("alarm_report_period_ms", "H"),  # WORD 0..60000 ms
    },
    2025: {
        **_COMMON,
        0x02: ("report_period_s", "B"),  # BYTE 1..30 s
        0x03: ("alarm_report_period_s", "B"),  # BYTE 0..1 s
    },
}
_DOMAIN_LENGTH_ID: Final = {0x05: 0x04, 0x0E: 0x0D}
_U16: Final = struct.Struct(">H")


def param_name(edition: int, pid: int) -> str:
    """The contract name of a parameter ID (``param_0x..`` when the standard has none)."""
    entry = PARAMS[edition].get(pid)
    return entry[0] if entry else f"param_{pid:#04x}"


@dataclass(frozen=True, slots=True)
class QueryRequest(Record):
    """A query command: the IDs asked for (``None`` for a sentinel count)."""

    name: ClassVar[str] = "query"
    param_ids: tuple[int, ...] | None = ()


@dataclass(frozen=True, slots=True)
class Param(Record):
    """One parameter item; numeric sentinels are ``None``, strings and domains are text."""

    name: ClassVar[str] = "param"
    id: int = 0x01
    value: int | str | None = None


@dataclass(frozen=True, slots=True)
class ParamList(Record):
    """A query reply or a set command / reply."""

    name: ClassVar[str] = "params"
    params: tuple[Param, ...] | None = ()


def decode_query(buf: bytes, off: int, end: int) -> tuple[QueryRequest, int, str | None]:
    n, _ = read_count(buf, off, end, "B", "param_ids", 0, 252, "query")
    off += 1
    if n is None:
        return QueryRequest(None), off, None
    need_items(off, n, 1, end, "query param IDs")
    return QueryRequest(tuple(buf[off : off + n])), off + n, None


def encode_query(rec: QueryRequest) -> bytes:
    ids = rec.param_ids
    if ids is None:
        return write_count("B", None, False)
    return write_count("B", len(ids), False) + bytes(ids)


def decode_param_list(
    edition: int,
) -> Callable[[bytes, int, int], tuple[ParamList, int, str | None]]:
    """The param-list decoder of one edition (widths of 0x02/0x03 differ)."""
    table = PARAMS[edition]

    def decode(buf: bytes, off: int, end: int) -> tuple[ParamList, int, str | None]:
        n, _ = read_count(buf, off, end, "B", "params", 0, 252, "params")
        off += 1
        if n is None:
            return ParamList(None), off, None
        params: list[Param] = []
        lengths: dict[int, int] = {}
        for _ in range(n):
            need(off, 1, end, "param ID")
            pid = buf[off]
            entry = table.get(pid)
            if entry is None:
                return ParamList(tuple(params)), off, "unknown_param"
            kind = entry[1]
            value: int | str | None
            if kind in ("B", "L"):
                need(off + 1, 1, end, entry[0])
                raw = buf[off + 1]
                value = raw if kind == "L" or raw < 0xFE else None
                if kind == "L":
                    lengths[pid] = raw
                off += 2
            elif kind == "H":
                need(off + 1, 2, end, entry[0])
                (raw,) = _U16.unpack_from(buf, off + 1)
                value = raw if raw < 0xFFFE else None
                off += 3
            elif kind == "S":
                need(off + 1, 5, end, entry[0])
                value = decode_text(buf[off + 1 : off + 6])
                off += 6
            else:  # "D": the length comes from the preceding length item
                size = lengths.get(_DOMAIN_LENGTH_ID[pid])
                if size is None:
                    return ParamList(tuple(params)), off, "unknown_param_length"
                need(off + 1, size, end, entry[0])
                value = decode_text(buf[off + 1 : off + 1 + size])
                off += 1 + size
            params.append(Param(pid, value))
        return ParamList(tuple(params)), off, None

    return decode


def encode_param_list(edition: int, rec: ParamList) -> bytes:
    """A param list of ``edition``; raises ``ValueError`` for IDs without a defined width."""
    if rec.params is None:
        return write_count("B", None, False)
    table = PARAMS[edition]
    parts = [write_count("B", len(rec.params), False)]
    for p in rec.params:
        entry = table.get(p.id)
        if entry is None:
            raise ValueError(f"parameter {p.id:#04x} has no defined width")
        kind = entry[1]
        parts.append(bytes((p.id,)))
        v = p.value
        if kind in ("B", "L"):
            parts.append(bytes((0xFF if v is None else int(v),)))
        elif kind == "H":
            parts.append(_U16.pack(0xFFFF if v is None else int(v)))
        elif kind == "S":
            parts.append(encode_text(str(v or ""), 5))
        else:
            parts.append(encode_text(str(v or "")))
    return b"".join(parts)
