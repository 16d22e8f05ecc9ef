"""A database stall longer than aiokafka's default 10 s session/rebalance timeouts while a
rebalance is under way (issue 9, item 4): the worker whose revoke waits for the stalled write
keeps its group membership (the rebalance completes once, nobody is dropped and rejoins), its
in-flight batch commits instead of being abandoned, and every frame is stored exactly once.

The stall is a lock held by the test on the offsets table (reads go on, writes wait), as a long
VACUUM FULL, a migration or a saturated disk would hold the writers."""

from __future__ import annotations

import asyncpg
import pytest

from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.traffic import recent_fleet

pytestmark = pytest.mark.integration

STALL_S = 15  # longer than the 10 s that used to get the revoking worker dropped


async def test_database_stall_during_rebalance_evicts_no_worker(env: PipelineEnv) -> None:
    messages = recent_fleet(100, 5)
    expected = ps.Expected.of(messages)
    third = len(messages) // 3
    # The default group timeouts and revoke timeout (the test environment shortens the latter).
    revoke = "20"

    first = ps.Service(env, "first", NEV_PIPELINE_REVOKE_TIMEOUT_S=revoke)
    second: ps.Service | None = None
    lock = await asyncpg.connect(env.dsn)
    try:
        await ps.until(lambda: ps.ready(first), timeout_s=60, what="the first service to be ready")
        await ps.produce(env.kafka, env.topic, messages[:third])

        async def first_third_stored() -> bool:
            return sum((await ps.stored_offsets(env.dsn, env.group, env.topic)).values()) >= third

        await ps.until(first_third_stored, timeout_s=60, what="the first third stored")

        tx = lock.transaction()
        await tx.start()
        await lock.execute(f"LOCK TABLE {ps.SCHEMA}.consumer_offsets IN EXCLUSIVE MODE")
        await ps.produce(env.kafka, env.topic, messages[third : 2 * third])

        await ps.until_write_waits_on_lock(lock)
        second = ps.Service(env, "second", NEV_PIPELINE_REVOKE_TIMEOUT_S=revoke)

        async def revoking() -> bool:
            return first.metric("nev_ingest_rebalances_total", event="revoked") >= 1

        await ps.until(revoking, timeout_s=60, what="the rebalance to reach the stalled worker")
        await ps.hold_stall(STALL_S)  # the revoke is blocked meanwhile
        await tx.rollback()

        await ps.produce(env.kafka, env.topic, messages[2 * third :])
        await ps.until(lambda: ps.caught_up(env), timeout_s=120, what="every offset stored")
        await ps.until(
            lambda: ps.ready(second), timeout_s=60, what="the second service to be ready"
        )

        assert await ps.stored_rows(env.dsn) == expected.rows  # nothing lost
        for svc in (first, second):
            assert svc.metric("nev_ingest_duplicate_rows_skipped_total") == 0  # nothing twice
            abandoned = [k for k in svc.metrics() if k.startswith("nev_ingest_batches_abandoned")]
            assert not abandoned, abandoned  # no sample: no batch was ever given up
        # One rebalance, completed by both: the first worker was assigned at start and after
        # the second joined; the second once. A dropped worker rejoins: one more each.
        assert first.metric("nev_ingest_rebalances_total", event="assigned") == 2
        assert second.metric("nev_ingest_rebalances_total", event="assigned") == 1
        msgs = [str(r.get("msg", "")) for r in first.logs()]
        assert "partitions revoked after committing everything in flight" in msgs
    finally:
        await lock.close()
        codes = [first.stop()] + ([second.stop()] if second is not None else [])
        log_tail = first.tail()
    assert codes == [0] * len(codes), log_tail


LONG_STALL_S = 30  # the figure: a database stall of 30 s evicts nobody


async def test_thirty_second_database_stall_keeps_the_worker_in_its_group(
    env: PipelineEnv,
) -> None:
    """No rebalance this time: writes wait 30 s on the lock while traffic keeps arriving. The
    worker pauses, keeps polling and heartbeating, and is never dropped from the group: one
    assignment, no revocation, nothing abandoned, every frame stored once."""
    messages = recent_fleet(100, 5)
    half = len(messages) // 2

    async with ps.serving(env, "stalled") as svc:
        lock = await asyncpg.connect(env.dsn)
        try:
            tx = lock.transaction()
            await tx.start()
            await lock.execute(f"LOCK TABLE {ps.SCHEMA}.consumer_offsets IN EXCLUSIVE MODE")
            await ps.produce(env.kafka, env.topic, messages[:half])

            await ps.until_write_waits_on_lock(lock)
            await ps.hold_stall(LONG_STALL_S)  # the writes are blocked meanwhile
            await tx.rollback()
        finally:
            await lock.close()
        await ps.produce_and_store(env, messages[half:], timeout_s=120)

        assert await ps.stored_rows(env.dsn) == ps.Expected.of(messages).rows
        assert svc.metric("nev_ingest_duplicate_rows_skipped_total") == 0
        assert svc.metric("nev_ingest_rebalances_total", event="assigned") == 1
        # Never dropped from the group, so never revoked and rejoined.
        assert svc.metric("nev_ingest_rebalances_total", event="revoked") == 0
        abandoned = [k for k in svc.metrics() if k.startswith("nev_ingest_batches_abandoned")]
        assert not abandoned, abandoned
