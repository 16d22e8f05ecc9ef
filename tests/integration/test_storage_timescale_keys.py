"""Key changes of the charger tables and of raw_frames on the TimescaleDB engine
(PGlite-TimescaleDB: one connection, no COPY), applied to a deployment that already has
compressed chunks."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contract.clock import CHINA_TZ
from storage import OffsetRange, PoolParams, StorageParams, StorageWriter, WriterParams, migrate
from storage.connect import connect
from storage.migrate import MIGRATIONS_DIR
from tests.integration.kinds_frames import CHARGER, charger_realtime, connector
from tests.integration.test_storage_charger_keys import PILE_1, PILE_2, pile_fault

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
TP = ("nev.charger.raw", 0)


async def _compressed_before(
    dsn: str, tmp_path: Path, name: str, migration: str, table: str, insert: str, *args: object
) -> None:
    """Schema ``name`` as a deployment migrated before ``migration`` leaves it: one row of
    ``table`` (``insert``) in a compressed chunk; then ``migrate`` applies ``migration`` (and
    only it) over that chunk."""
    before = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, before)
    for f in before.glob(f"{migration.split('_')[0]}_*"):
        f.unlink()
    conn = await connect(PoolParams(dsn=dsn, schema=name))
    try:
        await migrate(conn, StorageParams(schema=name), directory=before)
        await conn.execute(insert, *args)
        compressed = await conn.fetchval(
            "SELECT count(compress_chunk(c)) FROM show_chunks($1::regclass) c",
            f"{name}.{table}",
        )
        assert compressed == 1
        report = await migrate(conn, StorageParams(schema=name))
        assert [m.split()[0] for m in report.applied] == [migration]
    finally:
        await conn.close()


async def _drop_schema(dsn: str, name: str) -> None:
    conn = await connect(PoolParams(dsn=dsn, schema=name))
    try:
        await conn.execute(f"DROP SCHEMA {name} CASCADE")
    finally:
        await conn.close()


async def test_pile_fault_key_reaches_compressed_chunks(
    timescale_dsn: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    # A deployment migrated before 0076 holds pile 1's fault in a compressed chunk; after
    # 0076, pile 2's fault of the same second goes in beside it, and a redelivery of both is
    # skipped, not doubled.
    name = unique_name("keys")
    old = (NOW - timedelta(days=10)).replace(minute=30, second=0)
    await _compressed_before(
        timescale_dsn,
        tmp_path,
        name,
        "0076_charger_faults_pile",
        "charger_faults",
        f"INSERT INTO {name}.charger_faults VALUES ($1, '', $2, $3, '{{101}}', 'frame')",
        PILE_1[:9],
        old,
        PILE_1,
    )
    w = await StorageWriter.open(
        PoolParams(dsn=timescale_dsn, schema=name), WriterParams(consumer_group="g", schema=name)
    )
    try:
        frames = [pile_fault(PILE_1, old, 101)[1], pile_fault(PILE_2, old, 202)[1]]
        first = await w.write_batch(frames, {TP: OffsetRange(None, 2)})
        assert first.rows.get("charger_faults", 0) == 1 and first.duplicates_skipped == 1
        again = await w.write_batch(frames, {TP: OffsetRange(2, 4)})
        assert again.rows.get("charger_faults", 0) == 0 and again.duplicates_skipped == 2
        async with w.pool.acquire() as c:
            rows = await c.fetch(
                f"SELECT charger_id, fault_codes FROM {name}.charger_faults ORDER BY charger_id"
            )
        assert [tuple(r) for r in rows] == [(PILE_1, [101]), (PILE_2, [202])]
    finally:
        await w.close()
        await _drop_schema(timescale_dsn, name)


async def _uncompressed(c: Any, table: str) -> int:
    """Rows of ``table``'s one chunk outside its compressed part (DML decompresses into it)."""
    chunk = await c.fetchval("SELECT c::text FROM show_chunks($1::regclass) c", table)
    return int(await c.fetchval(f"SELECT count(*) FROM ONLY {chunk}"))


async def test_a_later_fault_of_a_second_joins_its_row_in_a_compressed_chunk(
    timescale_dsn: str, unique_name: Callable[[str], str]
) -> None:
    # A pile's fault 101 of 100 seconds is in a compressed chunk (one segment). A resend of one
    # of those reports changes nothing and leaves the chunk compressed (an upsert of it would
    # decompress the segment, however false its WHERE); a later batch's report of that second
    # with 101 and 102 adds 102 to the stored row (ON CONFLICT DO UPDATE reaches the compressed
    # row), and the same report again changes nothing.
    name = unique_name("faults")
    old = (NOW - timedelta(days=10)).replace(minute=30, second=0)
    conn = await connect(PoolParams(dsn=timescale_dsn, schema=name))
    try:
        await migrate(conn, StorageParams(schema=name))
        await conn.execute(
            f"INSERT INTO {name}.charger_faults SELECT $1, '', $2::timestamptz "
            f"+ i * interval '1 second', $3, '{{101}}', 'frame' FROM generate_series(0, 99) i",
            PILE_1[:9],
            old,
            PILE_1,
        )
        compressed = await conn.fetchval(
            "SELECT count(compress_chunk(c)) FROM show_chunks($1::regclass) c",
            f"{name}.charger_faults",
        )
        assert compressed == 1
        assert await _uncompressed(conn, f"{name}.charger_faults") == 0
    finally:
        await conn.close()
    w = await StorageWriter.open(
        PoolParams(dsn=timescale_dsn, schema=name), WriterParams(consumer_group="g", schema=name)
    )
    try:
        resent = await w.write_batch([pile_fault(PILE_1, old, 101)[1]], {TP: OffsetRange(None, 1)})
        assert resent.rows.get("charger_faults", 0) == 0 and resent.duplicates_skipped == 1
        async with w.pool.acquire() as c:
            assert await _uncompressed(c, f"{name}.charger_faults") == 0
        later = [pile_fault(PILE_1, old, 101, 102)[1]]
        first = await w.write_batch(later, {TP: OffsetRange(1, 2)})
        assert first.rows.get("charger_faults", 0) == 1 and first.duplicates_skipped == 0
        again = await w.write_batch(later, {TP: OffsetRange(2, 3)})
        assert again.rows.get("charger_faults", 0) == 0 and again.duplicates_skipped == 1
        async with w.pool.acquire() as c:
            rows = await c.fetch(
                f"SELECT fault_codes FROM {name}.charger_faults WHERE ts = $1", old
            )
        assert [r["fault_codes"] for r in rows] == [[101, 102]]
    finally:
        await w.close()
        await _drop_schema(timescale_dsn, name)


async def test_raw_frames_offset_key_reaches_compressed_chunks(
    timescale_dsn: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    # A deployment migrated before 0080 archived a pile's first frame of a second in a
    # compressed chunk; after 0080 its other frames of that second are archived beside it, and
    # the first record written again is skipped, not doubled.
    name = unique_name("rawkey")
    at = (NOW - timedelta(days=2)).replace(minute=30, second=0).astimezone(CHINA_TZ)
    frames = [charger_realtime(at, connector(k)) for k in range(3)]
    await _compressed_before(
        timescale_dsn,
        tmp_path,
        name,
        "0080_raw_frames_offset_key",
        "raw_frames",
        f"INSERT INTO {name}.raw_frames VALUES ($1, $2, 2, 2016, 'charger', $3, 0, 0, $4)",
        CHARGER,
        at,
        TP[0],
        frames[0][0],
    )
    params = WriterParams(consumer_group="g", schema=name, raw_frames=True)
    w = await StorageWriter.open(PoolParams(dsn=timescale_dsn, schema=name), params)
    try:
        result = await w.write_batch(
            [rows for _, rows in frames],
            {TP: OffsetRange(None, 3)},
            kafka_offsets=[0, 1, 2],
            raw=[raw for raw, _ in frames],
        )
        assert result.rows.get("raw_frames", 0) == 2
        async with w.pool.acquire() as c:
            rows = await c.fetch(
                f"SELECT kafka_offset, frame FROM {name}.raw_frames ORDER BY kafka_offset"
            )
        assert [(r["kafka_offset"], r["frame"]) for r in rows] == [
            (k, raw) for k, (raw, _) in enumerate(frames)
        ]
    finally:
        await w.close()
        await _drop_schema(timescale_dsn, name)
