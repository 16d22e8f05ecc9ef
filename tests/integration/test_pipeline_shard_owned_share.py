"""A shard's share of the in-flight bound follows the partitions the worker owns on it.

Two shards, and a vehicle topic of one partition: every partition of the worker (that one and
the other raw topics' partition 0) maps to shard 0. Shard 0's writes then hang on a lock
(``consumer_offsets`` locked, no statement timeout, a write timeout far away: slow, not
failing). Its lanes may fill the whole ``pipeline.max_in_flight_frames``: with a flat ``1/N``
share it was held, its partitions paused, at half the bound, though shard 1 had nothing of this
worker's to write. When the lock goes every frame is stored once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.traffic import recent_fleet

pytestmark = pytest.mark.integration

BOUND = 1000


@pytest.fixture
async def env(
    kafka_bootstrap: str,
    fresh_database: str,
    unique_topic: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> PipelineEnv:
    """The usual environment with a one-partition vehicle topic (every partition: shard 0)."""
    return await ps.make_env(
        kafka_bootstrap, fresh_database, unique_topic, unique_name, tmp_path, partitions=1
    )


async def test_a_worker_whose_partitions_are_all_on_one_shard_keeps_the_whole_bound(
    env: PipelineEnv, second_database: tuple[str, str]
) -> None:
    _, dsn1 = second_database
    await ps.two_shards(env, dsn1)
    messages = recent_fleet(200, 20)  # 4000 frames: well over the bound
    env.extra.update(
        NEV_PIPELINE_MAX_IN_FLIGHT_FRAMES=str(BOUND),
        NEV_PIPELINE_BATCH_MAX_FRAMES="100",
        NEV_POSTGRES_STATEMENT_TIMEOUT_MS="0",
        NEV_STORAGE_WRITE_TIMEOUT_S="3600",
    )
    holder = await asyncpg.connect(env.dsn)
    try:
        async with ps.serving(env, "shard-owned-share") as svc:
            # A first part, so that the partition is loaded before the lock.
            await ps.produce(env.kafka, env.topic, messages[:200], rate=0)

            async def writing() -> bool:
                return svc.metric("nev_ingest_shard_frames_written_total", shard="0") > 0

            await ps.until(writing, timeout_s=60, what="shard 0 to store frames")
            tx = holder.transaction()
            await tx.start()
            await holder.execute("LOCK TABLE nev.consumer_offsets IN ACCESS EXCLUSIVE MODE")
            await ps.produce(env.kafka, env.topic, messages[200:], rate=0)

            async def whole_bound() -> bool:
                return svc.metric("nev_ingest_in_flight_frames") >= BOUND

            # Held at half the bound (500 frames and a fetch) the count stayed there.
            await ps.until(whole_bound, timeout_s=60, what="shard 0's lanes to fill the bound")
            await tx.rollback()
            await ps.until(lambda: ps.caught_up(env), timeout_s=120, what="everything stored")
            assert await ps.stored_rows(env.dsn) == ps.Expected.of(messages).rows
            assert sum((await ps.stored_rows(dsn1)).values()) == 0
    finally:
        await holder.close()
