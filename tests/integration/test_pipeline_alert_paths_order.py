"""A connector's two charger paths on different shards (ingest/pipeline/waiting.py): a change
one path's frame makes to an alert stored on the other shard waits for that shard's next
batch. It keeps its place in the engine's order while it waits (a raise evaluated after it
on the alert's shard is not saved before it).

Runs the pipeline's own sink in this process on the real broker's records and the real
databases, as a worker's writer lanes call it."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
from aiokafka import TopicPartition

from ingest.config.load import load_settings
from ingest.pipeline.batch import Batch
from ingest.pipeline.sink import SinkResult
from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.test_pipeline_alert_paths import (
    FAULT_RULES,
    binary_ok,
    changes,
    fault_push,
    no_rejects,
    produce,
    read_batch,
    started,
)

pytestmark = pytest.mark.integration


async def open_alerts(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        n: int = await conn.fetchval(
            f"SELECT count(*) FROM {ps.SCHEMA}.alerts WHERE cleared_at IS NULL"
        )
    finally:
        await conn.close()
    return n


async def test_a_raise_after_a_waiting_clear_is_saved_after_it(
    env: PipelineEnv,
    second_database: tuple[str, str],
    unique_topic: Callable[..., str],
    tmp_path: Path,
) -> None:
    env = dataclasses.replace(env, tcec=unique_topic(2, "tcec"))
    shards = await ps.two_shards(env, second_database[1])
    rules = tmp_path / "rules.toml"
    rules.write_text(FAULT_RULES)
    settings = load_settings(environ=env.environ(NEV_ALERTS_RULES_FILE=str(rules)))
    ms = time.time_ns() // 1_000_000 - 600_000
    await produce(
        env.kafka,
        [(fault_push(env.tcec, ms), 1), (binary_ok(env.charger, ms + 10_000), 0)],
    )
    tcec1, raw0 = TopicPartition(env.tcec, 1), TopicPartition(env.charger, 0)
    sink = await started(settings)
    try:
        await sink.on_partitions_assigned([raw0, tcec1])
        r = await sink.write(await read_batch(env, settings, [(tcec1, 0)], 1), no_rejects)
        assert changes(r) == [("raised", "test_connector_fault", 1)]  # A, on shard 1
        await produce(env.kafka, [(fault_push(env.tcec, ms + 20_000), 1)])
        b0 = await read_batch(env, settings, [(raw0, 0)], 0)  # clears A (its row: shard 1)
        b1 = await read_batch(env, settings, [(tcec1, 1)], 1)  # raises A' after that
        during: list[SinkResult] = []

        async def shard_1_meanwhile(rejected: list[tuple[int, str]]) -> None:
            # Shard 1's lane writes while shard 0's transaction is under way.
            during.append(await sink.write(b1, no_rejects))

        await sink.write(b0, shard_1_meanwhile)
        assert changes(during[0]) == []  # A' waits behind the clear of A
        idle = await sink.write(Batch(0, changes_only=True, shard=1), no_rejects)
        assert changes(idle) == [
            ("cleared", "test_connector_fault", 1),
            ("raised", "test_connector_fault", 1),
        ]
        assert len(sink._engines["charger"].open_alerts()) == 1
        assert await open_alerts(shards[1]) == 1  # A' open, as in the engine
    finally:
        await sink.close()
