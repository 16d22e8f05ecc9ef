"""Frames decoded by the native path, written by the batch writer on the real PostgreSQL: the
native COPY tuples (``FrameRows.copy``) store exactly the Python rows, alone or mixed with
Python-built rows in one COPY, through the hot path and the staging (reissue) path."""

from __future__ import annotations

import struct
import time
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest

from contract.clock import CHINA_TZ
from contract.rows import FrameRows
from devtools.sim.bench_frames import realtime_frames
from devtools.sim.framebuilder import build, time_hex
from devtools.sim.synthetic import vin
from ingest.decoders.fast import decode_rows_batch
from storage import LoaderKind, OffsetRange, PoolParams, RetryParams, StorageWriter, WriterParams
from storage.binary import int2_array_cells, int2_array_probes
from storage.tables import ALARMS, MOTORS, PACKS, VEHICLES, Table

pytestmark = pytest.mark.integration

TP = ("nev.vehicle.raw", 0)
T0 = datetime.now(CHINA_TZ).replace(microsecond=0) - timedelta(hours=1)
RECEIVED_MS = int(time.time() * 1000) - 3_000_000


def cells(*mv: int) -> str:
    return "".join(f"{v:04X}" for v in mv)


def native_frames() -> list[FrameRows]:
    """Simulated fleet frames of both editions plus hand-built ones whose rows need every
    column writer (NULL elements, NULL arrays, int8[] lists, 2025 bit levels, reissue)."""
    start = int(T0.timestamp() * 1000)
    values = [raw for _, raw in realtime_frames(10, 6, start_ms=start)]
    at = time_hex(T0 - timedelta(minutes=10))
    values += [
        build(
            2016,
            0x02,
            at,
            "08 01 01 1B58 2710 0004 0001 04" + cells(3300, 0xFFFE, 0x8001, 0xFFFF),
            "09 02 01 0004 FE 00 FF 28 02 0001 41",
            "07 03 00000101 02 00000011 00000012 00 01 FFFFFFFF 00",
            vin=vin(901),
        ),
        build(
            2025,
            0x03,
            at,
            "06 04 00800003 01 00000011 00 00 02 00000021 00000022 02 17 04 00 03",
            "07 02 01 1BE2 7546 FFFF 02 1BE2 7546 0003" + cells(0xFFFE, 3300, 0xFFFF),
            vin=vin(902),
        ),
    ]
    out = decode_rows_batch(values, [RECEIVED_MS + i for i in range(len(values))])
    frames = [f for f in out if isinstance(f, FrameRows)]
    assert len(frames) == len(values) and all(f.copy is not None for f in frames)
    return frames


def _f4(x: float) -> float:
    return float(struct.unpack(">f", struct.pack(">f", x))[0])


def stored_form(table: Table, row: Sequence[Any]) -> tuple[Any, ...]:
    """What PostgreSQL gives back for a Python row of ``table``."""
    out: list[Any] = []
    for i, (name, sql) in enumerate(zip(table.columns, table.types, strict=True)):
        v = row[i]
        if v is not None and sql == "float4":
            v = _f4(v)
        elif name == "cell_voltages_mv":
            v = int2_array_cells(v) if v else None
        elif name == "probe_temps_c":
            v = int2_array_probes(v) if v else None
        out.append(v)
    return tuple(out)


@pytest.fixture(params=[LoaderKind.COPY, LoaderKind.UNNEST], ids=["copy", "unnest"])
async def writer(
    migrated_database: str, request: pytest.FixtureRequest
) -> AsyncIterator[StorageWriter]:
    params = WriterParams(
        consumer_group="g", loader=request.param, retry=RetryParams(attempts=3, initial=0.01)
    )
    w = await StorageWriter.open(
        PoolParams(dsn=migrated_database, application_name="nev-test-native"), params
    )
    yield w
    await w.close()


async def test_native_frames_store_exactly_their_python_rows(writer: StorageWriter) -> None:
    frames = native_frames()
    frames[3].copy = None  # one Python-built frame in the same COPY as the native ones
    result = await writer.write_batch(frames, {TP: OffsetRange(None, len(frames))})
    assert result.committed == {TP: len(frames)} and not result.rejected
    want: dict[str, list[tuple[Any, ...]]] = {t.name: [] for t in (VEHICLES, MOTORS, PACKS)}
    want[ALARMS.name] = []
    for f in frames:
        assert f.vehicle is not None
        want[VEHICLES.name].append(stored_form(VEHICLES, f.vehicle))
        want[MOTORS.name] += [stored_form(MOTORS, m) for m in f.motors]
        want[PACKS.name] += [stored_form(PACKS, p) for p in f.packs]
        if f.alarm is not None:
            want[ALARMS.name].append(stored_form(ALARMS, f.alarm))
    assert all(want.values()), "every table gets rows"
    async with writer.pool.acquire() as conn:
        for table in (VEHICLES, MOTORS, PACKS, ALARMS):
            cols = ", ".join(table.columns)
            got = [tuple(r) for r in await conn.fetch(f"SELECT {cols} FROM {table.name}")]
            assert sorted(got, key=repr) == sorted(want[table.name], key=repr), table.name
        latest = await conn.fetch("SELECT entity_id, ts, received_at FROM latest_state")
    newest: dict[str, Any] = {}
    for f in frames:
        assert f.vehicle is not None
        if f.vin not in newest or f.vehicle.ts > newest[f.vin][0]:
            newest[f.vin] = (f.vehicle.ts, f.vehicle.received_at)
    assert {r["entity_id"]: (r["ts"], r["received_at"]) for r in latest} == newest


async def test_native_frames_sent_twice_are_stored_once(writer: StorageWriter) -> None:
    frames = native_frames()
    n = len(frames)
    first = await writer.write_batch(frames, {TP: OffsetRange(None, n)})
    # The device sends them all again (new offsets): the COPY meets stored keys and the batch
    # is redone through the staging table, skipping what is there.
    again = await writer.write_batch(frames, {TP: OffsetRange(n, 2 * n)})
    assert first.rows["vehicle_telemetry"] == n and not again.rejected
    assert again.committed == {TP: 2 * n}
    assert again.rows.get("vehicle_telemetry", 0) == 0 and again.duplicates_skipped > 0
    async with writer.pool.acquire() as conn:
        for table in (VEHICLES, PACKS, ALARMS):
            stored = await conn.fetchval(f"SELECT count(*) FROM {table.name}")
            assert stored == first.rows[table.name], table.name
