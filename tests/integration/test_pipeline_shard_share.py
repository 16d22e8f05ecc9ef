"""A hung shard holds only its share of the in-flight bound.

Two shards on the dev cluster; shard 1's writes hang on a lock another connection holds
(``consumer_offsets`` locked, no statement timeout, a write timeout far away: the shard is
slow, never failing). Its lanes fill with its frames until its share of
``pipeline.max_in_flight_frames`` is full, then only its partitions pause: shard 0 stores all of
its frames meanwhile, well past ``pause_after_s``. When the lock goes, shard 1 catches up, every
frame stored once in its shard."""

from __future__ import annotations

import asyncpg
import pytest

from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.test_pipeline_shards import caught_up, expected_by_shard
from tests.integration.traffic import recent_fleet

pytestmark = pytest.mark.integration


async def test_a_hung_shard_pauses_only_its_partitions_once_its_share_is_full(
    env: PipelineEnv, second_database: tuple[str, str]
) -> None:
    _, dsn1 = second_database
    shards = await ps.two_shards(env, dsn1)
    messages = recent_fleet(300, 20)  # 6000 frames, 3000 a shard: more than the bound
    want = expected_by_shard(messages, 2)
    env.extra.update(
        NEV_PIPELINE_MAX_IN_FLIGHT_FRAMES="1000",
        NEV_PIPELINE_BATCH_MAX_FRAMES="100",
        NEV_POSTGRES_STATEMENT_TIMEOUT_MS="0",
        NEV_STORAGE_WRITE_TIMEOUT_S="3600",
    )
    holder = await asyncpg.connect(dsn1)
    try:
        async with ps.serving(env, "shard-share") as svc:
            # A first part, so that both shards' partitions are loaded before the lock.
            await ps.produce(env.kafka, env.topic, messages[:600], rate=0)

            async def both_writing() -> bool:
                return all(
                    svc.metric("nev_ingest_shard_frames_written_total", shard=s) > 0 for s in "01"
                )

            await ps.until(both_writing, timeout_s=60, what="both shards to store frames")
            tx = holder.transaction()
            await tx.start()
            await holder.execute("LOCK TABLE nev.consumer_offsets IN ACCESS EXCLUSIVE MODE")
            await ps.produce(env.kafka, env.topic, messages[600:], rate=0)

            async def shard_0_stored() -> bool:
                return await ps.stored_rows(env.dsn) == want[0]

            await ps.until(shard_0_stored, timeout_s=120, what="shard 0's frames all stored")
            hung = sum((await ps.stored_rows(dsn1)).values())
            assert hung < sum(want[1].values()), "shard 1 hung all along"
            # A slow shard is no shard down (NevIngestShardDown).
            assert svc.metric("nev_ingest_shard_paused_partitions", shard="1") == 0
            await tx.rollback()
            await ps.until(lambda: caught_up(env, shards), timeout_s=120, what="shard 1 caught up")
            for shard, dsn in enumerate(shards):
                assert await ps.stored_rows(dsn) == want[shard], f"shard {shard}"
    finally:
        await holder.close()
