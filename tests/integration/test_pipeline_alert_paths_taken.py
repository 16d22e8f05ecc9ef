"""A connector's two charger paths on different shards (ingest/pipeline/waiting.py), after the
waiting change is TAKEN by a batch of its alert's shard, and across a rebalance: a raise the
shard's other lane evaluates meanwhile is not saved before the taken clear, and a waiting
change to an alert whose partition is lost is left to the partition's next owner.

Runs the pipeline's own sink in this process on the real broker's records and the real
databases, as a worker's writer lanes call it."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from ingest.config.load import load_settings
from ingest.config.settings import Settings
from ingest.pipeline.batch import Batch
from ingest.pipeline.sink import SinkResult
from ingest.pipeline.storage_sink import StorageSink
from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv, read_batch
from tests.integration.test_pipeline_alert_paths import (
    alert_rows,
    binary_ok,
    changes,
    fault_push,
    produce,
)
from tests.integration.test_pipeline_alert_paths_order import open_alerts
from tests.integration.test_pipeline_alert_topics import FAULT_RULES, no_rejects, started

pytestmark = pytest.mark.integration

FAULT = ("raised", "test_connector_fault", 1)


async def _fault_then_clear(
    env: PipelineEnv, second_database: tuple[str, str], tmp_path: Path
) -> tuple[tuple[str, str], Settings, StorageSink, int]:
    """A raised by tcec[1] (its row on shard 1), cleared by raw[0]'s frame (shard 0): the
    clear waits for shard 1, its frame's batch committed. The shards' DSNs, the settings, the
    sink (raw[0] and tcec[1] assigned) and the first push's time."""
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
    await sink.on_partitions_assigned([raw0, tcec1])
    r = await sink.write(await read_batch(env, settings, [(tcec1, 0)], 1), no_rejects)
    assert changes(r) == [FAULT]
    r0 = await sink.write(await read_batch(env, settings, [(raw0, 0)], 0), no_rejects)
    assert changes(r0) == []  # the clear of A waits for shard 1, ready now
    return shards, settings, sink, ms


async def test_a_raise_after_a_taken_clear_is_saved_after_it(
    env: PipelineEnv,
    second_database: tuple[str, str],
    unique_topic: Callable[..., str],
    tmp_path: Path,
) -> None:
    """A changes-only batch of shard 1 (one lane) takes the clear; before it commits, the
    next push (the other lane) raises A' again: its batch saves no change of A."""
    env = dataclasses.replace(env, tcec=unique_topic(2, "tcec"))
    shards, settings, sink, ms = await _fault_then_clear(env, second_database, tmp_path)
    try:
        await produce(env.kafka, [(fault_push(env.tcec, ms + 20_000), 1)])
        b1 = await read_batch(env, settings, [(TopicPartition(env.tcec, 1), 1)], 1)
        during: list[SinkResult] = []

        async def other_lane_meanwhile(rejected: list[tuple[int, str]]) -> None:
            during.append(await sink.write(b1, no_rejects))

        idle = await sink.write(Batch(0, changes_only=True, shard=1), other_lane_meanwhile)
        assert changes(during[0]) == []  # A' waits behind the taken clear
        assert changes(idle) == [("cleared", "test_connector_fault", 1)]
        last = await sink.write(Batch(0, changes_only=True, shard=1), no_rejects)
        assert changes(last) == [FAULT]
        engine_open = len(sink._engines["charger"].open_alerts())
        assert engine_open == 1
        assert await open_alerts(shards[1]) == 1, await alert_rows(shards[1])
    finally:
        await sink.close()


async def test_a_waiting_clear_of_a_lost_partitions_alert_is_left_to_its_next_owner(
    env: PipelineEnv,
    second_database: tuple[str, str],
    unique_topic: Callable[..., str],
    tmp_path: Path,
) -> None:
    """Both partitions revoked after the drain, the clear not saved yet; tcec[1] goes to
    another worker, which restores A open: this worker's changes-only batch for shard 1 does
    not close A's row under it; the next owner's push clears it, once."""
    env = dataclasses.replace(env, tcec=unique_topic(2, "tcec"))
    shards, settings, sink, ms = await _fault_then_clear(env, second_database, tmp_path)
    tcec1, raw0 = TopicPartition(env.tcec, 1), TopicPartition(env.charger, 0)
    other = await started(settings)
    try:
        sink.on_partitions_lost([raw0, tcec1])  # revoked after the drain
        await sink.on_partitions_assigned([raw0])  # keeps raw0; tcec1 goes to the other
        await other.on_partitions_assigned([tcec1])  # restores A open
        assert not sink.has_pending_changes()
        idle = await sink.write(Batch(0, changes_only=True, shard=1), no_rejects)
        assert changes(idle) == []
        assert await open_alerts(shards[1]) == 1, await alert_rows(shards[1])
        await produce(env.kafka, [(fault_push(env.tcec, ms + 30_000, status=3), 1)])
        r = await other.write(await read_batch(env, settings, [(tcec1, 1)], 1), no_rejects)
        # (after the raise's outbox record, never marked published here, sent again)
        assert changes(r) == [FAULT, ("cleared", "test_connector_fault", 1)]
        assert await open_alerts(shards[1]) == 0
    finally:
        await sink.close()
        await other.close()
