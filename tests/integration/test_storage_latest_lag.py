"""Bounded-lag latest_state in the writer (storage/latest_pending.py, storage/latest_tx.py) on
the real PostgreSQL, with both loaders: a partition's set waits for its interval (its
``latest_from`` stored with the offset), ``flush_latest`` merges it, the cap merges early, and
a writer that finds ``latest_from`` stored (a crash) knows the range to read again."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import pytest

from contract.charger import ChargerRows, ChargerTelemetryRow
from contract.rows import FrameRows
from devtools.sim.bench_frames import realtime_frames
from devtools.sim.synthetic import frame_rows, vin
from ingest.decoders.fast import decode_rows
from ingest.pipeline.latest_keeper import LatestKeeper
from storage.offsets import TopicPartition
from storage.writer import StorageWriter
from tests.integration.pipeline_support import until_write_waits_on_lock
from tests.integration.test_storage_kinds import (
    T0,
    TCEC,
    VEH,
    Batch,
    WriterFactory,
    mixed,
    writer_factory,
)

pytestmark = pytest.mark.integration

__all__ = ["writer_factory"]  # the fixture, parametrized over the COPY and unnest loaders

HOUR = timedelta(hours=1)


async def second_pending(writer_factory: WriterFactory) -> tuple[StorageWriter, Batch]:
    """A writer merging every 600 s: a first batch written (merged at once, its partitions'
    first) and a second one an hour of frame time later whose tuples are pending."""
    w = await writer_factory(latest_interval_ms=600_000)
    first = mixed(T0)
    await first.write(w)
    second = mixed(T0 + HOUR)
    await second.write(w, start=first.next)
    return w, second


async def latest(conn: Any) -> dict[tuple[str, str], Any]:
    rows = await conn.fetch("SELECT entity_kind, entity_id, ts FROM nev.latest_state")
    return {(r["entity_kind"], r["entity_id"]): r["ts"] for r in rows}


async def latest_from(conn: Any) -> dict[tuple[str, int], int | None]:
    rows = await conn.fetch("SELECT topic, partition, latest_from FROM nev.consumer_offsets")
    return {(r["topic"], r["partition"]): r["latest_from"] for r in rows}


async def test_pending_until_the_interval_then_merged_by_flush(
    writer_factory: WriterFactory,
) -> None:
    w = await writer_factory(latest_interval_ms=600_000)
    first = mixed(T0)
    r1 = await first.write(w)
    # nothing known of these partitions yet: their first batch merges
    assert r1.latest == 6 and r1.latest_merged == set(first.next)
    async with w.pool.acquire() as conn:
        before = await latest(conn)
        assert len(before) == 6 and set((await latest_from(conn)).values()) == {None}

    second = mixed(T0 + HOUR)  # the same entities, an hour later
    r2 = await second.write(w, start=first.next)
    assert r2.frames == len(second.frames) and r2.latest == 0 and not r2.latest_merged
    async with w.pool.acquire() as conn:
        assert await latest(conn) == before  # behind: the interval has not passed
        assert await latest_from(conn) == first.next  # where the second batch began

    assert await w.flush_latest(list(second.next)) == 6
    async with w.pool.acquire() as conn:
        assert await latest(conn) == {k: ts + HOUR for k, ts in before.items()}
        assert set((await latest_from(conn)).values()) == {None}

    # A writer starting on these partitions after a crash would find nothing to refill.
    again = await writer_factory(latest_interval_ms=600_000)
    await again.load_offsets(list(second.next))
    assert all(p.seek_from is None for p in again.latest.parts.values())


async def test_a_crash_leaves_the_range_to_read_again(writer_factory: WriterFactory) -> None:
    w = await writer_factory(latest_interval_ms=600_000)
    first = mixed(T0)
    await first.write(w)
    second = mixed(T0 + HOUR)
    await second.write(w, start=first.next)
    # "crash": this writer's memory is gone; the next one reads latest_from with the offsets
    after = await writer_factory(latest_interval_ms=600_000)
    stored = await after.load_offsets(list(second.next))
    ends = {tp: first.next[tp] + n for tp, n in second.next.items()}
    assert stored == ends
    for tp, p in after.latest.parts.items():
        assert (p.seek_from, p.refill_until) == (first.next[tp], ends[tp])


async def test_the_cap_merges_early(writer_factory: WriterFactory) -> None:
    w = await writer_factory(latest_interval_ms=600_000, latest_cap=1)
    first = mixed(T0)
    await first.write(w)
    second = mixed(T0 + HOUR)
    r2 = await second.write(w, start=first.next)
    assert r2.latest == 6 and r2.latest_merged == set(second.next)
    async with w.pool.acquire() as conn:
        assert max((await latest(conn)).values()) > T0 + HOUR


def _native(vehicles: int, per_vehicle: int, start: datetime) -> list[FrameRows]:
    """Natively decoded frames (their COPY tuples go to the merge's stage), 10 s apart."""
    start_ms = int(start.timestamp() * 1000)
    out = []
    for _, value in realtime_frames(vehicles, per_vehicle, start_ms=start_ms):
        rows = decode_rows(value)
        assert isinstance(rows, FrameRows) and rows.copy is not None
        out.append(rows)
    return out


async def test_a_pending_set_merges_new_and_known_vehicles_in_any_order(
    writer_factory: WriterFactory,
) -> None:
    # The merge stages one tuple per VIN without the DISTINCT ON sort: the set's own order
    # (here reversed, known and new vehicles mixed) and an older reissue must not matter.
    w = await writer_factory(latest_interval_ms=600_000)
    frames = _native(20, 2, T0)  # vehicle k at T0 + 10 s * k ... then each again later
    first = Batch()
    for f in frames[:10]:  # vehicles 0-9: the partition's first batch, merged at once
        first.add(VEH, f)
    assert (await first.write(w)).latest == 10
    second = Batch()
    for f in reversed(frames[15:]):  # vehicles 15-19, then 0-19 again (newer): VINs unsorted
        second.add(VEH, f)
    second.add(VEH, frames[3])  # an older reissue of vehicle 3, after its newer frame
    r2 = await second.write(w, start=first.next)
    assert not r2.latest_merged  # pending: within the interval
    assert await w.flush_latest([VEH]) == 20
    newest: dict[str, int] = {}
    for f in frames:
        assert f.ts_ms is not None
        newest[f.vin] = max(newest.get(f.vin, 0), f.ts_ms)
    async with w.pool.acquire() as conn:
        got = {
            r["entity_id"]: (int(r["ts"].timestamp() * 1000), r["soc_pct"])
            for r in await conn.fetch(
                "SELECT entity_id, ts, soc_pct FROM nev.latest_state WHERE entity_kind = 'vehicle'"
            )
        }
    assert {vin: ts for vin, (ts, _) in got.items()} == newest
    assert all(soc is not None for _, soc in got.values())  # the staged tuples' values


async def test_a_frame_the_database_rejects_leaves_no_tuple_pending(
    writer_factory: WriterFactory,
) -> None:
    # The batch's tuples are taken while its rows load, before the load of the pack rows
    # fails and is bisected: the rejected frame's vehicle must not stay among them.
    w = await writer_factory(latest_interval_ms=600_000)
    first = Batch()
    first.add(VEH, frame_rows(vin(0), T0))
    await first.write(w)  # the partition's first batch: merged at once
    second = Batch()
    for k in range(3):
        second.add(VEH, frame_rows(vin(k), T0 + HOUR, seq=k))
    bad = second.frames[1]
    assert isinstance(bad, FrameRows)
    bad.packs[0] = bad.packs[0]._replace(pack=70000)  # no column holds it
    r2 = await second.write(w, start=first.next)
    assert [r.index for r in r2.rejected] == [1] and r2.frames == 2
    assert set(w.latest.parts[VEH].pending.vehicles) == {vin(0), vin(2)}
    assert await w.flush_latest([VEH]) == 2
    async with w.pool.acquire() as conn:
        assert set(await latest(conn)) == {("vehicle", vin(0)), ("vehicle", vin(2))}


async def test_the_keeper_merges_an_idle_partition_after_the_interval(
    writer_factory: WriterFactory,
) -> None:
    # ingest/pipeline/latest_keeper.py LatestKeeper.run with a stepped clock: the partition gets
    # no more batches, so only the keeper can merge its set - not before the interval, and
    # by the tick after 1.25 intervals (less than 1.5).
    w = await writer_factory(latest_interval_ms=600_000)
    first = mixed(T0)
    await first.write(w)
    second = mixed(T0 + HOUR)
    assert not (await second.write(w, start=first.next)).latest_merged
    interval = 600.0
    clock = [time.monotonic()]
    merged_at = {tp: p.merged_at for tp, p in w.latest.parts.items()}
    flushed: list[tuple[float, int]] = []
    done = asyncio.Event()

    class Watched:
        latest = w.latest

        async def flush_latest(
            self, partitions: Iterable[TopicPartition], *, skip_locked: bool = False
        ) -> int:
            assert skip_locked  # the idle merge never waits for a lane's write
            n = await w.flush_latest(partitions, skip_locked=skip_locked)
            flushed.append((clock[0], n))
            done.set()
            return n

    async def step(dt: float) -> None:  # a tick passes at once
        clock[0] += dt
        await asyncio.sleep(0)

    keeper = LatestKeeper(lambda: [Watched()], lambda partition: 0)
    task = asyncio.create_task(keeper.run(interval, clock=lambda: clock[0], sleep=step))
    try:
        await asyncio.wait_for(done.wait(), 60)  # bounds a hang; the clock is the stepped one
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    (at, n), *more = flushed
    assert n == 6 and not more
    for tp, before in merged_at.items():
        assert interval <= at - before < 1.5 * interval
        assert len(w.latest.parts[tp].pending) == 0
    async with w.pool.acquire() as conn:
        assert min((await latest(conn)).values()) >= T0 + HOUR
        assert set((await latest_from(conn)).values()) == {None}


async def placements(conn: Any) -> dict[tuple[str, str], tuple[str | None, int | None]]:
    rows = await conn.fetch(
        "SELECT entity_kind, entity_id, kafka_topic, kafka_partition FROM nev.latest_state"
    )
    return {(r[0], r[1]): (r[2], r[3]) for r in rows}


async def test_the_merge_records_where_each_entity_is_read_from(
    writer_factory: WriterFactory,
) -> None:
    # With an interval the writer's merge records latest_state.kafka_topic/_partition (what
    # the alert replay finds an entity by): also for entities that came in a batch without a
    # merge (no row yet, so no stamp could reach them then), and once per assignment only.
    w = await writer_factory(latest_interval_ms=600_000)
    first = mixed(T0)
    await first.write(w)  # the partitions' first batch merges
    async with w.pool.acquire() as conn:
        got = await placements(conn)
    assert len(got) == 6 and all(tp in first.next for tp in got.values()), got
    assert {got[("vehicle", vin(k))] for k in (0, 1)} == {VEH}

    later = Batch()  # new vehicles on VEH, pending (the interval has not passed)
    for k in (5, 6):
        later.add(VEH, frame_rows(vin(k), T0 + HOUR, seq=k))
    r2 = await later.write(w, start=first.next)
    assert not r2.latest_merged
    assert await w.flush_latest([VEH]) == 2  # the idle/revoke merge
    async with w.pool.acquire() as conn:
        got = await placements(conn)
        assert {got[("vehicle", vin(k))] for k in (5, 6)} == {VEH}
        # Placed once per assignment: a later merge of these entities writes no placement.
        await conn.execute("UPDATE nev.latest_state SET kafka_partition = 9")
    again = Batch()
    for k in (5, 6):
        again.add(VEH, frame_rows(vin(k), T0 + 2 * HOUR, seq=k))
    await again.write(w, start={VEH: first.next[VEH] + later.next[VEH]})
    assert await w.flush_latest([VEH]) == 2
    async with w.pool.acquire() as conn:
        assert {p for _, p in (await placements(conn)).values()} == {9}
    # A revoked partition's placements go: placed again by the next owner's (or this
    # writer's, when the partition comes back) first merge.
    w.latest.forget([VEH])
    assert not w.latest.placed_on(VEH)


async def test_an_older_merge_does_not_place_a_moved_entity_back(
    writer_factory: WriterFactory,
) -> None:
    # A device first seen on VEH since this writer's last merge moved to another partition
    # (partitions added): the new owner's merge stored a newer frame and placed it there.
    # This writer's merge of the device's older tuple, later, leaves that placement: stamped
    # back, the old owner kept the device as its own and the new one never dropped it either.
    w = await writer_factory(latest_interval_ms=600_000)
    first = mixed(T0)
    await first.write(w)  # the partitions' first batch merges
    later = Batch()
    later.add(VEH, frame_rows(vin(7), T0 + HOUR, seq=7))  # pending: first seen since
    await later.write(w, start=first.next)
    moved_to = (VEH[0], VEH[1] + 1)
    async with w.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO nev.latest_state (entity_kind, entity_id, ts, updated_at, kafka_topic, "
            "kafka_partition) VALUES ('vehicle', $1, $2, now(), $3, $4)",
            vin(7),
            T0 + 2 * HOUR,
            *moved_to,
        )
    assert await w.flush_latest([VEH]) == 1
    async with w.pool.acquire() as conn:
        assert (await placements(conn))[("vehicle", vin(7))] == moved_to


async def test_the_idle_merge_skips_a_partition_a_write_holds(
    writer_factory: WriterFactory,
) -> None:
    # The keeper's merge must not wait for a lane's transaction on the partition: meanwhile it
    # held the offset rows it had locked, and their lanes' batches waited behind it.
    w, second = await second_pending(writer_factory)
    async with w.pool.acquire() as conn, conn.transaction():
        await conn.execute(  # a write of the vehicle partition in flight
            "SELECT 1 FROM nev.consumer_offsets WHERE topic = $1 AND partition = $2 FOR UPDATE",
            *VEH,
        )
        # bounds a hang (the merge waiting for the lock), not a speed
        n = await asyncio.wait_for(w.flush_latest(list(second.next), skip_locked=True), 30)
        assert n == 4  # the other partitions' entities
        assert len(w.latest.parts[VEH].pending) == 2  # the vehicles wait for their batch
    assert await w.flush_latest([VEH]) == 2


async def test_a_revoke_flush_waits_for_a_write_holding_the_partition(
    writer_factory: WriterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # On revocation and a graceful stop latest_state is to be complete when the partitions
    # go: the merge waits for the lane's transaction instead of skipping its partition.
    w, second = await second_pending(writer_factory)
    async with w.pool.acquire() as conn:
        before = await latest(conn)
    holder = await w.pool.acquire()
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute(  # a write of the vehicle partition in flight
            "SELECT 1 FROM nev.consumer_offsets WHERE topic = $1 AND partition = $2 FOR UPDATE",
            *VEH,
        )
        flushing = asyncio.create_task(w.flush_latest(list(second.next)))
        async with w.pool.acquire() as conn:
            # the flush is blocked on the held row (seen by the server, not by a sleep)
            await until_write_waits_on_lock(conn)
        assert not flushing.done()
        await tx.commit()
    finally:
        await w.pool.release(holder)
    assert await asyncio.wait_for(flushing, 30) == 6  # every partition, the held one too
    assert all(len(p.pending) == 0 for p in w.latest.parts.values())
    async with w.pool.acquire() as conn:
        assert await latest(conn) == {k: ts + HOUR for k, ts in before.items()}
        assert set((await latest_from(conn)).values()) == {None}
    assert "not merged before they go" not in caplog.text


async def test_a_revoke_flush_warns_of_a_partition_it_could_not_merge(
    writer_factory: WriterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    w, second = await second_pending(writer_factory)
    async with w.pool.acquire() as conn:  # another commit came between (an abandoned lane)
        await conn.execute(
            "UPDATE nev.consumer_offsets SET next_offset = next_offset + 1 "
            "WHERE topic = $1 AND partition = $2",
            *VEH,
        )
    with caplog.at_level("WARNING", logger="storage.latest_tx"):
        assert await w.flush_latest(list(second.next)) == 4
    (record,) = [r for r in caplog.records if "not merged before they go" in r.getMessage()]
    assert record.partitions == [f"{VEH[0]}:{VEH[1]}"]  # type: ignore[attr-defined]


def _telemetry(at: datetime, vin: str | None) -> ChargerRows:
    """A T/CEC charge push of connector MA01H3BQ2:C9 at ``at``, with the vehicle ``vin``."""
    rows = ChargerRows(operator_id="MA01H3BQ2")
    output = (400.0, 50.0, None, 1.0, None)  # voltage, current, power, energy, temperature
    row = ChargerTelemetryRow(
        "MA01H3BQ2", "C9", at, None, None, *output, vin, 50.0, None, None, "tcec"
    )
    rows.telemetry.append(row)
    return rows


async def test_a_late_frame_pending_beside_a_newer_one_does_not_overwrite_a_newer_state(
    writer_factory: WriterFactory,
) -> None:
    # Stored: the connector at t2 with vehicle NEWVIN. Pending: a late push of t1 (OLDVIN)
    # and one of t3 that names no vehicle. Merged into one tuple in memory, t3 carried t1's
    # OLDVIN into latest_state over NEWVIN; merged as one batch's rows are, t1 (older than
    # the stored t2) takes no part and the vehicle stays NEWVIN.
    t1, t2, t3 = T0, T0 + timedelta(seconds=10), T0 + timedelta(seconds=20)
    w = await writer_factory(latest_interval_ms=600_000)
    first = Batch()
    first.add(TCEC, _telemetry(t2, "NEWVIN0000000000A"))
    await first.write(w)  # a partition's first batch merges at once
    second = Batch()
    second.add(TCEC, _telemetry(t1, "OLDVIN0000000000B"))
    second.add(TCEC, _telemetry(t3, None))
    second.next = {TCEC: 3}
    second.offsets = [1, 2]
    result = await second.write(w, start=first.next)
    assert result.latest == 0  # pending: the interval has not passed
    assert await w.flush_latest([TCEC]) == 1
    async with w.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT ts, connected_vin FROM nev.latest_state WHERE entity_id = 'MA01H3BQ2:C9'"
        )
    assert (row["ts"], row["connected_vin"]) == (t3, "NEWVIN0000000000A")
