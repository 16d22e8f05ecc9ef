"""A connector reporting by both charger paths (binary GB/T 32960 frames, T/CEC 102 pushes):
a frame of one path that clears an alert raised by the other path, stamped with the other
path's (topic, partition), must close that alert's row wherever it is: with
``storage.shards``, when the two partitions map to different shards, the clear is saved on the
shard holding the alert's row (a changes-only write of that shard), not in the frame's shard's
transaction, where it matched no row and the alert stayed open; and when the alert's
partition is fenced in the batch (another consumer wrote it), the clear is left to that
partition's owner, which holds the alert as it restored it (saved, it closed the row under
that owner).

Runs the pipeline's own sink in this process on the real broker's records and the real
databases, as a worker's writer lanes call it."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from ingest.config.load import load_settings
from ingest.pipeline.batch import Batch
from tests import kinds_traffic as kt
from tests.integration import pipeline_support as ps
from tests.integration.kinds_support import Out
from tests.integration.pipeline_support import PipelineEnv, read_batch
from tests.integration.test_pipeline_alert_topics import (
    CONNECTOR,
    ENTITY,
    FAULT_RULES,
    no_rejects,
    started,
)

pytestmark = pytest.mark.integration


async def produce(kafka: str, records: list[tuple[Out, int]]) -> None:
    """Each record to the given partition of its topic, in order."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for r, partition in records:
            await producer.send_and_wait(
                r.topic, r.value, key=r.key, headers=r.headers, partition=partition
            )
    finally:
        await producer.stop()


def fault_push(topic: str, ms: int, status: int = 255) -> Out:
    body = kt.station_status(CONNECTOR, status)
    return Out(topic, CONNECTOR.encode(), body, kt.tcec_headers(kt.STATUS, ms))


def binary_ok(topic: str, ms: int) -> Out:
    """A binary real-time frame of the connector charging (status 3): no fault."""
    raw = kt.charger_realtime(ms, CONNECTOR, status=3)
    return Out(topic, ENTITY.encode(), raw, kt.received(ms + 200))


async def alert_rows(dsn: str) -> list[tuple[str, str, int, bool]]:
    """(rule, topic, partition, cleared) of the database's alerts."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            f"SELECT rule_id, kafka_topic, kafka_partition, cleared_at IS NOT NULL AS cleared "
            f"FROM {ps.SCHEMA}.alerts ORDER BY opened_at"
        )
    finally:
        await conn.close()
    return [(r["rule_id"], r["kafka_topic"], r["kafka_partition"], r["cleared"]) for r in rows]


def changes(result: Any) -> list[tuple[str, str, int]]:
    return [(a.change, a.rule, a.shard) for a in result.alerts]


async def test_a_clear_from_the_other_path_lands_on_the_alerts_shard(
    env: PipelineEnv,
    second_database: tuple[str, str],
    unique_topic: Callable[..., str],
    tmp_path: Path,
) -> None:
    # T/CEC partition 1 -> shard 1, the binary topic's partition 0 -> shard 0.
    env = dataclasses.replace(env, tcec=unique_topic(2, "tcec"))
    shards = await ps.two_shards(env, second_database[1])
    rules = tmp_path / "rules.toml"
    rules.write_text(FAULT_RULES)
    settings = load_settings(environ=env.environ(NEV_ALERTS_RULES_FILE=str(rules)))
    ms = time.time_ns() // 1_000_000 - 600_000
    push, binary = fault_push(env.tcec, ms), binary_ok(env.charger, ms + 10_000)
    await produce(env.kafka, [(push, 1), (binary, 0)])
    tcec1, raw0 = TopicPartition(env.tcec, 1), TopicPartition(env.charger, 0)

    sink = await started(settings)
    try:
        await sink.on_partitions_assigned([raw0, tcec1])
        raised = await sink.write(await read_batch(env, settings, [(tcec1, 0)], 1), no_rejects)
        assert changes(raised) == [("raised", "test_connector_fault", 1)]
        assert await alert_rows(shards[1]) == [("test_connector_fault", env.tcec, 1, False)]

        # The binary frame clears it: its batch goes to shard 0, where the row is not.
        frame = await sink.write(await read_batch(env, settings, [(raw0, 0)], 0), no_rejects)
        assert changes(frame) == []
        assert await alert_rows(shards[0]) == []
        # The clear waits for shard 1 (the worker writes a changes-only batch when idle).
        assert sink.has_pending_changes()
        idle = await sink.write(Batch(0, changes_only=True, shard=1), no_rejects)
        assert changes(idle) == [("cleared", "test_connector_fault", 1)]
        assert await alert_rows(shards[1]) == [("test_connector_fault", env.tcec, 1, True)]
        assert not sink.has_pending_changes()
    finally:
        await sink.close()


async def test_a_clear_of_an_alert_whose_partition_is_fenced_is_left_to_its_owner(
    env: PipelineEnv, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(FAULT_RULES)
    settings = load_settings(environ=env.environ(NEV_ALERTS_RULES_FILE=str(rules)))
    ms = time.time_ns() // 1_000_000 - 600_000
    await produce(
        env.kafka,
        [
            (fault_push(env.tcec, ms), 0),  # offset 0: raises
            (fault_push(env.tcec, ms + 5_000), 0),  # offset 1: still in fault
            (binary_ok(env.charger, ms + 10_000), 0),  # the binary path: not in fault
        ],
    )
    tcec0, raw0 = TopicPartition(env.tcec, 0), TopicPartition(env.charger, 0)

    worker = await started(settings)
    other = await started(settings)
    try:
        await worker.on_partitions_assigned([raw0, tcec0])
        raised = await worker.write(await read_batch(env, settings, [(tcec0, 0)]), no_rejects)
        assert changes(raised) == [("raised", "test_connector_fault", 0)]
        # Another consumer takes the T/CEC partition (restoring the alert open) and writes its
        # next push first.
        await other.on_partitions_assigned([tcec0])
        await other.write(await read_batch(env, settings, [(tcec0, 1)]), no_rejects)

        # This worker's batch of that push (fenced) and of the binary frame (not fenced): the
        # binary frame clears the alert stamped with the fenced T/CEC partition, which is the
        # other consumer's to write.
        both = await read_batch(env, settings, [(tcec0, 1), (raw0, 0)])
        result = await worker.write(both, no_rejects)
        assert set(result.fenced) == {tcec0}
        assert changes(result) == []
        assert await alert_rows(env.dsn) == [("test_connector_fault", env.tcec, 0, False)]

        # The pushes go on in fault on the owner: its alert and the row agree (open), and its
        # clear is the only one published.
        await produce(env.kafka, [(fault_push(env.tcec, ms + 20_000), 0)])
        r = await other.write(await read_batch(env, settings, [(tcec0, 2)]), no_rejects)
        assert changes(r) == []
        assert await alert_rows(env.dsn) == [("test_connector_fault", env.tcec, 0, False)]
        await produce(env.kafka, [(fault_push(env.tcec, ms + 30_000, status=3), 0)])
        r = await other.write(await read_batch(env, settings, [(tcec0, 3)]), no_rejects)
        assert changes(r) == [("cleared", "test_connector_fault", 0)]
        assert await alert_rows(env.dsn) == [("test_connector_fault", env.tcec, 0, True)]
    finally:
        await worker.close()
        await other.close()


async def test_a_known_connectors_other_path_moved_here_adopts_its_alert(
    env: PipelineEnv, unique_topic: Callable[..., str], tmp_path: Path
) -> None:
    # The T/CEC topic got a second partition: the connector's pushes moved from 0 to 1.
    env = dataclasses.replace(env, tcec=unique_topic(2, "tcec"))
    rules = tmp_path / "rules.toml"
    rules.write_text(FAULT_RULES)
    settings = load_settings(environ=env.environ(NEV_ALERTS_RULES_FILE=str(rules)))
    ms = time.time_ns() // 1_000_000 - 600_000
    await produce(
        env.kafka,
        [
            (fault_push(env.tcec, ms), 0),  # raised by the old owner of partition 0
            (binary_ok(env.charger, ms + 5_000), 0),  # the binary path (status 3)
            (fault_push(env.tcec, ms + 10_000), 1),  # the pushes, moved: still in fault
        ],
    )
    tcec0, tcec1 = TopicPartition(env.tcec, 0), TopicPartition(env.tcec, 1)
    raw0 = TopicPartition(env.charger, 0)

    old = await started(settings)
    new = await started(settings)
    try:
        await old.on_partitions_assigned([tcec0])
        raised = await old.write(await read_batch(env, settings, [(tcec0, 0)]), no_rejects)
        assert changes(raised) == [("raised", "test_connector_fault", 0)]

        # The new owner of T/CEC partition 1 knows the connector by its binary frames first.
        await new.on_partitions_assigned([raw0, tcec1])
        await new.write(await read_batch(env, settings, [(raw0, 0)]), no_rejects)
        assert ENTITY in new._engines["charger"]
        moved = await new.write(await read_batch(env, settings, [(tcec1, 0)]), no_rejects)
        # The pushes' alert is adopted (and its row moved to partition 1), not raised again.
        assert [c for c in changes(moved) if c[0] == "raised"] == []
        assert {a.entity_id for a in new._engines["charger"].open_alerts()} == {ENTITY}
        assert await alert_rows(env.dsn) == [("test_connector_fault", env.tcec, 1, False)]
    finally:
        await old.close()
        await new.close()
