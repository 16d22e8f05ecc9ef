"""A write whose COMMIT reached the server but whose answer was lost (storage/unsure.py).

A proxy between the writer and the real PostgreSQL passes one batch's COMMIT on, waits for the
server's answer and drops the connection instead of passing it back. The retry finds the
partition's offset at the batch's end and that transaction committed: the batch is the
writer's own, committed - not another consumer's work (fenced) - and its latest_state tuples
stay pending, merged with the next merge, every frame stored once. Armed to drop the COMMIT
itself (rolled back), the same offsets written by another consumer are that consumer's."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

from contract.clock import CHINA_TZ
from devtools.sim.synthetic import frame_rows, vin
from storage import (
    OffsetRange,
    PoolParams,
    RetryParams,
    StorageUnavailable,
    StorageWriter,
    WriterParams,
)
from storage.batch import WriteResult
from storage.unsure import Sent, did_commit, mark
from tests.integration.commit_cut import CommitCut

pytestmark = pytest.mark.integration

TP = ("nev.vehicle.raw", 0)
T0 = datetime.now(CHINA_TZ).replace(microsecond=0) - timedelta(hours=1)


def _frames(vins: range, minute: int) -> list[Any]:
    return [frame_rows(vin(i), T0 + timedelta(minutes=minute), seq=i) for i in vins]


async def _writer(dsn: str, attempts: int) -> StorageWriter:
    pool = PoolParams(dsn=dsn, application_name="nev-test-commit-unknown")
    params = WriterParams(
        consumer_group="g",
        retry=RetryParams(attempts=attempts, initial=0.01, maximum=0.01),
        # Long: nothing merges but a partition's first batch and flush_latest.
        latest_interval_ms=600_000,
    )
    return await StorageWriter.open(pool, params)


async def _state(dsn: str) -> tuple[dict[str, datetime], int, int]:
    """latest_state's time per VIN, the telemetry rows, and those of a (VIN, time) twice."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT entity_id, ts FROM nev.latest_state")
        total = await conn.fetchval("SELECT count(*) FROM nev.vehicle_telemetry")
        twice = await conn.fetchval(
            "SELECT count(*) FROM (SELECT vin, ts FROM nev.vehicle_telemetry "
            "GROUP BY vin, ts HAVING count(*) > 1) d"
        )
    finally:
        await conn.close()
    return {r["entity_id"]: r["ts"] for r in rows}, int(total), int(twice)


async def test_a_lost_commit_answer_is_the_writers_commit(migrated_database: str) -> None:
    with CommitCut(migrated_database) as cut:
        writer = await _writer(cut.dsn, attempts=3)
        try:
            first = await writer.write_batch(_frames(range(5), 0), {TP: OffsetRange(None, 5)})
            assert first.latest_merged == {TP}  # its first batch: merged at once

            cut.arm()
            lost = await writer.write_batch(_frames(range(10), 1), {TP: OffsetRange(5, 15)})
            assert cut.cut == 1, "the proxy never cut a COMMIT's answer"
            # Retried once, and recognised as its own commit (before the fix: fenced at 15).
            assert (lost.committed, lost.fenced, lost.attempts) == ({TP: 15}, {}, 2)
            assert lost.frames == 10 and not lost.latest_merged
            # Its tuples wait for the merge, as any batch's in the interval.
            assert len(writer.latest.parts[TP].pending) == 10

            later = await writer.write_batch(_frames(range(20, 25), 2), {TP: OffsetRange(15, 20)})
            assert later.committed == {TP: 20} and not later.fenced
            await writer.flush_latest([TP])
        finally:
            await writer.close()
    latest, total, twice = await _state(migrated_database)
    want = {vin(i): T0 + timedelta(minutes=1) for i in range(10)}
    want |= {vin(i): T0 + timedelta(minutes=2) for i in range(20, 25)}
    assert latest == want  # vehicles 5-9 were only in the batch whose answer was lost
    assert (total, twice) == (20, 0)


async def test_the_callers_retry_finds_the_commit_too(migrated_database: str) -> None:
    """``write_batch`` gave up (one attempt, its COMMIT's answer lost): calling it again with
    the batch, as the pipeline does after ``StorageUnavailable``, finds the batch committed."""
    with CommitCut(migrated_database) as cut:
        writer = await _writer(cut.dsn, attempts=1)
        try:
            await writer.write_batch(_frames(range(5), 0), {TP: OffsetRange(None, 5)})
            cut.arm()
            frames = _frames(range(10), 1)
            with pytest.raises(StorageUnavailable, match="COMMIT got no answer"):
                await writer.write_batch(frames, {TP: OffsetRange(5, 15)})
            assert cut.cut == 1
            again = await writer.write_batch(frames, {TP: OffsetRange(5, 15)})
            assert (again.committed, again.fenced) == ({TP: 15}, {})
            assert len(writer.latest.parts[TP].pending) == 10
            await writer.flush_latest([TP])
        finally:
            await writer.close()
    latest, total, twice = await _state(migrated_database)
    assert latest == {vin(i): T0 + timedelta(minutes=1) for i in range(10)}
    assert (total, twice) == (15, 0)


async def test_a_lost_commit_another_consumer_repeated_is_not_the_writers(
    migrated_database: str,
) -> None:
    """A zombie after a network split: its COMMIT never reached the server (rolled back), and
    the partition's new owner then wrote a batch ending at the same offset (usual at a
    caught-up partition). The zombie's retry finds the offsets where its own commit would have
    put them, but its transaction aborted: fenced, no latest_state tuples of a partition it
    does not own (before: taken for its own commit, 10 tuples pending)."""
    with CommitCut(migrated_database) as cut:
        zombie = await _writer(cut.dsn, attempts=1)
        owner = await _writer(migrated_database, attempts=1)
        try:
            await zombie.write_batch(_frames(range(5), 0), {TP: OffsetRange(None, 5)})
            cut.arm(drop=True)
            frames = _frames(range(10), 1)
            with pytest.raises(StorageUnavailable, match="COMMIT got no answer"):
                await zombie.write_batch(frames, {TP: OffsetRange(5, 15)})
            assert cut.cut == 1, "the proxy never dropped a COMMIT"
            assert (await _state(migrated_database))[1] == 5, "the zombie's attempt committed"
            # The new owner (a rebalance) reads the same records: the same range.
            mine = await owner.write_batch(frames, {TP: OffsetRange(5, 15)})
            assert (mine.committed, mine.fenced) == ({TP: 15}, {})
            again = await zombie.write_batch(frames, {TP: OffsetRange(5, 15)})
            assert (again.committed, again.fenced) == ({}, {TP: 15})
            assert TP not in zombie.latest.parts  # forgotten: the owner's now
        finally:
            await zombie.close()
            await owner.close()
    latest, total, twice = await _state(migrated_database)
    assert latest == {vin(i): T0 + timedelta(minutes=1) for i in range(10)}
    assert (total, twice) == (15, 0)


async def test_the_servers_word_on_an_attempts_transaction(migrated_database: str) -> None:
    """did_commit: committed, rolled back, and an id the server has not reached (a failover
    to a replica behind the attempt: asked plainly, txid_status raises)."""
    conn = await asyncpg.connect(migrated_database)
    try:
        ids = []
        for end in ("COMMIT", "ROLLBACK"):
            await conn.execute("BEGIN")
            ids.append(await conn.fetchval("SELECT txid_current()"))
            await conn.execute(end)
        done, undone = ids
        async with conn.transaction():
            future = await conn.fetchval("SELECT txid_current()") + 1_000_000
            assert await did_commit(conn, _sent(done))
            assert not await did_commit(conn, _sent(undone))
            assert not await did_commit(conn, _sent(future))
            assert await did_commit(conn, _sent(None))  # no id: the offsets decide
    finally:
        await conn.close()


async def test_a_changes_only_attempt_is_asked_of_the_server_life_that_gave_its_id(
    migrated_database: str,
) -> None:
    """A changes-only attempt (``mark``) that committed is committed in the server life that
    gave its id; after another start (a failover to a replica that never got the attempt) or
    a crash recovery (a checkpoint since), ids handed out again may name other transactions:
    written again, never taken for committed."""
    conn = await asyncpg.connect(migrated_database)
    try:
        async with conn.transaction():
            xact, life = await mark(conn)
        started, redo = life.rsplit(" ", 1)
        assert await _asks(conn, _sent(xact, life))
        assert not await _asks(conn, _sent(xact, f"{started}1 {redo}"))  # another start
        await conn.execute("CHECKPOINT")  # as a crash recovery ends: the redo point moves
        assert not await _asks(conn, _sent(xact, life))
    finally:
        await conn.close()


async def test_a_changes_only_retry_waits_for_its_attempt_to_end(migrated_database: str) -> None:
    """The retry asks behind the attempt's advisory lock: an attempt still open (its COMMIT
    not yet done) is waited for, not taken as 'in progress' and written a second time."""
    attempt = await asyncpg.connect(migrated_database)
    retry = await asyncpg.connect(migrated_database)
    try:
        tx = attempt.transaction()
        await tx.start()
        xact, life = await mark(attempt)
        asking = asyncio.ensure_future(_asks(retry, _sent(xact, life)))
        retry_pid = retry.get_server_pid()
        for _ in range(1000):  # until the retry's backend waits on a lock (a look per turn)
            waiting = await attempt.fetchval(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1",
                retry_pid,
            )
            if waiting or asking.done():
                break
        assert not asking.done(), "the retry answered while its attempt was still open"
        assert waiting
        await tx.commit()
        assert await asking
    finally:
        await attempt.close()
        await retry.close()


async def _asks(conn: Any, sent: Sent) -> bool:
    async with conn.transaction():
        return await did_commit(conn, sent, offsets=False)


def _sent(xact: int | None, server_life: str | None = None) -> Sent:
    result = WriteResult({}, {}, [], 0, {}, 0, 0, 0, 0, 0.0)
    return Sent(result, {}, [], {}, {}, {TP: 1}, xact, server_life)
