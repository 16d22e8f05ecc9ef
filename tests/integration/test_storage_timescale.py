"""The TimescaleDB flavour on the real TimescaleDB engine (PGlite-TimescaleDB: one connection,
no COPY): hypertables, chunk intervals, compression and retention policies that run,
continuous aggregates, and the writer's unnest loader exactly once."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contract.rows import FrameRows
from devtools.sim.framebuilder import build, time_hex
from devtools.sim.synthetic import frame_rows, vin
from ingest.decoders.fast import decode_rows
from storage import (
    LoaderKind,
    OffsetRange,
    PoolParams,
    SchemaMode,
    StorageParams,
    StorageWriter,
    TimescaleParams,
    WriterParams,
    migrate,
)
from storage.connect import connect
from storage.migrate import MIGRATIONS_DIR
from storage.params import TIMESERIES_TABLES
from storage.policies import CONTINUOUS_AGGREGATES
from tests.integration.test_storage_kinds import EXPECTED_ROWS, check_mixed_rows, mixed

pytestmark = pytest.mark.integration

TP = ("nev.vehicle.raw", 3)
# A chunk's rows, batches (compressed rows) and how many of them its last full compression
# wrote (TimescaleDB's catalog): a roll-up merge adds batches without writing them anew.
_CHUNK_STATE = """
SELECT i.range_start, i.range_end, i.is_compressed, c.compressed_chunk_id,
       s.numrows_pre_compression AS rows, s.numrows_post_compression AS batches,
       s.numrows_frozen_immediately AS written
FROM timescaledb_information.chunks i
JOIN _timescaledb_catalog.chunk c ON c.schema_name = i.chunk_schema AND c.table_name = i.chunk_name
LEFT JOIN _timescaledb_catalog.compression_chunk_size s ON s.chunk_id = c.id
WHERE i.hypertable_schema = $1 AND i.hypertable_name = 'vehicle_telemetry'
"""
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
async def schema(timescale_dsn: str, unique_name: Callable[[str], str]) -> AsyncIterator[str]:
    """A schema of its own on the engine, migrated; dropped afterwards."""
    name = unique_name("ts")
    conn = await connect(PoolParams(dsn=timescale_dsn, schema=name))
    try:
        report = await migrate(conn, StorageParams(schema=name))
        assert report.mode is SchemaMode.TIMESCALE
    finally:
        await conn.close()
    yield name
    conn = await connect(PoolParams(dsn=timescale_dsn, schema=name))
    try:
        await conn.execute(f"DROP SCHEMA {name} CASCADE")
    finally:
        await conn.close()


async def open_writer(dsn: str, schema: str) -> StorageWriter:
    return await StorageWriter.open(
        PoolParams(dsn=dsn, schema=schema), WriterParams(consumer_group="g", schema=schema)
    )


async def jobs(conn: Any, schema: str, proc: str) -> dict[str, Any]:
    rows = await conn.fetch(
        "SELECT hypertable_name, job_id, config::text AS config, schedule_interval "
        "FROM timescaledb_information.jobs WHERE hypertable_schema = $1 AND proc_name = $2",
        schema,
        proc,
    )
    return {r["hypertable_name"]: r for r in rows}


# The hypertable and the continuous-aggregate checks read two catalog views alike (``duplicates``
# pairs them by shape): one query each, spelled out, is what the assertions are about.
async def test_hypertables_policies_and_aggregates(timescale_dsn: str, schema: str) -> None:
    conn = await connect(PoolParams(dsn=timescale_dsn, schema=schema))
    try:
        tables = await conn.fetch(
            "SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables "
            "WHERE hypertable_schema = $1",
            schema,
        )
        assert {r["hypertable_name"]: r["compression_enabled"] for r in tables} == dict.fromkeys(
            TIMESERIES_TABLES, True
        )
        intervals = await conn.fetch(
            "SELECT hypertable_name, time_interval FROM timescaledb_information.dimensions "
            "WHERE hypertable_schema = $1",
            schema,
        )
        assert {r["hypertable_name"]: r["time_interval"] for r in intervals} == (
            TimescaleParams().chunk_intervals()
        )
        segment = await conn.fetch(
            "SELECT hypertable_name, attname FROM timescaledb_information.compression_settings "
            "WHERE hypertable_schema = $1 AND segmentby_column_index = 1",
            schema,
        )
        # one entity's rows compress together: a vehicle's, a connector's, a pack's
        by_kind = {"vin": "vehicle", "operator_id": "charger", "pack_code": "battery"}
        assert {r["hypertable_name"]: by_kind[r["attname"]] for r in segment} == {
            **dict.fromkeys(TIMESERIES_TABLES[:6], "vehicle"),
            **dict.fromkeys(TIMESERIES_TABLES[6:10], "charger"),
            **dict.fromkeys(TIMESERIES_TABLES[10:], "battery"),
        }
        rollup = {
            t: await conn.fetchval(
                "SELECT compress_interval_length "
                "FROM timescaledb_information.hypertable_compression_settings "
                "WHERE hypertable = $1::regclass",
                f"{schema}.{t}",
            )
            for t in TIMESERIES_TABLES
        }
        assert rollup == {
            "vehicle_telemetry": "1 day",
            "drive_motor_telemetry": "1 day",
            "battery_pack_telemetry": "1 day",
            "raw_frames": "1 day",
            "alarm_events": None,  # its 1-day chunks are long enough already
            "vehicle_sessions": None,
            "connector_status_events": "1 day",
            "charger_telemetry": "1 day",
            "charging_session_events": "1 day",  # 30-minute chunks
            "charger_faults": None,
            "pack_telemetry": "1 day",
            "pack_alarm_events": None,
            "pack_sessions": None,
        }
        compression = await jobs(conn, schema, "policy_compression")
        assert set(compression) == set(TIMESERIES_TABLES)
        assert all('"compress_after": "2 days"' in j["config"] for j in compression.values())
        retention = await jobs(conn, schema, "policy_retention")
        # 1h kept forever (a fresh install: 0088 dropped the empty 0003 aggregates)
        assert set(retention) == {*TIMESERIES_TABLES, "vehicle_stats_1m_energy"}
        assert '"drop_after": "7 days"' in retention["raw_frames"]["config"]
        assert '"drop_after": "1095 days"' in retention["vehicle_telemetry"]["config"]
        refresh = await jobs(conn, schema, "policy_refresh_continuous_aggregate")
        assert set(refresh) == set(CONTINUOUS_AGGREGATES)
        views = await conn.fetch(
            "SELECT view_name, materialized_only FROM timescaledb_information.continuous_aggregates"
            " WHERE view_schema = $1",
            schema,
        )
        assert {r["view_name"]: r["materialized_only"] for r in views} == dict.fromkeys(
            CONTINUOUS_AGGREGATES, False
        )

        # configuration changes are applied, and only they; a third run changes nothing
        changed = TimescaleParams(
            compress_after=timedelta(days=1),
            chunk_overrides={"vehicle_telemetry": timedelta(hours=2)},
            retention={**TimescaleParams().retention, "raw_frames": None},
        )
        report = await migrate(conn, StorageParams(schema=schema, timescale=changed))
        assert report.applied == []
        assert "vehicle_telemetry: chunk interval 2 h" in report.settings
        assert "raw_frames: policy_retention removed" in report.settings
        assert sum("compress_after = 1 day" in line for line in report.settings) == len(
            TIMESERIES_TABLES
        )
        # the recompression job follows: compress_after + the longest rolled-up chunk + 1 h
        assert "recompress_rolled_up: every 1 h, chunks that ended 27 h ago" in report.settings
        assert len(report.settings) == len(TIMESERIES_TABLES) + 3
        assert "raw_frames" not in await jobs(conn, schema, "policy_retention")
        again = await migrate(conn, StorageParams(schema=schema, timescale=changed))
        assert again.settings == []
    finally:
        await conn.close()


def old_and_new(vehicles: int, *, days_ago: float, frames: int) -> list[FrameRows]:
    start = NOW - timedelta(days=days_ago)
    return [
        frame_rows(vin(i), start + timedelta(seconds=10 * k), seq=k)
        for k in range(frames)
        for i in range(vehicles)
    ]


async def test_writer_stores_once_with_the_unnest_loader(timescale_dsn: str, schema: str) -> None:
    w = await open_writer(timescale_dsn, schema)
    try:
        assert w.loader.kind is LoaderKind.UNNEST
        frames = old_and_new(4, days_ago=0.01, frames=3)
        first = await w.write_batch(frames, {TP: OffsetRange(None, 12)})
        assert first.frames == 12 and first.rows["battery_pack_telemetry"] == 12
        replay = await w.write_batch(frames, {TP: OffsetRange(None, 12)})
        assert replay.fenced == {TP: 12} and replay.rows == {}
        dup = await w.write_batch([frames[0], frames[5]], {TP: OffsetRange(12, 14)})
        assert dup.conflict_fallbacks == 1 and dup.duplicates_skipped == 6
        bad = frame_rows(vin(9), NOW)
        bad.motors[0] = bad.motors[0]._replace(seq=40000)
        res = await w.write_batch([bad], {TP: OffsetRange(14, 15)})
        assert [r.index for r in res.rejected] == [0] and res.committed == {TP: 15}
        async with w.pool.acquire() as conn:
            assert await conn.fetchval(f"SELECT count(*) FROM {schema}.vehicle_telemetry") == 12
            cells = await conn.fetchval(
                f"SELECT cell_voltages_mv FROM {schema}.battery_pack_telemetry "
                "WHERE vin = $1 ORDER BY ts LIMIT 1",
                vin(0),
            )
            assert cells[:3] == [3300, 3301, 3302] and len(cells) == 96
            assert await conn.fetchval(f"SELECT count(*) FROM {schema}.latest_state") == 4
        assert await w.load_offsets([TP]) == {TP: 15}
    finally:
        await w.close()


async def test_chargers_and_packs_are_stored_once_in_their_hypertables(
    timescale_dsn: str, schema: str
) -> None:
    w = await open_writer(timescale_dsn, schema)
    try:
        batch = mixed()
        first = await batch.write(w)
        assert first.rows == EXPECTED_ROWS and first.latest == 6 and not first.rejected
        replay = await batch.write(w)
        assert replay.frames == 0 and replay.rows == {} and set(replay.fenced) == set(batch.next)
        async with w.pool.acquire() as conn:
            await check_mixed_rows(conn)
            chunks = await conn.fetch(
                "SELECT hypertable_name, count(*) AS n FROM timescaledb_information.chunks "
                "WHERE hypertable_schema = $1 GROUP BY hypertable_name",
                schema,
            )
        stored = {r["hypertable_name"] for r in chunks}
        assert {"charger_telemetry", "pack_telemetry", "charger_faults"} <= stored
    finally:
        await w.close()


async def test_compression_policy_compresses_old_chunks(timescale_dsn: str, schema: str) -> None:
    w = await open_writer(timescale_dsn, schema)
    try:
        old = old_and_new(5, days_ago=10, frames=20)
        recent = old_and_new(5, days_ago=0.01, frames=2)
        await w.write_batch(old + recent, {TP: OffsetRange(None, 110)})
        async with w.pool.acquire() as conn:
            for job in (await jobs(conn, schema, "policy_compression")).values():
                await conn.execute(f"CALL run_job({job['job_id']})")
            chunks = await conn.fetch(
                "SELECT range_end, is_compressed FROM timescaledb_information.chunks "
                "WHERE hypertable_schema = $1 AND hypertable_name = 'battery_pack_telemetry'",
                schema,
            )
            cutoff = NOW - timedelta(days=2)
            assert {c["range_end"] < cutoff for c in chunks if c["is_compressed"]} == {True}
            assert any(c["is_compressed"] for c in chunks)
            assert not any(
                c["is_compressed"] for c in chunks if c["range_end"] > NOW - timedelta(hours=1)
            )
            stats = await conn.fetchrow(
                "SELECT * FROM hypertable_compression_stats($1::regclass)",
                f"{schema}.battery_pack_telemetry",
            )
            assert stats["number_compressed_chunks"] >= 1
            # compressed data reads back the same
            cells = await conn.fetchval(
                f"SELECT cell_voltages_mv[1:3] FROM {schema}.battery_pack_telemetry "
                "WHERE vin = $1 ORDER BY ts LIMIT 1",
                vin(2),
            )
            assert cells == [3300, 3301, 3302]
        # a reissue into compressed chunks: what is stored is skipped, what is new goes in
        again = [frame_rows(f.vin, f.vehicle.ts, seq=1, command=3) for f in old[:5] if f.vehicle]
        new = [frame_rows(vin(i), NOW - timedelta(days=10, seconds=5), command=3) for i in range(5)]
        res = await w.write_batch(again + new, {TP: OffsetRange(110, 120)})
        assert res.duplicates_skipped == 15 and res.rows["vehicle_telemetry"] == 5
        async with w.pool.acquire() as conn:
            assert await conn.fetchval(f"SELECT count(*) FROM {schema}.vehicle_telemetry") == 115
    finally:
        await w.close()


async def test_rolled_up_chunks_are_compressed_again_by_the_recompress_job(
    timescale_dsn: str, schema: str
) -> None:
    # 5 vehicles, a frame a minute for 40 minutes, 10 days ago: 8 chunks of 5 minutes, which
    # the compression policy rolls up into one chunk holding each source chunk's batches.
    start = (NOW - timedelta(days=10)).replace(minute=0, second=0)
    frames = [
        frame_rows(vin(i), start + timedelta(minutes=k), seq=k) for k in range(40) for i in range(5)
    ]
    assert TimescaleParams().chunk_intervals()["vehicle_telemetry"] == timedelta(minutes=5)
    w = await open_writer(timescale_dsn, schema)
    try:
        await w.write_batch(frames, {TP: OffsetRange(None, len(frames))})
        async with w.pool.acquire() as conn:
            policy = (await jobs(conn, schema, "policy_compression"))["vehicle_telemetry"]
            await conn.execute(f"CALL run_job({policy['job_id']})")

            async def state() -> list[Any]:
                return list(
                    await conn.fetch(
                        _CHUNK_STATE,
                        schema,
                    )
                )

            rolled = await state()
            assert len(rolled) == 1 and rolled[0]["is_compressed"]
            assert rolled[0]["range_end"] - rolled[0]["range_start"] == timedelta(minutes=40)
            # one batch per vehicle per source chunk, appended by the merges
            assert (rolled[0]["rows"], rolled[0]["batches"]) == (200, 5 * 8)
            assert rolled[0]["written"] < rolled[0]["batches"]
            size_rolled = await conn.fetchval(
                "SELECT hypertable_size($1::regclass)", f"{schema}.vehicle_telemetry"
            )

            job = await conn.fetchrow(
                "SELECT job_id, config FROM timescaledb_information.jobs "
                "WHERE proc_schema = $1 AND proc_name = 'recompress_rolled_up'",
                schema,
            )
            await conn.execute(f"CALL run_job({job['job_id']})")
            again = await state()
            assert len(again) == 1 and again[0]["is_compressed"]
            assert again[0]["range_start"] == rolled[0]["range_start"]
            # one batch per vehicle for the whole rolled-up chunk, all written by one compression
            assert (again[0]["rows"], again[0]["batches"], again[0]["written"]) == (200, 5, 5)
            assert again[0]["compressed_chunk_id"] != rolled[0]["compressed_chunk_id"]
            assert (
                await conn.fetchval(
                    "SELECT hypertable_size($1::regclass)", f"{schema}.vehicle_telemetry"
                )
                < size_rolled
            )
            # the data reads back the same
            stored = await conn.fetch(
                f"SELECT vin, ts, odometer_km FROM {schema}.vehicle_telemetry ORDER BY vin, ts"
            )
            want = sorted(
                (f.vehicle.vin, f.vehicle.ts, f.vehicle.odometer_km) for f in frames if f.vehicle
            )
            assert [(r["vin"], r["ts"], r["odometer_km"]) for r in stored] == want
            # recompressed once: the next run leaves it alone
            await conn.execute(f"CALL run_job({job['job_id']})")
            assert (await state())[0]["compressed_chunk_id"] == again[0]["compressed_chunk_id"]
    finally:
        await w.close()


async def test_retention_policy_drops_what_is_past_the_horizon(
    timescale_dsn: str, schema: str
) -> None:
    w = await open_writer(timescale_dsn, schema)
    try:
        ancient = old_and_new(3, days_ago=4 * 365, frames=3)
        recent = old_and_new(3, days_ago=1, frames=3)
        await w.write_batch(ancient + recent, {TP: OffsetRange(None, 18)})
        async with w.pool.acquire() as conn:
            job = (await jobs(conn, schema, "policy_retention"))["vehicle_telemetry"]
            await conn.execute(f"CALL run_job({job['job_id']})")
            left = await conn.fetch(f"SELECT ts FROM {schema}.vehicle_telemetry")
            assert len(left) == 9 and min(r["ts"] for r in left) > NOW - timedelta(days=2)
            # the other tables have their own policies, not run here
            assert await conn.fetchval(f"SELECT count(*) FROM {schema}.drive_motor_telemetry") == 18
    finally:
        await w.close()


async def test_continuous_aggregates(timescale_dsn: str, schema: str) -> None:
    start = NOW.replace(minute=0, second=0) - timedelta(hours=3)
    frames = [frame_rows(vin(7), start + timedelta(seconds=10 * k), seq=k + 1) for k in range(12)]
    frames[3] = frame_rows(vin(7), start + timedelta(seconds=30), seq=4, alarm_level=3)
    w = await open_writer(timescale_dsn, schema)
    try:
        await w.write_batch(frames, {TP: OffsetRange(None, 12)})
        async with w.pool.acquire() as conn:
            # real-time aggregation: visible before any refresh
            live = await conn.fetch(f"SELECT frames FROM {schema}.vehicle_stats_1m ORDER BY bucket")
            assert [r["frames"] for r in live] == [6, 6]
            for view in CONTINUOUS_AGGREGATES:
                await conn.execute(
                    f"CALL refresh_continuous_aggregate('{schema}.{view}', NULL, NULL)"
                )
            rows = await conn.fetch(f"SELECT * FROM {schema}.vehicle_stats_1m ORDER BY bucket")
            hour = await conn.fetchrow(f"SELECT * FROM {schema}.vehicle_stats_1h")
    finally:
        await w.close()
    assert [r["bucket"] for r in rows] == [start, start + timedelta(minutes=1)]
    v = [f.vehicle for f in frames[:6] if f.vehicle is not None]
    odo = [x.odometer_km for x in v if x.odometer_km is not None]
    first = rows[0]
    assert first["distance_km"] == pytest.approx(odo[-1] - odo[0], abs=1e-6)
    power = sum((x.total_voltage_v or 0) * max(x.total_current_a or 0, 0) for x in v)
    assert first["energy_out_kwh"] == pytest.approx(power * 10 / 3.6e6, rel=1e-4)
    socs = [x.soc_pct for x in v if x.soc_pct is not None]
    assert (first["soc_min_pct"], first["soc_max_pct"]) == (min(socs), max(socs))
    assert (first["alarm_frames"], first["severe_alarm_frames"]) == (1, 1)
    assert hour["frames"] == 12 and hour["max_alarm_level"] == 3
    assert hour["max_temp_c"] == max(f.vehicle.max_temp_c or 0 for f in frames if f.vehicle)


async def test_signature_missing_is_added_to_compressed_chunks_and_stored(
    timescale_dsn: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    # A deployment migrated before 0005, with compressed chunks: 0005 applies to it, old rows
    # read NULL (not recorded), the writer stores the flag (in the compressed range too), and
    # both ways of filtering on it work there (a column added with a default fails them:
    # "unexpected column type 'boolean'", see 0005_signature_missing.sql).
    before = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, before)
    (before / "0005_signature_missing.sql").unlink()
    name = unique_name("sig")
    # half past an hour: the rows below and the reissue share one chunk of any interval >= 1 h
    old_ts = (NOW - timedelta(days=10)).replace(minute=30, second=0)
    conn = await connect(PoolParams(dsn=timescale_dsn, schema=name))
    try:
        await migrate(conn, StorageParams(schema=name), directory=before)
        await conn.execute(
            f"INSERT INTO {name}.vehicle_telemetry "
            "(vin, ts, edition, command, extremes_derived, fault_count) "
            "SELECT $1, $2::timestamptz + k * INTERVAL '10 s', 2025, 2, false, 0 "
            "FROM generate_series(0, 9) k",
            vin(1),
            old_ts,
        )
        compressed = await conn.fetchval(
            "SELECT count(compress_chunk(c)) FROM show_chunks($1::regclass) c",
            f"{name}.vehicle_telemetry",
        )
        assert compressed >= 1
        report = await migrate(conn, StorageParams(schema=name))
        assert [m.split()[0] for m in report.applied] == ["0005_signature_missing"]
        stored = await conn.fetch(
            f"SELECT signature_missing FROM {name}.vehicle_telemetry WHERE vin = $1", vin(1)
        )
        assert [r["signature_missing"] for r in stored] == [None] * 10
    finally:
        await conn.close()
    w = await open_writer(timescale_dsn, name)
    try:
        signature = "FF 02 0002 AABB 0000"
        recent = NOW - timedelta(minutes=1)
        sent = [
            (0x02, recent, signature),
            (0x02, recent + timedelta(seconds=10), ""),
            (0x03, old_ts + timedelta(seconds=5), ""),  # a reissue into the compressed chunk
        ]
        frames = [
            decode_rows(build(2025, cmd, time_hex(at), "04 0BB8", sig, vin=vin(2)), NOW)
            for cmd, at, sig in sent
        ]
        assert [f.signature_missing for f in frames] == [False, True, True]
        result = await w.write_batch(frames, {TP: OffsetRange(None, 3)})
        assert result.rows["vehicle_telemetry"] == 3 and not result.rejected
        async with w.pool.acquire() as conn:
            flagged = await conn.fetch(
                f"SELECT ts FROM {name}.vehicle_telemetry WHERE signature_missing ORDER BY ts"
            )
            unsigned = await conn.fetchval(
                f"SELECT count(*) FROM {name}.vehicle_telemetry WHERE NOT signature_missing"
            )
        assert [r["ts"] for r in flagged] == [old_ts + timedelta(seconds=5), sent[1][1]]
        assert unsigned == 1  # the signed frame; the ten stored before 0005 are NULL
    finally:
        await w.close()
        conn = await connect(PoolParams(dsn=timescale_dsn, schema=name))
        try:
            await conn.execute(f"DROP SCHEMA {name} CASCADE")
        finally:
            await conn.close()
