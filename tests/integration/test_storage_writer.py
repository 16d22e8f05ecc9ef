"""The batch writer on the real PostgreSQL, with both loaders: rows as sent, exactly once under
replays, a killed connection, stale consumers and device duplicates; bad frames isolated."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

from contract.clock import CHINA_TZ
from contract.rows import FrameRows
from devtools.sim.framebuilder import build, time_hex
from devtools.sim.synthetic import frame_rows, session_rows, vin
from ingest.decoders.fast import decode_rows
from storage import (
    BatchOutcome,
    Dedupe,
    LoaderKind,
    OffsetRange,
    PoolParams,
    RetryParams,
    StorageError,
    StorageWriter,
    WriterParams,
)

pytestmark = pytest.mark.integration

TP = ("nev.vehicle.raw", 0)
FAST_RETRY = RetryParams(attempts=5, initial=0.01, maximum=0.05)
T0 = datetime.now(CHINA_TZ).replace(microsecond=0) - timedelta(hours=1)


WriterFactory = Callable[..., Awaitable[StorageWriter]]


@pytest.fixture(params=[LoaderKind.COPY, LoaderKind.UNNEST], ids=["copy", "unnest"])
async def writer_factory(
    migrated_database: str, request: pytest.FixtureRequest
) -> AsyncIterator[WriterFactory]:
    opened: list[StorageWriter] = []

    async def make(group: str = "g", **kw: Any) -> StorageWriter:
        kw.setdefault("retry", FAST_RETRY)
        params = WriterParams(consumer_group=group, loader=request.param, **kw)
        w = await StorageWriter.open(
            PoolParams(dsn=migrated_database, application_name="nev-test-writer"), params
        )
        opened.append(w)
        return w

    yield make
    for w in opened:
        await w.close()


def fleet(vehicles: int, frames: int, *, start: datetime = T0, **kw: Any) -> list[FrameRows]:
    return [
        frame_rows(vin(i), start + timedelta(seconds=10 * k), seq=k, **kw)
        for k in range(frames)
        for i in range(vehicles)
    ]


async def counts(w: StorageWriter) -> dict[str, int]:
    async with w.pool.acquire() as conn:
        out = {}
        for t in ("vehicle_telemetry", "drive_motor_telemetry", "battery_pack_telemetry"):
            out[t] = await conn.fetchval(f"SELECT count(*) FROM {t}")
            dupes = await conn.fetchval(
                f"SELECT count(*) FROM (SELECT 1 FROM {t} GROUP BY vin, ts HAVING count(*) > 1) d"
            )
            assert dupes == 0 or t == "drive_motor_telemetry"
        return out


async def test_rows_arrive_as_sent(writer_factory: WriterFactory) -> None:
    w = await writer_factory()
    frames = fleet(3, 4, alarm_level=2, cell_sentinels=2)
    frames.append(session_rows(vin(0), T0 - timedelta(minutes=5)))
    result = await w.write_batch(frames, {TP: OffsetRange(None, 13)})
    assert result.committed == {TP: 13} and not result.fenced and not result.rejected
    assert result.rows == {
        "vehicle_telemetry": 12,
        "drive_motor_telemetry": 12,
        "battery_pack_telemetry": 12,
        "alarm_events": 12,
        "vehicle_sessions": 1,
    }
    sent = frames[5]
    assert sent.vehicle is not None and sent.packs
    async with w.pool.acquire() as conn:
        v = await conn.fetchrow(
            "SELECT * FROM vehicle_telemetry WHERE vin = $1 AND ts = $2", sent.vin, sent.vehicle.ts
        )
        assert tuple(v.values())[:5] == sent.vehicle[:5]
        assert v["soc_pct"] == sent.vehicle.soc_pct
        assert v["odometer_km"] == pytest.approx(sent.vehicle.odometer_km)
        assert v["longitude"] == pytest.approx(sent.vehicle.longitude)
        p = await conn.fetchrow(
            "SELECT * FROM battery_pack_telemetry WHERE vin = $1 AND ts = $2",
            sent.vin,
            sent.vehicle.ts,
        )
        pack = sent.packs[0]
        cells = [
            (pack.cell_voltages_raw[i] << 8) | pack.cell_voltages_raw[i + 1]
            for i in range(0, 192, 2)
        ]
        assert p["cell_voltages_mv"] == [None, None, *cells[2:]]
        assert p["probe_temps_c"] == [b - 40 for b in pack.probe_temps_raw]
        assert (p["cell_min_mv"], p["cell_max_mv"]) == (pack.cell_min_mv, pack.cell_max_mv)
        s = await conn.fetchrow("SELECT * FROM vehicle_sessions")
        assert s["pack_codes"] == ["0RJPEA00HAU0AAF131001955"] and s["event"] == "login"
        latest = await conn.fetch("SELECT * FROM latest_state ORDER BY entity_id")
        assert [(r["entity_kind"], r["entity_id"]) for r in latest] == [
            ("vehicle", vin(i)) for i in range(3)
        ]
        assert all(r["ts"] == T0 + timedelta(seconds=30) for r in latest)


async def test_replaying_a_batch_with_the_same_offsets_stores_it_once(
    writer_factory: WriterFactory,
) -> None:
    w = await writer_factory()
    frames = fleet(5, 4)
    first = await w.write_batch(frames, {TP: OffsetRange(None, 20)})
    again = await w.write_batch(frames, {TP: OffsetRange(None, 20)})
    assert first.frames == 20
    assert again.fenced == {TP: 20} and again.frames == 0 and again.rows == {}
    # a restarted consumer finds the offset and does not even read the batch again
    restarted = await writer_factory()
    assert await restarted.load_offsets([TP, ("nev.vehicle.raw", 1)]) == {TP: 20}
    replay = await restarted.write_batch(frames, {TP: OffsetRange(0, 20)})
    assert replay.fenced == {TP: 20}
    assert await counts(w) == dict.fromkeys(
        ("vehicle_telemetry", "drive_motor_telemetry", "battery_pack_telemetry"), 20
    )


async def test_a_connection_killed_mid_batch_is_retried_and_every_row_is_there_once(
    writer_factory: WriterFactory, migrated_database: str
) -> None:
    w = await writer_factory()
    await w.write_batch(fleet(10, 1), {TP: OffsetRange(None, 10)})
    batch = fleet(10, 5, start=T0 + timedelta(minutes=5))
    admin = await asyncpg.connect(migrated_database)
    try:
        # Hold the pack table: the writer COPYs the vehicle and motor rows, then waits on it.
        locker = await asyncpg.connect(migrated_database)
        tx = locker.transaction()
        await tx.start()
        await locker.execute("LOCK TABLE nev.battery_pack_telemetry IN ACCESS EXCLUSIVE MODE")
        task = asyncio.create_task(w.write_batch(batch, {TP: OffsetRange(10, 60)}))
        pid = None
        async with asyncio.timeout(30):
            while pid is None:
                pid = await admin.fetchval(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = 'nev-test-writer' "
                    "AND datname = current_database() AND wait_event_type = 'Lock'"
                )
                await asyncio.sleep(0.01)
        # mid-batch: the vehicle rows are in (uncommitted), the pack rows are waiting
        holds = await admin.fetchval(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE l.pid = $1 AND l.granted AND c.relname LIKE 'vehicle_telemetry%'",
            pid,
        )
        assert holds > 0
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        await tx.rollback()
        await locker.close()
        result = await task
    finally:
        await admin.close()
    assert result.attempts == 2 and result.committed == {TP: 60} and result.frames == 50
    assert await counts(w) == dict.fromkeys(
        ("vehicle_telemetry", "drive_motor_telemetry", "battery_pack_telemetry"), 60
    )
    assert await w.load_offsets([TP]) == {TP: 60}


async def test_a_stale_consumer_is_fenced_and_other_partitions_still_written(
    writer_factory: WriterFactory,
) -> None:
    owner, stale = await writer_factory(), await writer_factory()
    p1 = ("nev.vehicle.raw", 1)
    await owner.write_batch(fleet(4, 5), {TP: OffsetRange(None, 20)})
    # the stale consumer still believes partition 0 starts at 10; partition 1 is its own
    mine = fleet(2, 2, start=T0 + timedelta(hours=2))
    theirs = fleet(4, 2, start=T0 + timedelta(hours=3))
    frames = theirs + mine
    parts = [TP] * len(theirs) + [p1] * len(mine)
    seen: list[BatchOutcome] = []

    async def hook(conn: Any, outcome: BatchOutcome) -> None:
        seen.append(outcome)

    result = await stale.write_batch(
        frames,
        {TP: OffsetRange(10, 28), p1: OffsetRange(None, 4)},
        partitions=parts,
        before_commit=hook,
    )
    assert result.fenced == {TP: 20} and result.committed == {p1: 4}
    assert result.frames == len(mine)
    assert seen[0].stored == list(range(len(theirs), len(frames)))
    assert await owner.load_offsets([TP, p1]) == {TP: 20, p1: 4}
    assert (await counts(owner))["vehicle_telemetry"] == 20 + len(mine)


async def test_frames_the_device_sent_twice_are_stored_once(writer_factory: WriterFactory) -> None:
    w = await writer_factory()
    first = fleet(5, 2)
    await w.write_batch(first, {TP: OffsetRange(None, 10)})
    # a real-time frame repeated by the gateway, and a reissue (0x03) of stored data
    repeat = [first[3], *fleet(5, 1, start=T0 + timedelta(minutes=1))]
    res = await w.write_batch(repeat, {TP: OffsetRange(10, 16)})
    assert res.conflict_fallbacks == 1 and res.duplicates_skipped == 3  # vehicle, motor, pack
    assert res.rows["vehicle_telemetry"] == 5
    reissue = [frame_rows(f.vin, f.vehicle.ts, seq=1, command=3) for f in first if f.vehicle]
    res = await w.write_batch(reissue, {TP: OffsetRange(16, 26)})
    assert res.conflict_fallbacks == 0 and res.duplicates_skipped == 30
    assert (await counts(w))["vehicle_telemetry"] == 15


async def test_the_staging_design_gives_the_same_result(writer_factory: WriterFactory) -> None:
    w = await writer_factory(dedupe=Dedupe.STAGING)
    frames = fleet(4, 3)
    res = await w.write_batch([*frames, frames[0]], {TP: OffsetRange(None, 13)})
    assert res.frames == 13 and res.duplicates_skipped == 3 and res.conflict_fallbacks == 0
    assert (await counts(w))["battery_pack_telemetry"] == 12


async def test_a_bad_frame_is_rejected_and_the_rest_committed(
    writer_factory: WriterFactory,
) -> None:
    w = await writer_factory()
    frames = fleet(6, 2)
    # a pack number no column can hold, and a frame time without a partition (clock years off)
    bad_value = frames[4]
    bad_value.packs[0] = bad_value.packs[0]._replace(pack=70000)
    far = frame_rows(vin(99), datetime(2099, 1, 1, tzinfo=CHINA_TZ))
    frames.insert(9, far)
    seen: list[BatchOutcome] = []

    async def hook(conn: Any, outcome: BatchOutcome) -> None:
        seen.append(outcome)

    result = await w.write_batch(
        frames,
        {TP: OffsetRange(None, 113)},
        kafka_offsets=list(range(100, 113)),
        before_commit=hook,
    )
    assert [(r.index, r.offset) for r in result.rejected] == [(4, 104), (9, 109)]
    assert result.rejected[1].sqlstate == "23514"  # no partition of relation found for row
    assert result.committed == {TP: 113} and result.frames == 11
    assert [r.index for r in seen[-1].rejected] == [4, 9]
    assert 4 not in seen[-1].stored and 5 in seen[-1].stored
    assert (await counts(w))["vehicle_telemetry"] == 11


async def test_a_failing_hook_commits_nothing(writer_factory: WriterFactory) -> None:
    w = await writer_factory()

    async def hook(conn: Any, outcome: BatchOutcome) -> None:
        raise RuntimeError("the dead letters could not be acknowledged")

    # The hook's own error (not the database's) comes back as it is, after the rollback, so
    # that the pipeline can retry a Kafka failure as one and not as a database outage.
    with pytest.raises(RuntimeError, match="could not be acknowledged") as raised:
        await w.write_batch(fleet(2, 2), {TP: OffsetRange(None, 4)}, before_commit=hook)
    assert not isinstance(raised.value, StorageError)
    assert await w.load_offsets([TP]) == {}
    assert (await counts(w))["vehicle_telemetry"] == 0
    # Nothing half-done stays behind: the same batch commits once the hook succeeds.
    await w.write_batch(fleet(2, 2), {TP: OffsetRange(None, 4)})
    assert await w.load_offsets([TP]) == {TP: 4}
    assert (await counts(w))["vehicle_telemetry"] == 4


async def test_latest_state_only_moves_forward(writer_factory: WriterFactory) -> None:
    w = await writer_factory()
    new = frame_rows(vin(1), T0 + timedelta(minutes=10), seq=3)
    await w.write_batch([new], {TP: OffsetRange(None, 1)})
    old = frame_rows(vin(1), T0, seq=9, command=3)  # reissued, older
    nopos = frame_rows(vin(1), T0 + timedelta(minutes=11), seq=4)
    assert nopos.vehicle is not None
    nopos.vehicle = nopos.vehicle._replace(longitude=None, latitude=None, soc_pct=None)
    await w.write_batch([old, nopos], {TP: OffsetRange(1, 3)})
    async with w.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM latest_state WHERE entity_id = $1", vin(1))
    assert new.vehicle is not None
    assert row["ts"] == T0 + timedelta(minutes=11)
    assert row["longitude"] == pytest.approx(new.vehicle.longitude)  # kept: last known
    assert row["soc_pct"] == new.vehicle.soc_pct


async def test_the_raw_archive_traces_rows_to_frames(writer_factory: WriterFactory) -> None:
    w = await writer_factory(raw_frames=True)
    frames = fleet(2, 2)
    raw = [f"frame-{i}".encode() for i in range(4)]
    await w.write_batch(
        frames, {TP: OffsetRange(None, 54)}, raw=raw, kafka_offsets=[50, 51, 52, 53]
    )
    async with w.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT r.kafka_offset, r.frame FROM raw_frames r JOIN vehicle_telemetry v "
            "USING (vin, ts) ORDER BY r.kafka_offset"
        )
    assert [(r["kafka_offset"], r["frame"]) for r in rows] == list(
        zip([50, 51, 52, 53], raw, strict=True)
    )


def signed_and_unsigned_2025(at: datetime) -> list[FrameRows]:
    """Two decoded 2025 real-time frames of one vehicle, the second without its signature,
    and a 2016 frame (which has no signature to miss)."""
    signature = "FF 02 0002 AABB 0000"  # the block Table 7 ends a 2025 data unit with
    engine = "04 0BB8"  # one short block (engine speed) is data enough
    raw = [
        build(2025, 0x02, time_hex(at), engine, signature, vin=vin(7)),
        build(2025, 0x02, time_hex(at + timedelta(seconds=10)), engine, vin=vin(7)),
        build(2016, 0x02, time_hex(at), "05 00 00000000 00000000", vin=vin(8)),
    ]
    return [decode_rows(f, at) for f in raw]


async def test_a_2025_frame_without_its_signature_is_stored_flagged(
    writer_factory: WriterFactory,
) -> None:
    w = await writer_factory()
    frames = signed_and_unsigned_2025(T0)
    assert [f.signature_missing for f in frames] == [False, True, False]
    result = await w.write_batch(frames, {TP: OffsetRange(None, 3)})
    assert result.committed == {TP: 3} and not result.rejected
    async with w.pool.acquire() as conn:
        stored = await conn.fetch(
            "SELECT vin, ts, edition, signature_missing FROM vehicle_telemetry ORDER BY vin, ts"
        )
        # what a regulator asks: the frames nothing vouches for
        flagged = await conn.fetch("SELECT vin, ts FROM vehicle_telemetry WHERE signature_missing")
    assert [(r["vin"], r["ts"], r["edition"], r["signature_missing"]) for r in stored] == [
        (vin(7), T0, 2025, False),
        (vin(7), T0 + timedelta(seconds=10), 2025, True),
        (vin(8), T0, 2016, False),
    ]
    assert [(r["vin"], r["ts"]) for r in flagged] == [(vin(7), T0 + timedelta(seconds=10))]
