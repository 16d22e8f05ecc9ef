"""The hand-built binary COPY stream of battery_pack_telemetry, read back by an independent
decoder of the format (PostgreSQL docs, "COPY - Binary Format"; array_recv)."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contract.clock import CHINA_TZ
from contract.rows import PackRow
from storage.binary import (
    COPY_SIGNATURE,
    encode_pack_rows,
    int2_array_cells,
    int2_array_probes,
    iter_pack_rows,
    micros,
)

pytestmark = pytest.mark.unit


TS = datetime(2025, 7, 1, 12, 30, 15, tzinfo=CHINA_TZ)


def _array(buf: bytes) -> list[int | None]:
    ndim, has_null, oid = struct.unpack_from(">iii", buf, 0)
    assert oid == 21  # int2
    if ndim == 0:
        return []
    n, lbound = struct.unpack_from(">ii", buf, 12)
    assert lbound == 1
    pos = 20
    out: list[int | None] = []
    for _ in range(n):
        (size,) = struct.unpack_from(">i", buf, pos)
        pos += 4
        if size == -1:
            out.append(None)
            continue
        assert size == 2
        out.append(struct.unpack_from(">h", buf, pos)[0])
        pos += 2
    assert pos == len(buf)
    assert bool(has_null) == (None in out)
    return out


def decode_copy(stream: bytes) -> list[tuple[Any, ...]]:
    """Tuples of a binary COPY stream of the pack table's 13 columns."""
    assert stream.startswith(COPY_SIGNATURE)
    pos = len(COPY_SIGNATURE)
    kinds = ["T", "t", "h", "f", "f", "i", "i", "A", "A", "i", "i", "h", "h"]
    rows: list[tuple[Any, ...]] = []
    while True:
        (count,) = struct.unpack_from(">h", stream, pos)
        pos += 2
        if count == -1:
            assert pos == len(stream), "bytes after the trailer"
            return rows
        assert count == len(kinds)
        row: list[Any] = []
        for kind in kinds:
            (size,) = struct.unpack_from(">i", stream, pos)
            pos += 4
            if size == -1:
                row.append(None)
                continue
            data = stream[pos : pos + size]
            pos += size
            if kind == "T":
                row.append(data.decode())
            elif kind == "t":
                (us,) = struct.unpack(">q", data)
                row.append(datetime(2000, 1, 1, tzinfo=UTC) + timedelta(microseconds=us))
            elif kind == "A":
                row.append(_array(data))
            else:
                row.append(struct.unpack(">" + kind, data)[0])
        rows.append(tuple(row))


def pack(**kw: Any) -> PackRow:
    base: dict[str, Any] = dict(
        vin="LSYNTH00000000001", ts=TS, pack=1, voltage_v=350.5, current_a=-12.25,
        cell_count=4, first_cell=1, cell_voltages_raw=struct.pack(">4H", 3301, 3302, 3999, 4200),
        probe_temps_raw=bytes([0, 39, 40, 65, 250]), cell_min_mv=3301, cell_max_mv=4200,
        probe_min_c=-40, probe_max_c=210,
    )  # fmt: skip
    base.update(kw)
    return PackRow(**base)


def test_plain_row_round_trips() -> None:
    (row,) = decode_copy(bytes(encode_pack_rows([pack()])))
    assert row == (
        "LSYNTH00000000001", TS, 1, 350.5, -12.25, 4, 1,
        [3301, 3302, 3999, 4200], [-40, -1, 0, 25, 210], 3301, 4200, -40, 210,
    )  # fmt: skip


def test_every_probe_byte_maps_to_celsius() -> None:
    raw = bytes(range(0xFE))
    (row,) = decode_copy(bytes(encode_pack_rows([pack(probe_temps_raw=raw)])))
    assert row[8] == [b - 40 for b in raw]


def test_sentinels_and_values_beyond_int2_become_null() -> None:
    cells = struct.pack(">5H", 3300, 0xFFFE, 0xFFFF, 0x8000, 32767)
    probes = bytes([65, 0xFE, 0xFF, 40])
    (row,) = decode_copy(
        bytes(encode_pack_rows([pack(cell_voltages_raw=cells, probe_temps_raw=probes)]))
    )
    assert row[7] == [3300, None, None, None, 32767]
    assert row[8] == [25, None, None, 0]
    assert int2_array_cells(cells) == row[7]
    assert int2_array_probes(probes) == row[8]


def test_missing_values_and_empty_arrays_are_null() -> None:
    row = pack(
        voltage_v=None, current_a=None, cell_count=None, cell_voltages_raw=b"",
        probe_temps_raw=b"", cell_min_mv=None, cell_max_mv=None, probe_min_c=None,
        probe_max_c=None, first_cell=201,
    )  # fmt: skip
    (back,) = decode_copy(bytes(encode_pack_rows([row])))
    assert back == ("LSYNTH00000000001", TS, 1, None, None, None, 201) + (None,) * 6


def test_rows_keep_their_own_vin_and_time() -> None:
    later = TS + timedelta(seconds=10)
    rows = [pack(), pack(pack=2), pack(vin="LSYNTH00000000002", ts=later)]
    back = decode_copy(bytes(encode_pack_rows(rows)))
    assert [(r[0], r[1], r[2]) for r in back] == [
        ("LSYNTH00000000001", TS, 1),
        ("LSYNTH00000000001", TS, 2),
        ("LSYNTH00000000002", later, 1),
    ]


@pytest.mark.parametrize("chunk", [1, 2, 3, 500])
@pytest.mark.parametrize("count", [0, 1, 5])
def test_pieces_join_into_the_whole_stream(chunk: int, count: int) -> None:
    rows = [pack(pack=i + 1) for i in range(count)]
    pieces = list(iter_pack_rows(rows, chunk))
    assert b"".join(pieces) == encode_pack_rows(rows)
    assert len(decode_copy(b"".join(pieces))) == count


def test_value_outside_its_column_type_raises() -> None:
    with pytest.raises(struct.error):
        encode_pack_rows([pack(pack=70000)])


def test_micros_is_postgres_epoch_in_utc() -> None:
    assert micros(datetime(2000, 1, 1, 8, tzinfo=CHINA_TZ)) == 0
    assert micros(datetime(2000, 1, 1, 0, 0, 1, 5, tzinfo=UTC)) == 1_000_005
