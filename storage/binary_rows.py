"""Binary COPY for a table described by its SQL types, with hooks for the raw-byte arrays.

``storage.binary`` hand-builds ``battery_pack_telemetry`` with one ``struct`` per row shape, the
vehicle hot path's table. A standalone pack's ``pack_telemetry`` row carries the same two byte
strings (cell voltages, probe temperatures) among 26 columns; asyncpg could not take them as
they are (it wants Python lists for ``int2[]``, ~6x slower per row: shared/MEASUREMENTS.md), so
this encoder writes every column by its SQL type and hands the array columns to
``binary.put_cells`` / ``put_probes``, which copy the frame's bytes into the array template.

Format reference: PostgreSQL docs "COPY - Binary Format".
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, Final

from storage.binary import in_pieces, micros

__all__ = ["RowEncoder", "TupleEncoder", "row_encoder", "tuple_encoder"]

_NULL: Final = b"\xff\xff\xff\xff"
_COUNT = struct.Struct(">h")
_LEN = struct.Struct(">i")
_FIXED: Final[dict[str, tuple[struct.Struct, int]]] = {
    "int2": (struct.Struct(">ih"), 2),
    "int4": (struct.Struct(">ii"), 4),
    "int8": (struct.Struct(">iq"), 8),
    "float4": (struct.Struct(">if"), 4),
    "float8": (struct.Struct(">id"), 8),
    "bool": (struct.Struct(">i?"), 1),
}
_TS = struct.Struct(">iq")

# A column writer appends one field (length + bytes, or NULL) to the stream.
ColumnWriter = Callable[[bytearray, Any], None]
RowEncoder = Callable[[Sequence[Sequence[Any]]], Iterator[bytearray]]
TupleEncoder = Callable[[bytearray, Sequence[Any]], None]


def _fixed(sql_type: str) -> ColumnWriter:
    fmt, size = _FIXED[sql_type]
    pack = fmt.pack

    def put(out: bytearray, v: Any) -> None:
        if v is None:
            out += _NULL
        else:
            out += pack(size, v)

    return put


def _text(out: bytearray, v: Any) -> None:
    if v is None:
        out += _NULL
    else:
        b = v.encode()
        out += _LEN.pack(len(b))
        out += b


_ARRAY_HEAD = struct.Struct(">iiiiii")  # field length, ndim, has-null, elem oid, dim, lbound
_EMPTY_ARRAY = struct.Struct(">iiii")  # field length 12, ndim 0, has-null 0, elem oid
_ARRAYS: Final[dict[str, tuple[int, str, int]]] = {  # type -> element oid, format, size
    "int2[]": (21, "h", 2),
    "int8[]": (20, "q", 8),
}


def _array(sql_type: str) -> ColumnWriter:
    """A one-dimensional array of ints (``None`` elements are NULL), as array_send writes it."""
    oid, code, size = _ARRAYS[sql_type]
    elem = struct.Struct(f">i{code}")
    empty = _EMPTY_ARRAY.pack(12, 0, 0, oid)

    def put(out: bytearray, v: Any) -> None:
        if v is None:
            out += _NULL
            return
        n = len(v)
        if n == 0:
            out += empty
            return
        nulls = sum(1 for x in v if x is None)
        out += _ARRAY_HEAD.pack(20 + (n - nulls) * (4 + size) + 4 * nulls, 1, int(nulls > 0), oid,
                                n, 1)  # fmt: skip
        for x in v:
            out += _NULL if x is None else elem.pack(size, x)

    return put


def _writer(sql_type: str) -> ColumnWriter:
    if sql_type == "text":
        return _text
    if sql_type in _ARRAYS:
        return _array(sql_type)
    if sql_type in _FIXED:
        return _fixed(sql_type)
    raise ValueError(f"no binary COPY writer for {sql_type}: give the column a writer")


def tuple_encoder(
    types: Sequence[str], special: dict[int, ColumnWriter] | None = None
) -> TupleEncoder:
    """Appends the COPY tuples (no signature, no trailer) of rows of these column ``types`` to
    a buffer; ``special`` as in ``row_encoder``."""
    special = special or {}
    writers: list[ColumnWriter | None] = []
    for i, t in enumerate(types):
        # timestamptz is written inline: the rows of one frame share their datetime object
        writers.append(special.get(i) or (None if t == "timestamptz" else _writer(t)))
    head = _COUNT.pack(len(types))
    columns = tuple(enumerate(writers))

    def encode_into(out: bytearray, rows: Sequence[Sequence[Any]]) -> None:
        last_ts: datetime | None = None
        last_us = 0
        for r in rows:
            out += head
            for i, put in columns:
                v = r[i]
                if put is not None:
                    put(out, v)
                elif v is None:
                    out += _NULL
                else:
                    if v is not last_ts:
                        last_ts, last_us = v, micros(v)
                    out += _TS.pack(8, last_us)

    return encode_into


def row_encoder(
    types: Sequence[str], special: dict[int, ColumnWriter] | None = None, chunk_rows: int = 500
) -> RowEncoder:
    """A COPY stream encoder for rows of these column ``types`` (as ``storage.tables.Table``
    lists them); ``special`` writes the columns whose value is not the SQL value as it is
    (the raw-byte arrays). Raises ``struct.error`` / ``OverflowError`` for a value outside its
    column type, which the writer treats as a bad row."""
    encode_into = tuple_encoder(types, special)

    def encode(rows: Sequence[Sequence[Any]]) -> Iterator[bytearray]:
        # In pieces, as binary.iter_pack_rows: the server parses one while the next is built.
        return in_pieces(encode_into, rows, chunk_rows)

    return encode
