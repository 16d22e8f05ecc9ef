"""A batch in flight when its worker lost the partitions to a newer owner (``Writer._fenced``,
which drops the partitions and ``forget``s this worker's commits of them): the zombie's retry
finds the newer owner's offsets in the database, writes none of its rows, and seeks on; no row
is lost or stored twice and no stored offset ever goes backwards.

The zombie is made the way a long GC pause or a frozen VM makes one: its write waits on a lock
the test holds, the worker is stopped (SIGSTOP) and its server session ended, a second service
takes the partitions (the frozen worker's session times out) and writes them; then the first
worker is let go on (SIGCONT) and its write is retried."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.traffic import recent_fleet

pytestmark = pytest.mark.integration


def service(env: PipelineEnv, name: str) -> ps.Service:
    """A frozen worker leaves the group after 6 s (the least allowed); the revoke gives the
    zombie's retry the time to be fenced rather than abandoned."""
    return ps.Service(
        env,
        name,
        NEV_KAFKA_SESSION_TIMEOUT_MS="6000",
        NEV_KAFKA_HEARTBEAT_INTERVAL_MS="2000",
        NEV_PIPELINE_REVOKE_TIMEOUT_S="20",
    )


@contextlib.asynccontextmanager
async def watching_offsets(env: PipelineEnv) -> AsyncIterator[list[str]]:
    """Reads the stored offsets every 0.1 s meanwhile; yields the moves backwards it saw."""
    backwards: list[str] = []
    highest: dict[int, int] = {}

    async def watch() -> None:
        while True:
            for p, off in (await ps.stored_offsets(env.dsn, env.group, env.topic)).items():
                if off < highest.get(p, 0):
                    backwards.append(f"partition {p}: {highest[p]} -> {off}")
                highest[p] = max(off, highest.get(p, 0))
            await asyncio.sleep(0.1)

    task = asyncio.create_task(watch())
    try:
        yield backwards
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_zombie_batch_is_fenced_by_the_newer_owner(env: PipelineEnv) -> None:
    messages = recent_fleet(60, 3)
    expected = ps.Expected.of(messages)
    third = len(messages) // 3
    first = service(env, "zombie")
    second: ps.Service | None = None
    lock = await asyncpg.connect(env.dsn)
    frozen: int | None = None
    try:
        async with watching_offsets(env) as backwards:
            await ps.until(lambda: ps.ready(first), timeout_s=60, what="the first service ready")
            await ps.produce_and_store(env, messages[:third], what="the first third stored")

            tx = lock.transaction()
            await tx.start()
            await lock.execute(f"LOCK TABLE {ps.SCHEMA}.consumer_offsets IN EXCLUSIVE MODE")
            await ps.produce(env.kafka, env.topic, messages[third : 2 * third])
            await ps.until_write_waits_on_lock(lock)
            (frozen,) = first.worker_pids()
            os.kill(frozen, signal.SIGSTOP)  # its batch is in flight, its fence not yet run
            ended = await lock.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            assert ended >= 1
            await tx.rollback()

            # The newer owner: takes every partition once the frozen worker's session is over,
            # and writes the second third past the zombie's batch.
            second = owner = service(env, "owner")
            await ps.until(lambda: ps.caught_up(env), timeout_s=90, what="the owner's writes")
            os.kill(frozen, signal.SIGCONT)
            frozen = None

            async def rejoined() -> bool:
                # Assigned again: its revoke waited for the in-flight batch (retried, then
                # fenced or written) before it rejoined the group.
                return first.metric("nev_ingest_rebalances_total", event="assigned") >= 2

            await ps.until(rejoined, timeout_s=90, what="the zombie to rejoin the group")
            await ps.until(lambda: ps.ready(first), timeout_s=90, what="the zombie ready again")
            await ps.until(lambda: ps.ready(owner), timeout_s=90, what="the owner ready")
            await ps.produce(env.kafka, env.topic, messages[2 * third :])
            await ps.until(lambda: ps.caught_up(env), timeout_s=90, what="every offset stored")

        assert not backwards, backwards
        assert await ps.stored_rows(env.dsn) == expected.rows  # nothing lost, nothing twice
        for svc in (first, second):
            assert svc.metric("nev_ingest_duplicate_rows_skipped_total") == 0
        assert first.metric("nev_ingest_worker_restarts_total") == 0, first.tail(120)
        # The path under test was taken: the zombie's retry was fenced, not abandoned.
        assert first.metric("nev_ingest_batches_abandoned_total", reason="fenced") >= 1
    finally:
        if frozen is not None:
            os.kill(frozen, signal.SIGCONT)
        await lock.close()
        codes = [first.stop()] + ([second.stop()] if second is not None else [])
        log_tail = first.tail(120)
    assert codes == [0] * len(codes), log_tail
