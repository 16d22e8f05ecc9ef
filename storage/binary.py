"""PostgreSQL binary COPY for ``battery_pack_telemetry``, built straight from the frame's bytes.

Why by hand: asyncpg encodes a Python list into ``int2[]`` element by element, which makes a
pack row with 96 cells + 32 probes ~6x slower than a whole vehicle row (shared/MEASUREMENTS.md),
and asyncpg refuses custom codecs on array types. In binary COPY an ``int2[]`` element is a
4-byte length (always 2) followed by the value big-endian - and a GB/T 32960 cell voltage IS a
big-endian u16. So the array is a template of ``00 00 00 02 hi lo`` groups into which the
frame's high and low bytes are copied with two extended-slice assignments (C speed, no Python
int per cell). Probe temperatures (u8, offset -40 degC) go through two ``bytes.translate``
tables (high byte: 0x00 or 0xFF for negatives; low byte: (b - 40) & 0xFF).

The slower per-element path runs only for a row that contains sentinels (0xFFFE/0xFFFF cells,
0xFE/0xFF probes) or cell values above the int2 range (> 32.767 V, physically impossible for
one cell though the standard's range allows 60.000 V): those elements become NULL.

Format reference: PostgreSQL docs "COPY - Binary Format" and array_send() (arrayfuncs.c).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

from contract.rows import PackRow

__all__ = [
    "COPY_SIGNATURE",
    "COPY_TRAILER",
    "encode_pack_rows",
    "encode_pack_tuples",
    "in_pieces",
    "int2_array_cells",
    "int2_array_probes",
    "iter_pack_rows",
    "micros",
    "put_cells",
    "put_probes",
]

COPY_SIGNATURE: Final = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
COPY_TRAILER: Final = b"\xff\xff"
_NULL: Final = b"\xff\xff\xff\xff"
_INT2_OID: Final = 21
_PG_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)
_Row = TypeVar("_Row", bound=Sequence[Any])

_FIELDS: Final = 13  # columns of battery_pack_telemetry
_HEAD = struct.Struct(">hi")  # field count, vin length
# ts (8) + pack (2) + voltage (4) + current (4) + cell_count (4) + first_cell (4), all present
_MID = struct.Struct(">iqihififiiii")
_TS = struct.Struct(">iq")
_I2 = struct.Struct(">ih")
_I4 = struct.Struct(">ii")
_F4 = struct.Struct(">if")
_TAIL = struct.Struct(">iiiiihih")  # cell min/max (int4), probe min/max (int2), all present
_ARRAY_HEAD = struct.Struct(">iiiiii")  # field length, ndim, has-null, elem oid, dim, lbound
_ELEM = b"\x00\x00\x00\x02\x00\x00"
_HI_OFFSET: Final = _ARRAY_HEAD.size + 4  # first element's high byte
_TEMP_HI: Final = bytes(0x00 if b >= 40 else 0xFF for b in range(256))
_TEMP_LO: Final = bytes((b - 40) & 0xFF for b in range(256))
_TEMP_OK: Final = bytes(range(0xFE))  # delete these: what is left are the sentinels

_templates: dict[int, bytes] = {}


def micros(ts: datetime) -> int:
    """Microseconds since 2000-01-01 UTC: a ``timestamptz`` in binary form."""
    return (ts - _PG_EPOCH) // _US


def _template(n: int) -> bytes:
    tpl = _templates.get(n)
    if tpl is None:
        tpl = _ARRAY_HEAD.pack(20 + 6 * n, 1, 0, _INT2_OID, n, 1) + _ELEM * n
        if n <= 1024:  # cells per page are at most 255 (BYTE count): the cache stays small
            _templates[n] = tpl
    return tpl


def _slow_array(values: Sequence[int | None]) -> bytes:
    """An ``int2[]`` field with NULL elements (the rare path)."""
    n = len(values)
    parts = [b""]
    size = 20
    for v in values:
        if v is None:
            parts.append(_NULL)
            size += 4
        else:
            parts.append(_I2.pack(2, v))
            size += 6
    parts[0] = _ARRAY_HEAD.pack(size, 1, 1, _INT2_OID, n, 1)
    return b"".join(parts)


def int2_array_cells(raw: bytes) -> list[int | None]:
    """Cell voltages as the table stores them: sentinels and values above int2 are None."""
    out: list[int | None] = []
    for i in range(0, len(raw) - 1, 2):
        v = (raw[i] << 8) | raw[i + 1]
        out.append(None if v > 0x7FFF else v)
    return out


def int2_array_probes(raw: bytes) -> list[int | None]:
    """Probe temperatures in degC as the table stores them: sentinels are None."""
    return [None if b >= 0xFE else b - 40 for b in raw]


def _put_int2s(out: bytearray, n: int, hi: bytes, lo: bytes) -> None:
    """An int2[] of ``n`` elements, none NULL: the cached template, then the element bytes."""
    pos = len(out)
    out += _template(n)
    start = pos + _HI_OFFSET
    end = pos + _ARRAY_HEAD.size + 6 * n
    out[start:end:6] = hi
    out[start + 1 : end : 6] = lo


def put_cells(out: bytearray, raw: bytes) -> None:
    """Append the ``int2[]`` field of cell voltages as the frame sent them (NULL when none)."""
    n = len(raw) >> 1
    if n == 0:
        out += _NULL
        return
    hi = raw[0 : 2 * n : 2]
    if not hi.isascii():  # a high byte >= 0x80: a sentinel or a value beyond int2
        out += _slow_array(int2_array_cells(raw))
        return
    _put_int2s(out, n, hi, raw[1 : 2 * n : 2])


def put_probes(out: bytearray, raw: bytes) -> None:
    """Append the ``int2[]`` field of probe temperatures as the frame sent them."""
    n = len(raw)
    if n == 0:
        out += _NULL
        return
    if raw.translate(None, _TEMP_OK):  # 0xFE / 0xFF present
        out += _slow_array(int2_array_probes(raw))
        return
    _put_int2s(out, n, raw.translate(_TEMP_HI), raw.translate(_TEMP_LO))


def _opt(out: bytearray, fmt: struct.Struct, size: int, value: float | None) -> None:
    if value is None:
        out += _NULL
    else:
        out += fmt.pack(size, value)


def encode_pack_rows(rows: Sequence[PackRow]) -> bytearray:
    """The complete binary COPY stream (signature, tuples, trailer) of ``rows``.

    Column order is the table's (= ``PackRow``'s); raises ``struct.error`` or ``OverflowError``
    for a value outside its column type, which the writer treats as a bad row.
    """
    out = bytearray(COPY_SIGNATURE)
    encode_pack_tuples(out, rows)
    out += COPY_TRAILER
    return out


def iter_pack_rows(rows: Sequence[PackRow], chunk_rows: int = 500) -> Iterator[bytearray]:
    """The same stream as ``encode_pack_rows``, in pieces of ``chunk_rows`` tuples.

    Sent piece by piece, the server parses one piece while the next is encoded: measured
    ~1.4x the rows/s of building the whole stream first (docs/performance.md).
    """
    return in_pieces(encode_pack_tuples, rows, chunk_rows)


def in_pieces(
    encode_into: Callable[[bytearray, Sequence[_Row]], None],
    rows: Sequence[_Row],
    chunk_rows: int,
) -> Iterator[bytearray]:
    """A binary COPY stream of ``rows``: the signature, ``encode_into`` of each run of
    ``chunk_rows`` rows as one piece, the trailer (an empty ``rows`` is one piece)."""
    out = bytearray(COPY_SIGNATURE)
    for i in range(0, len(rows), chunk_rows):
        encode_into(out, rows[i : i + chunk_rows])
        if i + chunk_rows >= len(rows):
            out += COPY_TRAILER
        yield out
        out = bytearray()
    if not rows:
        yield out + COPY_TRAILER


def encode_pack_tuples(out: bytearray, rows: Sequence[PackRow]) -> None:
    """Append the COPY tuples (no signature, no trailer) of ``rows`` to ``out``."""
    last_ts: datetime | None = None
    last_us = 0
    last_vin = ""
    vin_bytes = b""
    for r in rows:
        if r.vin is not last_vin:
            last_vin = r.vin
            vin_bytes = r.vin.encode()
        out += _HEAD.pack(_FIELDS, len(vin_bytes))
        out += vin_bytes
        ts = r.ts
        if ts is not last_ts:  # the packs of one frame share its datetime object
            last_ts = ts
            last_us = micros(ts)
        if r.voltage_v is not None and r.current_a is not None and r.cell_count is not None:
            out += _MID.pack(
                8, last_us, 2, r.pack, 4, r.voltage_v, 4, r.current_a, 4, r.cell_count, 4,
                r.first_cell,
            )  # fmt: skip
        else:
            out += _TS.pack(8, last_us)
            out += _I2.pack(2, r.pack)
            _opt(out, _F4, 4, r.voltage_v)
            _opt(out, _F4, 4, r.current_a)
            _opt(out, _I4, 4, r.cell_count)
            out += _I4.pack(4, r.first_cell)
        put_cells(out, r.cell_voltages_raw)
        put_probes(out, r.probe_temps_raw)
        lo, hi, pmin, pmax = r.cell_min_mv, r.cell_max_mv, r.probe_min_c, r.probe_max_c
        if lo is not None and hi is not None and pmin is not None and pmax is not None:
            out += _TAIL.pack(4, lo, 4, hi, 2, pmin, 2, pmax)
        else:
            _opt(out, _I4, 4, lo)
            _opt(out, _I4, 4, hi)
            _opt(out, _I2, 2, pmin)
            _opt(out, _I2, 2, pmax)
