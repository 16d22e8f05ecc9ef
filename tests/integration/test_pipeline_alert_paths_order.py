"""A connector's two charger paths on different shards (ingest/pipeline/waiting.py): a change
one path's frame makes to an alert stored on the other shard waits for that shard's next
batch. It keeps its place in the engine's order while it waits (a raise evaluated after it
on the alert's shard is not saved before it), and a committed frame's change is not dropped
when the batch's commit went unanswered and a retry found it committed.

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
from ingest.pipeline.sink import SinkResult, TransientSinkError
from tests import kinds_traffic as kt
from tests.integration import pipeline_support as ps
from tests.integration.commit_cut import CommitCut
from tests.integration.kinds_support import Out
from tests.integration.pipeline_support import PipelineEnv, read_batch
from tests.integration.test_pipeline_alert_paths import (
    alert_rows,
    binary_ok,
    changes,
    fault_push,
    produce,
)
from tests.integration.test_pipeline_alert_topics import FAULT_RULES, no_rejects, started
from tests.integration.test_pipeline_commit_unknown import one_attempt_sink

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


def other_connector(topic: str, ms: int) -> Out:
    """A binary frame of another connector, for a partition another consumer moves on."""
    c = kt.connector(2)
    raw = kt.charger_realtime(ms, c, status=3)
    return Out(topic, f"{kt.OPERATOR}:{c}".encode(), raw, kt.received(ms + 200))


async def test_a_retry_finding_the_commit_keeps_its_waiting_clear(
    env: PipelineEnv,
    second_database: tuple[str, str],
    unique_topic: Callable[..., str],
    tmp_path: Path,
) -> None:
    env = dataclasses.replace(env, tcec=unique_topic(2, "tcec"), charger=unique_topic(3, "chg"))
    shards = await ps.two_shards(env, second_database[1])
    rules = tmp_path / "rules.toml"
    rules.write_text(FAULT_RULES)
    ms = time.time_ns() // 1_000_000 - 600_000
    await produce(
        env.kafka,
        [
            (fault_push(env.tcec, ms), 1),
            (binary_ok(env.charger, ms + 10_000), 0),
            (other_connector(env.charger, ms + 10_000), 2),
        ],
    )
    tcec1 = TopicPartition(env.tcec, 1)
    raw0, raw2 = TopicPartition(env.charger, 0), TopicPartition(env.charger, 2)
    direct = load_settings(environ=env.environ(NEV_ALERTS_RULES_FILE=str(rules)))
    with CommitCut(env.dsn) as cut:
        settings = load_settings(
            environ=env.environ(
                NEV_ALERTS_RULES_FILE=str(rules), NEV_STORAGE_SHARDS=f"{cut.dsn},{shards[1]}"
            )
        )
        topics = {env.charger: "charger", env.tcec: "charger"}
        sink = one_attempt_sink(settings, "nev-test", topics, rules)
        await sink.start()
        other = await started(direct)
        try:
            await sink.on_partitions_assigned([raw0, raw2, tcec1])
            r = await sink.write(await read_batch(env, settings, [(tcec1, 0)], 1), no_rejects)
            assert changes(r) == [("raised", "test_connector_fault", 1)]
            b0 = await read_batch(env, settings, [(raw0, 0), (raw2, 0)], 0)  # clears A
            cut.arm()  # b0 commits, its COMMIT's answer is lost
            with pytest.raises(TransientSinkError):
                await sink.write(b0, no_rejects)
            assert cut.cut == 1
            # Another consumer moves raw0 on past b0's committed frame.
            await produce(env.kafka, [(binary_ok(env.charger, ms + 20_000), 0)])
            await other.on_partitions_assigned([raw0])
            await other.write(await read_batch(env, direct, [(raw0, 1)], 0), no_rejects)
            # The lane's retry finds b0 committed (raw0 fenced now: the retry's view).
            result = await sink.write(b0, no_rejects)
            assert set(result.fenced) == {raw0}
            idle = await sink.write(Batch(0, changes_only=True, shard=1), no_rejects)
            assert changes(idle) == [("cleared", "test_connector_fault", 1)]
            assert await alert_rows(shards[1]) == [("test_connector_fault", env.tcec, 1, True)]
        finally:
            await sink.close()
            await other.close()
