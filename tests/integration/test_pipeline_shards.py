"""Two shards (``storage.shards``): the service writes each Kafka partition to its shard
(partition p -> shard p % 2). Shard 0 is a fresh database on the shared cluster, shard 1 this
test's own cluster (``cluster``), which the outage test stops and starts.

- kill -9 of the worker mid-run: every frame is stored exactly once across both shards, and
  each shard holds exactly the frames (and the offsets) of its own partitions;
- shard 1 stopped and started mid-run: its partitions pause (shard 0's do not), shard 0 keeps
  storing rows during the outage, and after the restart shard 1 catches up, nothing lost or
  stored twice."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from collections.abc import Sequence

import pytest

from devtools.sim.fleet import Message
from storage.shards import kafka_partition
from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.private_services import PrivateCluster
from tests.integration.traffic import recent_fleet

pytestmark = pytest.mark.integration

PARTITIONS = 4  # of the vehicle topic (make_env): 0 and 2 go to shard 0, 1 and 3 to shard 1


@pytest.fixture
async def shards(env: PipelineEnv, cluster: PrivateCluster) -> tuple[str, str]:
    """The two shards' DSNs, both migrated; ``env.dsn`` (``postgres.dsn``) is shard 0."""
    await ps.migrate_database(cluster.dsn)
    env.extra["NEV_STORAGE_SHARDS"] = f"{env.dsn},{cluster.dsn}"
    return (env.dsn, cluster.dsn)


def expected_by_shard(messages: Sequence[Message], n: int) -> list[Counter[tuple[str, int]]]:
    """The rows each shard must hold: those of the frames whose key Kafka's default
    partitioner puts on a partition of that shard."""
    out: list[Counter[tuple[str, int]]] = [Counter() for _ in range(n)]
    for m in messages:
        shard = kafka_partition(m.key, PARTITIONS) % n
        out[shard] += ps.Expected.of([m]).rows
    return out


async def caught_up(env: PipelineEnv, dsns: Sequence[str]) -> bool:
    """Every non-empty partition of the vehicle topic has its end offset stored (in any shard)."""
    ends = await ps.end_offsets(env.kafka, env.topic)
    stored: dict[int, int] = {}
    for dsn in dsns:
        stored.update(await ps.stored_offsets(dsn, env.group, env.topic))
    return all(stored.get(p, 0) >= end for p, end in ends.items() if end > 0)


async def test_kill_9_with_two_shards_stores_every_frame_once_in_its_shard(
    env: PipelineEnv, shards: tuple[str, str]
) -> None:
    messages = recent_fleet(300, 10)
    want = expected_by_shard(messages, 2)
    assert all(want), "the fleet must cover both shards"
    total = len(messages)

    async with ps.serving(
        env,
        "shards-crash",
        NEV_PIPELINE_BATCH_MAX_FRAMES="300",
        **ps.SHORT_SESSION,
    ) as svc:
        (victim,) = svc.worker_pids()
        producing = asyncio.create_task(ps.produce(env.kafka, env.topic, messages, rate=3000))

        async def some_stored() -> int:
            n = 0
            for dsn in shards:
                n += sum((await ps.stored_offsets(dsn, env.group, env.topic)).values())
            return n if n >= total // 5 else 0

        at_kill = await ps.until(some_stored, timeout_s=60, what="a fifth of the frames stored")
        os.kill(victim, signal.SIGKILL)
        assert at_kill < total and not producing.done(), "the kill must land mid-run"

        async def restarted() -> bool:
            pids = svc.worker_pids()
            return len(pids) == 1 and pids[0] != victim

        await ps.until(restarted, timeout_s=30, what="the supervisor to restart the worker")
        await producing
        await ps.until(
            lambda: caught_up(env, shards),
            timeout_s=ps.KILLED_SESSION_S + 120,
            what="every offset stored (the dead member's session expired first)",
        )

        # Each shard holds exactly its partitions' frames (so together: every frame, once) ...
        for shard, dsn in enumerate(shards):
            assert await ps.stored_rows(dsn) == want[shard], f"shard {shard}"
            # ... and only its partitions' offsets.
            offsets = await ps.stored_offsets(dsn, env.group, env.topic)
            assert offsets and {p % 2 for p in offsets} == {shard}, offsets
        assert svc.metric("nev_ingest_duplicate_rows_skipped_total") == 0  # nothing twice
        assert svc.metric("nev_ingest_worker_restarts_total") == 1
        for label in ("0", "1"):
            assert svc.metric("nev_ingest_shard_frames_written_total", shard=label) > 0


async def test_one_shard_down_pauses_its_partitions_while_the_other_writes_on(
    env: PipelineEnv, shards: tuple[str, str], cluster: PrivateCluster
) -> None:
    messages = recent_fleet(300, 30)  # 9000 frames at 600/s: traffic flows all through
    want = expected_by_shard(messages, 2)
    first = shards[0]

    async with ps.serving(env, "shards-outage", NEV_PIPELINE_BATCH_MAX_FRAMES="500") as svc:
        producing = asyncio.create_task(ps.produce(env.kafka, env.topic, messages, rate=600))

        async def both_writing() -> bool:
            return all(
                svc.metric("nev_ingest_shard_frames_written_total", shard=s) > 0 for s in "01"
            )

        await ps.until(both_writing, timeout_s=60, what="both shards to store frames")
        await asyncio.to_thread(cluster.stop)

        async def shard_1_paused() -> bool:
            return (
                svc.metric("nev_ingest_shard_paused_partitions", shard="1") == PARTITIONS // 2
                and svc.metric("nev_ingest_shard_paused_partitions", shard="0") == 0
            )

        await ps.until(shard_1_paused, timeout_s=60, what="shard 1's partitions (only) to pause")
        at_pause = sum((await ps.stored_rows(first)).values())

        async def first_grew() -> bool:
            return sum((await ps.stored_rows(first)).values()) > at_pause

        await ps.until(first_grew, timeout_s=60, what="shard 0 to store rows during the outage")
        # Still down, still paused: the rows above were written while shard 1 was away.
        assert await shard_1_paused()
        assert svc.metric("nev_ingest_shard_write_errors_total", shard="1") > 0
        assert svc.metric("nev_ingest_shard_write_errors_total", shard="0") == 0
        assert not producing.done(), "the outage must happen while traffic flows"

        await asyncio.to_thread(cluster.start)
        await producing

        async def resumed() -> bool:
            return svc.metric("nev_ingest_paused_partitions") == 0 and await caught_up(env, shards)

        await ps.until(resumed, timeout_s=120, what="shard 1 to resume and catch up")
        for shard, dsn in enumerate(shards):
            assert await ps.stored_rows(dsn) == want[shard], f"shard {shard}"
        assert svc.metric("nev_ingest_duplicate_rows_skipped_total") == 0
