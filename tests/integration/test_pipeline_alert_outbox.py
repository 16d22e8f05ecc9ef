"""A crash between the database commit and the alerts-topic publish loses no alert message
(issue 9, item 5): the message is in ``alerts_outbox`` with the alert, and the next owner of the
partition sends it.

The crash is made deterministic by running the pipeline's own sink in this process: it decodes
the frames read from the real broker, evaluates the rules and commits the batch (rows, offsets,
alert, outbox row) exactly as a worker does, and then this "worker" dies before its publish
(the step a SIGKILL right after the commit skips). A real service started afterwards must send
the committed message, byte for byte, and delete its outbox row."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from ingest.config.load import load_settings
from ingest.pipeline.batch import BatchBuilder
from ingest.pipeline.metrics import PipelineMetrics
from ingest.pipeline.process import decoders_for
from ingest.pipeline.sink import AlertMessage
from ingest.pipeline.storage_sink import StorageSink
from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.traffic import HOT_PACK_RULES, HOT_VIN, hot_frames

pytestmark = pytest.mark.integration


async def count(dsn: str, sql: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def commit_without_publishing(env: PipelineEnv, environ: dict[str, str]) -> AlertMessage:
    """Consume the topic, commit it through the real sink, never publish: the committed alert
    message that a worker killed right after its commit would have sent."""
    settings = load_settings(environ=environ)
    consumer = AIOKafkaConsumer(bootstrap_servers=env.kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(env.topic, p) for p in range(4)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        builder = BatchBuilder(decoders_for(settings))
        for tp in tps:
            records: list[Any] = []
            while len(records) < ends[tp]:
                got = await consumer.getmany(tp, timeout_ms=1000)
                records.extend(got.get(tp, []))
            builder.add(tp, records, None)
        batch = builder.take()
    finally:
        await consumer.stop()

    sink = StorageSink.from_settings(settings, metrics=PipelineMetrics())
    await sink.start()
    try:
        await sink.on_partitions_assigned(batch.partitions)

        async def no_rejects(rejected: list[tuple[int, str]]) -> None:
            # Called right before every commit (ingest.pipeline.sink.BeforeCommit).
            assert rejected == [], f"the database rejected frames: {rejected}"

        result = await sink.write(batch, no_rejects)
    finally:
        await sink.close()  # the "worker" is gone: its publish never happens
    assert [(a.change, a.rule) for a in result.alerts] == [("raised", "test_hot_pack")]
    return result.alerts[0]


async def test_alert_committed_but_not_published_is_sent_by_the_next_owner(
    env: PipelineEnv, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(HOT_PACK_RULES)
    environ = env.environ(NEV_ALERTS_RULES_FILE=str(rules))
    start = time.time_ns() // 1_000_000 - 3_600_000
    await ps.produce(env.kafka, env.topic, hot_frames(start, [60.0] * 4))

    unsent = await commit_without_publishing(env, environ)
    assert await ps.caught_up(env)  # rows and offsets committed...
    assert await count(env.dsn, f"SELECT count(*) FROM {ps.SCHEMA}.alerts") == 1  # ...the alert...
    outbox_rows = f"SELECT count(*) FROM {ps.SCHEMA}.alerts_outbox"
    assert await count(env.dsn, outbox_rows) == 1  # ...and its message, not yet sent
    assert await ps.read_topic(env.kafka, env.alerts, expect=1, timeout_s=2) == []

    async with ps.serving(env, "resend", NEV_ALERTS_RULES_FILE=str(rules)) as svc:
        published = await ps.read_topic(env.kafka, env.alerts, expect=1)

        async def outbox_empty() -> bool:
            return await count(env.dsn, outbox_rows) == 0

        await ps.until(outbox_empty, timeout_s=30, what="the acknowledged outbox row deleted")

        # The message sent again from the outbox is counted under its entity kind (read from
        # its body), like one sent right after its commit.
        async def counted() -> bool:
            raised = {"kind": "vehicle", "rule": "test_hot_pack", "change": "raised"}
            return svc.metric("nev_ingest_alerts_total", **raised) == 1.0

        await ps.until(counted, timeout_s=30, what="the resent alert counted as a vehicle's")
    log_tail = svc.tail()
    # Exactly the message the dead worker would have sent, once (its frames are not evaluated
    # again: the stored offsets are past them).
    assert [(r.key, r.value) for r in published] == [(HOT_VIN.encode(), unsent.message)], log_tail
    assert unsent.key == HOT_VIN.encode()
    assert await count(env.dsn, f"SELECT count(*) FROM {ps.SCHEMA}.alerts") == 1
