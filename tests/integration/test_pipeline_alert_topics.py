"""Alert state and unpublished alert messages belong to a (topic, partition), not to a partition
number: chargers come on two topics (the binary profile and T/CEC 102 pushes) whose partition
numbers coincide, and whoever owns partition 0 of one must neither adopt the other's open
alerts, nor keep them after giving that partition up, nor re-send its outbox rows (a duplicate
on the alerts topic whenever both owners do).

Runs the pipeline's own sink in this process on the real broker's records and the real
database: a "worker" owning the T/CEC topic's partition 0 commits an alert (and its outbox
row) and dies before publishing; then sinks owning the other charger topic's partition 0, or
both, are assigned and revoked as a worker's would be."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from ingest.config.load import load_settings
from ingest.pipeline.batch import Batch, BatchBuilder
from ingest.pipeline.metrics import PipelineMetrics
from ingest.pipeline.process import decoders_for
from ingest.pipeline.sink import AlertMessage
from ingest.pipeline.storage_sink import StorageSink
from ingest.pipeline.writer import DeadLettersPending
from tests import kinds_traffic as kt
from tests.integration import pipeline_support as ps
from tests.integration.kinds_support import Out, produce_records
from tests.integration.pipeline_support import PipelineEnv

pytestmark = pytest.mark.integration

FAULT_RULES = """
[[rule]]
id = "test_connector_fault"
entity = "charger"
kind = "threshold"
severity = "major"
title = "connector in fault"
field = "connector_status"
op = "=="
value = 255
"""
CONNECTOR = kt.connector(1)
ENTITY = f"{kt.OPERATOR}:{CONNECTOR}"  # the charger entity id: one connector


async def no_rejects(rejected: list[tuple[int, str]]) -> None:
    assert rejected == [], f"the database rejected frames: {rejected}"


async def read_batch(env: PipelineEnv, settings: Any, tp: TopicPartition, start: int = 0) -> Batch:
    """The records of ``tp`` from offset ``start`` on decoded into one batch, as a worker's
    consumer builds it (a batch behind the offsets stored for ``tp`` is fenced: a next owner
    reads from the stored offset)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=env.kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, start)
        end = (await consumer.end_offsets([tp]))[tp]
        records: list[Any] = []
        while start + len(records) < end:
            records.extend((await consumer.getmany(tp, timeout_ms=1000)).get(tp, []))
        builder = BatchBuilder(decoders_for(settings))
        builder.add(tp, records, None if start == 0 else start)
        return builder.take()
    finally:
        await consumer.stop()


async def started(settings: Any) -> StorageSink:
    sink = StorageSink.from_settings(settings, metrics=PipelineMetrics())
    await sink.start()
    return sink


def open_connectors(sink: StorageSink) -> set[str]:
    """The connectors whose alerts the sink's charger engine holds open (its live state)."""
    return {a.entity_id for a in sink._engines["charger"].open_alerts()}


async def resent(sink: StorageSink) -> list[bytes]:
    """What the sink's next transaction publishes again from the outbox (a batch of no frames,
    as the worker writes when changes wait without frames)."""
    result = await sink.write(Batch(0, changes_only=True), no_rejects)
    return [a.message for a in result.alerts]


async def commit_unpublished(env: PipelineEnv, tmp_path: Path) -> tuple[Any, AlertMessage]:
    """The settings of the test's sinks, and the alert message a worker owning the T/CEC
    topic's partition 0 committed (with its outbox row) and died before publishing."""
    rules = tmp_path / "rules.toml"
    rules.write_text(FAULT_RULES)
    settings = load_settings(environ=env.environ(NEV_ALERTS_RULES_FILE=str(rules)))
    ms = time.time_ns() // 1_000_000 - 600_000
    push = Out(
        env.tcec,
        CONNECTOR.encode(),
        kt.station_status(CONNECTOR, 255),
        kt.tcec_headers(kt.STATUS, ms),
    )
    await produce_records(env.kafka, [push])
    tcec0 = TopicPartition(env.tcec, 0)
    sink = await started(settings)
    try:
        await sink.on_partitions_assigned([tcec0])
        result = await sink.write(await read_batch(env, settings, tcec0), no_rejects)
    finally:
        await sink.close()
    (unsent,) = result.alerts
    assert (unsent.change, unsent.rule) == ("raised", "test_connector_fault")
    return settings, unsent


async def test_alert_state_and_outbox_are_keyed_by_topic_and_partition(
    env: PipelineEnv, tmp_path: Path
) -> None:
    settings, unsent = await commit_unpublished(env, tmp_path)
    tcec0, raw0 = TopicPartition(env.tcec, 0), TopicPartition(env.charger, 0)
    conn = await asyncpg.connect(env.dsn)
    try:
        stored = await conn.fetch(
            f"SELECT kafka_topic, kafka_partition FROM {ps.SCHEMA}.alerts "
            f"UNION ALL SELECT kafka_topic, kafka_partition FROM {ps.SCHEMA}.alerts_outbox"
        )
    finally:
        await conn.close()
    assert [tuple(r) for r in stored] == [(env.tcec, 0), (env.tcec, 0)]

    # The owner of the binary topic's partition 0 adopts none of it and re-sends nothing.
    other = await started(settings)
    try:
        await other.on_partitions_assigned([raw0])
        assert open_connectors(other) == set()
        assert not other.has_pending_changes()
        assert await resent(other) == []
    finally:
        await other.close()

    # A worker owning both: giving up the T/CEC partition forgets its connectors even though
    # it still owns partition 0 of the other charger topic.
    both = await started(settings)
    try:
        await both.on_partitions_assigned([raw0, tcec0])
        assert open_connectors(both) == {ENTITY}
        both.on_partitions_lost([tcec0])
        assert open_connectors(both) == set()
    finally:
        await both.close()

    # The next owner of the T/CEC partition gets its alert back and sends the message once.
    owner = await started(settings)
    try:
        await owner.on_partitions_assigned([tcec0])
        assert open_connectors(owner) == {ENTITY}
        assert await resent(owner) == [unsent.message]
    finally:
        await owner.close()


async def test_a_lost_partitions_messages_and_alert_changes_are_left_to_its_next_owner(
    env: PipelineEnv, tmp_path: Path
) -> None:
    settings, _ = await commit_unpublished(env, tmp_path)
    tcec0 = TopicPartition(env.tcec, 0)
    sink = await started(settings)
    try:
        await sink.on_partitions_assigned([tcec0])
        assert sink.has_pending_changes()  # found: it would send it with its next batch...
        # The rule goes too (a SIGHUP reload): the engine clears the partition's open alert,
        # and the "cleared" change waits for the next batch of the partition's shard.
        rules = tmp_path / "rules.toml"  # the settings' rules file (commit_unpublished)
        rules.write_text(FAULT_RULES.replace("test_connector_fault", "test_connector_other"))
        assert "1 alerts cleared" in sink.reload_rules()
        sink.on_partitions_lost([tcec0])
        # ...but the partition went to another worker, which sends the message and decides
        # the alert: this one's next write saves and sends none of it.
        assert not sink.has_pending_changes()
        assert await resent(sink) == []
    finally:
        await sink.close()
    conn = await asyncpg.connect(env.dsn)
    try:
        cleared = await conn.fetchval(
            f"SELECT count(*) FROM {ps.SCHEMA}.alerts WHERE cleared_at IS NOT NULL"
        )
    finally:
        await conn.close()
    assert cleared == 0  # still open, for the next owner to restore


async def test_two_lanes_do_not_publish_the_same_unpublished_message(
    env: PipelineEnv, tmp_path: Path
) -> None:
    settings, unsent = await commit_unpublished(env, tmp_path)
    sink = await started(settings)
    try:
        await sink.on_partitions_assigned([TopicPartition(env.tcec, 0)])
        # Two writer lanes write at the same time (each its own connection and transaction).
        both = await asyncio.gather(resent(sink), resent(sink))
        assert sorted(both) == [[], [unsent.message]]  # once, by one of them
        assert await resent(sink) == []
    finally:
        await sink.close()


async def test_a_failed_write_keeps_the_unpublished_message_for_the_next(
    env: PipelineEnv, tmp_path: Path
) -> None:
    settings, unsent = await commit_unpublished(env, tmp_path)
    sink = await started(settings)
    try:
        await sink.on_partitions_assigned([TopicPartition(env.tcec, 0)])

        async def refuse(rejected: list[tuple[int, str]]) -> None:
            # What the writer's hook raises when the batch's dead letters were not
            # acknowledged in time: the transaction rolls back, the writer tries again later.
            raise DeadLettersPending("KafkaTimeoutError: not acknowledged")

        with pytest.raises(DeadLettersPending):
            await sink.write(Batch(0, changes_only=True), refuse)
        assert await resent(sink) == [unsent.message]  # the retry sends it
    finally:
        await sink.close()


async def test_an_alert_raised_by_binary_frames_is_the_raw_topics_alert(env: PipelineEnv) -> None:
    """A connector first seen by a T/CEC push overheats in its binary frames: its alert and
    outbox row are the binary topic's partition's (the path that can clear it: pushes carry
    no temperature), not the T/CEC one's where the connector was first seen."""
    settings = load_settings(environ=env.environ())  # the default rules: connector_over_temp
    ms = time.time_ns() // 1_000_000 - 600_000
    key = ENTITY.encode()
    push = Out(env.tcec, key, kt.station_status(CONNECTOR, 3), kt.tcec_headers(kt.STATUS, ms))
    hot = [
        Out(
            env.charger,
            key,
            kt.charger_realtime(t, CONNECTOR, output=(400.0, 125.5, 50.2, 12.3, 95)),
            kt.received(t),
        )
        for t in (ms + 10_000, ms + 20_000)
    ]
    await produce_records(env.kafka, [push, *hot])
    tcec0, raw0 = TopicPartition(env.tcec, 0), TopicPartition(env.charger, 0)
    sink = await started(settings)
    try:
        await sink.on_partitions_assigned([tcec0, raw0])
        await sink.write(await read_batch(env, settings, tcec0), no_rejects)
        result = await sink.write(await read_batch(env, settings, raw0), no_rejects)
    finally:
        await sink.close()
    assert [(a.change, a.rule) for a in result.alerts] == [("raised", "connector_over_temp")]
    conn = await asyncpg.connect(env.dsn)
    try:
        stored = await conn.fetch(
            f"SELECT kafka_topic, kafka_partition FROM {ps.SCHEMA}.alerts "
            f"UNION ALL SELECT kafka_topic, kafka_partition FROM {ps.SCHEMA}.alerts_outbox"
        )
    finally:
        await conn.close()
    assert [tuple(r) for r in stored] == [(env.charger, 0), (env.charger, 0)]
