"""Alert state across a rebalance during a database outage (issue 9, item 3): a partition whose
open alerts could not be reloaded is not processed until they are, so the condition that goes
on after the outage neither raises a second alert nor leaves the first open forever. Uses a
private PostgreSQL cluster (stopped mid-test) and a real consumer joining and leaving the group
to force two rebalances while it is down."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.private_services import PrivateCluster
from tests.integration.traffic import HOT_PACK_RULES, hot_frames

pytestmark = pytest.mark.integration


@pytest.fixture
def env(cluster_env: PipelineEnv) -> PipelineEnv:
    return cluster_env  # the pipeline on this test's own PostgreSQL cluster, to stop


async def alert_rows(dsn: str) -> list[Any]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(
            await conn.fetch(
                f"SELECT opened_at, cleared_at FROM {ps.SCHEMA}.alerts "
                "WHERE rule_id = 'test_hot_pack' ORDER BY id"
            )
        )
    finally:
        await conn.close()


async def test_alert_state_lost_in_an_outage_rebalance_is_restored_before_processing(
    env: PipelineEnv, cluster: PrivateCluster, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(HOT_PACK_RULES)
    start = time.time_ns() // 1_000_000 - 3_600_000
    hot = hot_frames(start, [60.0] * 6)
    async with ps.serving(env, "state", NEV_ALERTS_RULES_FILE=str(rules)) as svc:
        await ps.produce_and_store(env, hot, timeout_s=60, what="the hot frames stored")
        (first,) = await alert_rows(env.dsn)
        assert first["cleared_at"] is None

        await asyncio.to_thread(cluster.stop)
        assigned = svc.metric("nev_ingest_rebalances_total", event="assigned")
        # Another member joins the group and leaves it: two rebalances while the database is
        # down, the worker ends up owning every partition again without their alert state.
        intruder = AIOKafkaConsumer(
            env.topic, bootstrap_servers=env.kafka, group_id=env.group, enable_auto_commit=False
        )
        await intruder.start()
        try:
            await ps.until(
                lambda: intruder_assigned(intruder), timeout_s=60, what="the intruder assigned"
            )
        finally:
            await intruder.stop()

        async def reassigned() -> bool:
            return svc.metric("nev_ingest_rebalances_total", event="assigned") >= assigned + 2

        await ps.until(reassigned, timeout_s=60, what="the worker to get its partitions back")
        # The condition goes on (still hot) and then ends, while and after the database is back.
        await ps.produce(env.kafka, env.topic, hot_frames(hot[-1].t_ms + 10_000, [61.0] * 4))
        await asyncio.to_thread(cluster.start)
        await ps.until(lambda: ps.caught_up(env), timeout_s=90, what="the hot frames stored")
        cool = hot_frames(hot[-1].t_ms + 60_000, [30.0] * 3)
        await ps.produce_and_store(env, cool, timeout_s=60, what="the cool frames stored")

        async def cleared() -> list[Any]:
            found = await alert_rows(env.dsn)
            return found if all(r["cleared_at"] is not None for r in found) else []

        rows = await ps.until(cleared, timeout_s=30, what="the alert cleared")
        published = await ps.read_topic(env.kafka, env.alerts, expect=2)
    assert [r["opened_at"] for r in rows] == [first["opened_at"]]  # one alert, the first one
    changes = [orjson.loads(r.value) for r in published]
    kinds = [c["type"] for c in changes if c["type"] != "updated"]
    assert kinds == ["raised", "cleared"], changes  # no second raise under a new key
    assert len({c["key"] for c in changes}) == 1


async def intruder_assigned(consumer: AIOKafkaConsumer) -> bool:
    await consumer.getmany(timeout_ms=200)
    return bool(consumer.assignment())
