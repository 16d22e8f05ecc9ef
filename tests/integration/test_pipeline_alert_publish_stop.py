"""A stop while the alerts topic cannot be produced to finishes within the shutdown deadline, and
the alert message it could not send is sent later from the outbox (issue 11 fixes, item 2).

The alert publish used to retry until the broker took it, out of reach of the writer's
``abandon``: SIGTERM (or a revoke) waited for Kafka, until the supervisor killed the worker.
Kafka refusing the alerts is made deterministic by deleting the alerts topic under the running
service (the broker creates no topics): the raw topic and the database still work, so the batch
commits with its alert and outbox row, and only the publish is stuck."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.traffic import HOT_PACK_RULES, HOT_VIN, hot_frames

pytestmark = pytest.mark.integration

SHUTDOWN_S = 3  # pipeline.shutdown_timeout_s of the stopped service


async def count(dsn: str, sql: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def delete_topic(kafka: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()


async def test_a_stop_while_alerts_cannot_be_produced_leaves_them_to_the_outbox(
    env: PipelineEnv, tmp_path: Path, unique_topic: Callable[..., str]
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(HOT_PACK_RULES)
    outbox_rows = f"SELECT count(*) FROM {ps.SCHEMA}.alerts_outbox"
    start = time.time_ns() // 1_000_000 - 3_600_000
    svc = ps.Service(
        env,
        "stuck",
        NEV_ALERTS_RULES_FILE=str(rules),
        NEV_PIPELINE_SHUTDOWN_TIMEOUT_S=str(SHUTDOWN_S),
    )
    try:
        await ps.until(lambda: ps.ready(svc), timeout_s=60, what="the service ready")
        await delete_topic(env.kafka, env.alerts)
        await ps.produce_and_store(env, hot_frames(start, [60.0] * 4), timeout_s=60)

        async def publishing() -> bool:  # committed with its message, which cannot go out
            return await count(env.dsn, outbox_rows) == 1

        await ps.until(publishing, timeout_s=30, what="the alert committed to the outbox")
        # The worker's deadline, then leaving the group and closing the clients (each bounded
        # by 5 s): well before the supervisor's own deadline (shutdown + 20 s) kills it.
        code = await asyncio.to_thread(svc.stop, SHUTDOWN_S + 15)
    finally:
        svc.kill()
    messages = [r.get("msg", "") for r in svc.logs()]
    assert code == 0, svc.tail()
    assert not any("did not stop" in m for m in messages), svc.tail()
    assert any("left in the outbox" in m for m in messages), svc.tail()
    assert await count(env.dsn, outbox_rows) == 1  # not acknowledged: kept
    conn = await asyncpg.connect(env.dsn)
    try:
        kept = await conn.fetchrow(f"SELECT msg_key, msg_value FROM {ps.SCHEMA}.alerts_outbox")
    finally:
        await conn.close()
    assert await count(env.dsn, f"SELECT count(*) FROM {ps.SCHEMA}.alerts") == 1

    # Kafka takes alerts again (here: on a topic that exists): the next owner sends it, once.
    alerts = unique_topic(1, "alerts2")
    async with ps.serving(
        env, "resend", NEV_ALERTS_RULES_FILE=str(rules), NEV_KAFKA_TOPIC_ALERTS=alerts
    ):
        published = await ps.read_topic(env.kafka, alerts, expect=1)

        async def outbox_empty() -> bool:
            return await count(env.dsn, outbox_rows) == 0

        await ps.until(outbox_empty, timeout_s=30, what="the acknowledged outbox row deleted")
    assert [(r.key, r.value) for r in published] == [(HOT_VIN.encode(), kept["msg_value"])]
