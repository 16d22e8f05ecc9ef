"""A shard whose server refuses connections is a shard down, not a worker failure.

Two shards on the dev cluster: ``env.dsn`` (shard 0) and a database of this test's own
(shard 1), which refuses new connections (``ALTER DATABASE ... ALLOW_CONNECTIONS false``:
SQLSTATE 55000 at connect, which ``classify`` used to call fatal):

- a worker started while shard 1 refuses starts with shard 0 (no crash loop): shard 0 stores
  its partitions' frames, shard 1's partitions stay paused (its gauge), /readyz says 503, and
  once shard 1 lets connections in it catches up, every frame stored once in its shard;
- a running worker whose shard 1 starts refusing (its connections ended, new ones refused)
  keeps running: shard 0 writes on, shard 1 catches up when it answers again."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.test_pipeline_shards import PARTITIONS, caught_up, expected_by_shard
from tests.integration.traffic import recent_fleet

pytestmark = pytest.mark.integration


def _allow(postgres_dsn: str, name: str, allow: bool, *, end_sessions: bool = False) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allow).lower()}')
        if end_sessions:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )


async def _rows(dsn: str) -> int:
    return sum((await ps.stored_rows(dsn)).values())


async def test_a_worker_started_while_a_shard_refuses_connections_writes_the_others(
    env: PipelineEnv, second_database: tuple[str, str], postgres_dsn: str
) -> None:
    name, dsn1 = second_database
    shards = await ps.two_shards(env, dsn1)
    messages = recent_fleet(300, 6)
    want = expected_by_shard(messages, 2)
    assert all(want), "the fleet must cover both shards"
    _allow(postgres_dsn, name, False)

    # --skip-checks: the start's schema check would refuse a shard that refuses connections.
    svc = ps.Service(env, "shard-refused-start", args=("--skip-checks",))
    try:
        await ps.produce(env.kafka, env.topic, messages, rate=0)

        async def shard_0_stored() -> bool:
            return await ps.stored_rows(env.dsn) == want[0]

        await ps.until(shard_0_stored, timeout_s=90, what="shard 0's frames all stored")
        assert svc.metric("nev_ingest_shard_paused_partitions", shard="1") == PARTITIONS // 2
        assert svc.metric("nev_ingest_shard_paused_partitions", shard="0") == 0
        assert svc.metric("nev_ingest_worker_db_connected") == 0
        assert svc.readyz() == 503
        assert svc.metric("nev_ingest_worker_restarts_total") == 0
        assert "storage.shards[1]" in svc.log.read_text()

        _allow(postgres_dsn, name, True)
        await ps.until(lambda: caught_up(env, shards), timeout_s=90, what="shard 1 to catch up")
        for shard, dsn in enumerate(shards):
            assert await ps.stored_rows(dsn) == want[shard], f"shard {shard}"
        await ps.until(lambda: ps.ready(svc), timeout_s=30, what="/readyz 200 again")
        assert svc.metric("nev_ingest_worker_restarts_total") == 0
    finally:
        code = svc.stop()
    assert code == 0, svc.tail(60)


async def test_a_running_worker_rides_out_a_shard_that_starts_refusing_connections(
    env: PipelineEnv, second_database: tuple[str, str], postgres_dsn: str
) -> None:
    name, dsn1 = second_database
    shards = await ps.two_shards(env, dsn1)
    messages = recent_fleet(300, 20)  # 6000 frames at 600/s: traffic flows all through
    want = expected_by_shard(messages, 2)

    async with ps.serving(env, "shard-refused-run", NEV_PIPELINE_BATCH_MAX_FRAMES="300") as svc:
        producing = asyncio.create_task(ps.produce(env.kafka, env.topic, messages, rate=600))

        async def both_writing() -> bool:
            return all(
                svc.metric("nev_ingest_shard_frames_written_total", shard=s) > 0 for s in "01"
            )

        await ps.until(both_writing, timeout_s=60, what="both shards to store frames")
        _allow(postgres_dsn, name, False, end_sessions=True)

        async def shard_1_paused() -> bool:
            return svc.metric("nev_ingest_shard_paused_partitions", shard="1") > 0

        await ps.until(shard_1_paused, timeout_s=60, what="shard 1's partitions to pause")
        at_pause = await _rows(env.dsn)

        async def first_grew() -> bool:
            return await _rows(env.dsn) > at_pause

        await ps.until(first_grew, timeout_s=60, what="shard 0 to store more meanwhile")
        assert svc.metric("nev_ingest_worker_restarts_total") == 0

        _allow(postgres_dsn, name, True)
        await producing
        await ps.until(lambda: caught_up(env, shards), timeout_s=120, what="every offset stored")
        for shard, dsn in enumerate(shards):
            assert await ps.stored_rows(dsn) == want[shard], f"shard {shard}"
        assert svc.metric("nev_ingest_worker_restarts_total") == 0
