"""The native decoder's COPY tuples (``FrameRows.copy``) are byte for byte what the Python
encoders write from the Python rows of the same frame, and the batch API's contract:
order, rejects as instances, structured frames, receive times, caches, the writer's stream."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from contract.rows import COPY_TABLES, FrameRows
from devtools.sim.bench_frames import realtime_frames
from devtools.sim.framebuilder import TIME_HEX, build
from ingest.decoders.errors import FrameError
from ingest.decoders.fast import decode_rows, decode_rows_batch
from storage.batch import rows_by_table
from storage.binary import COPY_SIGNATURE, COPY_TRAILER
from storage.loaders import native_pieces
from storage.tables import ALARMS, MOTORS, PACKS, VEHICLES, Table, TableRows
from tests.unit.vectors_support import load_vectors

pytestmark = pytest.mark.unit

TABLES = (VEHICLES, MOTORS, PACKS, ALARMS)
RECEIVED_MS = 1_760_180_899_123  # 2025-10-11T11:08:19.123Z


def cells(*mv: int) -> str:
    return "".join(f"{v:04X}" for v in mv)


# Frames whose rows exercise every column writer: sentinels (NULL), cells above int2 and
# sentinel probes (NULL array elements), empty arrays (NULL fields), paging, joins, alarms
# of both editions (int8[] lists, int2[] bit levels / NULL), negative temperatures.
HAND_BUILT = {
    "sentinels_2016": build(
        2016,
        0x02,
        TIME_HEX,
        "01 FF FE FF FFFF FFFFFFFE FFFF FFFE FF FE FF FFFF FE FF",
        "02 01 01 FE FF FFFE FFFF FE FFFF FFFE",
        "05 FF FFFFFFFF FFFFFFFE",
        "06 FF FE FFFF FE FF FFFE FF FE FF FE FF FE",
        "07 FE 00000000 FF FE 00 00",
    ),
    "null_elements_2016": build(
        2016,
        0x02,
        TIME_HEX,
        "08 01 01 1B58 2710 0004 0001 04" + cells(3300, 0xFFFE, 0x8001, 0xFFFF),
        "09 01 01 0004 FE 00 FF 28",
    ),
    "paged_pack_2016": build(
        2016,
        0x02,
        TIME_HEX,
        "08 01 01 1B58 2710 0180 00C9 B8" + cells(*([3300] * 183 + [3310])),
        "09 01 01 0002 41 42",
    ),
    "joins_2016": build(
        2016,
        0x02,
        TIME_HEX,
        "09 03 02 0001 50 01 0002 46 47 03 0001 3C",
        "08 02 01 1B58 2710 0002 0001 02" + cells(3300, 3301),
        "02 1B58 2710 0001 0001 01" + cells(3400),
    ),
    "alarm_2016": build(
        2016, 0x03, TIME_HEX, "07 03 00000101 02 00000011 00000012 00 01 FFFFFFFF 00"
    ),
    "alarm_2025": build(
        2025,
        0x02,
        TIME_HEX,
        "06 04 00800003 01 00000011 00 00 02 00000021 00000022 02 17 04 00 03",
    ),
    "alarm_2025_no_bit_levels": build(2025, 0x02, TIME_HEX, "06 01 00000000 00 00 00 00 FE"),
    "sentinels_2025": build(
        2025,
        0x02,
        TIME_HEX,
        "01 01 03 01 0000 00000000 1BE2 7546 4B 01 0E FFFE",
        "07 02 01 1BE2 7546 FFFF 02 1BE2 7546 0003" + cells(0xFFFE, 3300, 0xFFFF),
    ),
}


def _tuples(table: Table, rows: Sequence[Any]) -> bytes:
    out = bytearray()
    assert table.encode_tuples is not None
    table.encode_tuples(out, rows)
    return bytes(out)


def python_copy(rows: FrameRows) -> tuple[bytes, bytes, bytes, bytes]:
    """The oracle: the Python encoders (storage.binary for packs, storage.binary_rows by the
    tables' SQL types for the others) applied to the frame's Python rows."""
    return (
        _tuples(VEHICLES, [rows.vehicle] if rows.vehicle is not None else []),
        _tuples(MOTORS, rows.motors),
        _tuples(PACKS, rows.packs),
        _tuples(ALARMS, [rows.alarm] if rows.alarm is not None else []),
    )


def _native(values: list[bytes], received: list[int | None]) -> list[FrameRows]:
    out = decode_rows_batch(values, received)
    assert all(isinstance(r, FrameRows) for r in out)
    return [r for r in out if isinstance(r, FrameRows)]


def test_tables_are_those_of_the_contract() -> None:
    assert tuple(t.name for t in TABLES) == COPY_TABLES
    assert [t.copy_index for t in TABLES] == [0, 1, 2, 3]


@pytest.mark.parametrize("name", sorted(HAND_BUILT))
def test_hand_built_frames_encode_as_the_python_encoders(name: str) -> None:
    (rows,) = _native([HAND_BUILT[name]], [RECEIVED_MS])
    assert rows.copy is not None, "a plain real-time frame must come with its tuples"
    assert rows.copy == python_copy(rows)


def test_simulated_fleet_frames_encode_as_the_python_encoders() -> None:
    start = int(time.time() * 1000) - 3_600_000
    values = [raw for _, raw in realtime_frames(40, 10, start_ms=start)]
    received: list[int | None] = [RECEIVED_MS + i for i in range(len(values))]
    editions = set()
    for rows in _native(values, received):
        assert rows.copy is not None
        assert rows.copy == python_copy(rows), rows
        editions.add(rows.edition)
    assert editions == {2016, 2025}


def test_golden_vectors_encode_as_the_python_encoders() -> None:
    checked = 0
    for v in load_vectors():
        raw = bytes.fromhex(v["hex"])
        (out,) = decode_rows_batch([raw], [RECEIVED_MS])
        if isinstance(out, FrameRows) and out.copy is not None:
            assert out.copy == python_copy(out), v["source"]
            checked += 1
    assert checked >= 10


def test_received_ms_becomes_an_aware_utc_datetime_or_null() -> None:
    raw = HAND_BUILT["joins_2016"]
    with_time, without = _native([raw, raw], [RECEIVED_MS, None])
    assert with_time.vehicle is not None and without.vehicle is not None
    assert with_time.vehicle.received_at == datetime.fromtimestamp(RECEIVED_MS / 1000, UTC)
    assert with_time.vehicle.received_at.tzinfo is UTC
    assert without.vehicle.received_at is None
    assert without.copy == python_copy(without)


def test_batch_keeps_order_returns_rejects_and_decodes_other_frames_in_python() -> None:
    good = HAND_BUILT["alarm_2016"]
    login = bytes.fromhex(load_vectors()[0]["hex"])  # a 2025 login: the structured decoder's
    bad_vin = build(2016, 0x02, TIME_HEX, vin="LSFD03205HC00118x")
    bad_bcc = good[:-1] + bytes([good[-1] ^ 1])
    out = decode_rows_batch([good, login, bad_vin, bad_bcc], [1, 2, 3, 4])
    assert isinstance(out[0], FrameRows) and out[0].alarm is not None
    assert isinstance(out[1], FrameRows) and out[1].session is not None and out[1].copy is None
    assert isinstance(out[2], FrameError) and out[2].reason == "bad_identity"
    assert isinstance(out[3], FrameError) and out[3].reason == "bad_checksum"
    with pytest.raises(FrameError):
        decode_rows(bad_vin)


def test_every_slot_is_set_and_values_must_be_bytes() -> None:
    (rows,) = _native([HAND_BUILT["alarm_2025"]], [RECEIVED_MS])
    for name in FrameRows.__slots__:
        getattr(rows, name)  # AttributeError if the native builder missed a slot
    with pytest.raises(TypeError, match="bytes"):
        decode_rows_batch([bytearray(HAND_BUILT["alarm_2025"])], [1])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="received_ms"):
        decode_rows_batch([HAND_BUILT["alarm_2025"]], [])


def test_vins_and_times_are_shared_objects_across_calls() -> None:
    raw = HAND_BUILT["joins_2016"]
    (a,) = _native([raw], [RECEIVED_MS])
    (b,) = _native([raw], [RECEIVED_MS])
    assert a.vehicle is not None and b.vehicle is not None
    assert a.vin is b.vin and a.vehicle.ts is b.vehicle.ts
    assert a.vehicle.received_at is b.vehicle.received_at


def test_a_finer_received_at_than_milliseconds_leaves_the_encoding_to_python() -> None:
    raw = HAND_BUILT["joins_2016"]
    whole = datetime(2025, 10, 11, 11, 8, 19, 123000, tzinfo=UTC)
    finer = datetime(2025, 10, 11, 11, 8, 19, 123456, tzinfo=UTC)
    a, b = decode_rows(raw, whole), decode_rows(raw, finer)
    assert a.vehicle is not None and a.vehicle.received_at is whole
    assert a.copy == python_copy(a)
    assert b.vehicle is not None and b.vehicle.received_at is finer and b.copy is None


def test_writer_stream_joins_native_tuples_and_encodes_python_built_rows() -> None:
    values = [HAND_BUILT[k] for k in ("joins_2016", "alarm_2016", "null_elements_2016")]
    frames = _native(values, [RECEIVED_MS] * 3)
    frames[1].copy = None  # as if built in Python: its rows are encoded by the writer
    loads = {t.name: rows for t, rows in rows_by_table(frames, range(3))}
    assert set(loads) == {"vehicle_telemetry", "battery_pack_telemetry", "alarm_events"}
    for table in (VEHICLES, PACKS, ALARMS):
        rows = loads[table.name]
        assert isinstance(rows, TableRows)
        native = [f for f in frames if f.copy is not None]
        want = b"".join(python_copy(f)[TABLES.index(table)] for f in native)
        want += python_copy(frames[1])[TABLES.index(table)]
        got = b"".join(native_pieces(table, rows))
        assert got == COPY_SIGNATURE + want + COPY_TRAILER, table.name
