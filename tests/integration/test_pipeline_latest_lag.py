"""Bounded-lag latest_state (storage/latest_pending.py, ingest/pipeline/latest_keeper.py) in the
real service: with a long interval latest_state lags the stored rows, and yet a graceful stop,
a rebalance and a kill -9 each leave it complete - every vehicle's latest_state.ts is the
newest frame time of its rows - with every frame stored once."""

from __future__ import annotations

import os
import signal
from contextlib import AbstractAsyncContextManager

import asyncpg
import pytest

from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.traffic import recent_fleet

pytestmark = pytest.mark.integration


def serving(env: PipelineEnv, name: str) -> AbstractAsyncContextManager[ps.Service]:
    # An interval longer than any of these tests: only the first batch of a partition, a write
    # after a refill, a revocation or a stop merges.
    return ps.serving(
        env, name, NEV_STORAGE_LATEST_INTERVAL_MS="600000", NEV_PIPELINE_BATCH_MAX_FRAMES="300"
    )


async def behind(dsn: str) -> int:
    """Vehicles whose latest_state.ts is not the newest frame time of their rows (or missing)."""
    conn = await asyncpg.connect(dsn)
    try:
        n: int = await conn.fetchval(
            f"""
            SELECT count(*) FROM (
                SELECT vin, max(ts) AS ts FROM {ps.SCHEMA}.vehicle_telemetry GROUP BY vin
            ) t
            LEFT JOIN {ps.SCHEMA}.latest_state s
                   ON s.entity_kind = 'vehicle' AND s.entity_id = t.vin
            WHERE s.ts IS DISTINCT FROM t.ts
            """
        )
    finally:
        await conn.close()
    return n


async def pending_from(env: PipelineEnv) -> int:
    """Partitions whose consumer_offsets.latest_from says tuples are pending."""
    conn = await asyncpg.connect(env.dsn)
    try:
        n: int = await conn.fetchval(
            f"SELECT count(*) FROM {ps.SCHEMA}.consumer_offsets "
            "WHERE consumer_group = $1 AND latest_from IS NOT NULL",
            env.group,
        )
    finally:
        await conn.close()
    return n


async def test_graceful_stop_merges_what_is_pending(env: PipelineEnv) -> None:
    messages = recent_fleet(200, 5)
    expected = ps.Expected.of(messages)
    async with serving(env, "stop") as svc:
        await ps.produce_and_store(env, messages)
        assert await behind(env.dsn) > 0, "latest_state must lag while the interval runs"
        assert await pending_from(env) > 0
        assert svc.metric("nev_ingest_duplicate_rows_skipped_total") == 0
    # the block left after SIGTERM and exit code 0
    assert await behind(env.dsn) == 0
    assert await pending_from(env) == 0
    assert await ps.stored_rows(env.dsn) == expected.rows


async def test_rebalance_merges_the_revoked_partitions(env: PipelineEnv) -> None:
    messages = recent_fleet(200, 5)
    async with serving(env, "first") as first:
        await ps.produce_and_store(env, messages)
        assert await behind(env.dsn) > 0
        async with serving(env, "second") as second:

            async def moved() -> bool:
                try:
                    return second.metric("nev_ingest_assigned_partitions") > 0
                except AssertionError:
                    return False

            await ps.until(moved, timeout_s=90, what="the second worker to take partitions")
            # The first revoked every partition (eager rebalance) and merged them first; the
            # interval (10 min) has not passed, the two keep running.
            assert await behind(env.dsn) == 0
            assert first.metric("nev_ingest_rebalances_total", event="revoked") >= 1
    assert await ps.stored_rows(env.dsn) == ps.Expected.of(messages).rows


async def test_kill_9_between_merges_refills_and_stores_every_frame_once(
    env: PipelineEnv,
) -> None:
    before = recent_fleet(200, 5, bad_ratio=0.02)
    bad = sum(ps.Expected.of(before).bad.values())
    async with serving(env, "crash") as svc:
        (victim,) = svc.worker_pids()
        await ps.produce_and_store(env, before)
        lagging = await behind(env.dsn)
        assert lagging > 0 and await pending_from(env) > 0
        os.kill(victim, signal.SIGKILL)

        async def restarted() -> bool:
            pids = svc.worker_pids()
            return len(pids) == 1 and pids[0] != victim

        await ps.until(restarted, timeout_s=30, what="the supervisor to restart the worker")

        def seeks() -> list[dict[str, object]]:
            logs = svc.logs()
            return [r for r in logs if r.get("msg", "").startswith("latest_state tuples were")]

        async def refilled() -> bool:
            done = [r for r in svc.logs() if r.get("msg") == "latest_state tuples refilled"]
            return bool(done) and len(done) == len(seeks())

        await ps.until(refilled, timeout_s=60, what="the pending range to be read again")
        assert all(int(str(r["from"])) < int(str(r["to"])) for r in seeks())
        assert await behind(env.dsn) == lagging  # refilled in memory, not merged yet
        assert svc.metric("nev_ingest_duplicate_rows_skipped_total") == 0  # nothing twice
        # the bad frames of the range read again got no second dead letter
        assert bad > 0 and sum((await ps.end_offsets(env.kafka, env.dlq)).values()) == bad
    # the graceful stop merged the refilled tuples: they were not lost with the killed worker
    assert await behind(env.dsn) == 0
    assert await pending_from(env) == 0
    assert await ps.stored_rows(env.dsn) == ps.Expected.of(before).rows  # nothing lost
