"""The Kafka broker restarted during a run: the workers ride it out (no crash), and every frame,
produced before and after the restart, is stored exactly once. Uses a private broker."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.private_services import PrivateKafka
from tests.integration.traffic import recent_fleet

pytestmark = pytest.mark.integration


async def test_broker_restart_mid_run_loses_and_duplicates_nothing(
    broker: PrivateKafka, broker_env: PipelineEnv
) -> None:
    env = broker_env
    messages = recent_fleet(200, 10)
    half = len(messages) // 2
    expected = ps.Expected.of(messages)

    async with ps.serving(env, "broker") as svc:
        await ps.produce(env.kafka, env.topic, messages[:half], rate=3000)

        async def first_half_stored() -> bool:
            return sum((await ps.stored_offsets(env.dsn, env.group, env.topic)).values()) >= half

        await ps.until(first_half_stored, timeout_s=60, what="the first half stored")
        await asyncio.to_thread(broker.stop)

        async def noticed() -> bool:
            return svc.metric("nev_ingest_worker_kafka_connected") == 0

        await ps.until(noticed, timeout_s=60, what="the workers to notice the broker is gone")
        await asyncio.to_thread(broker.start)
        await ps.produce(env.kafka, env.topic, messages[half:], rate=3000)
        await ps.until(lambda: ps.caught_up(env), timeout_s=180, what="every offset stored")
        await ps.until(lambda: ps.ready(svc), timeout_s=60, what="ready again")

        rows = await ps.stored_rows(env.dsn)
        assert rows == expected.rows  # nothing lost
        assert svc.metric("nev_ingest_duplicate_rows_skipped_total") == 0  # nothing twice
        assert svc.metric("nev_ingest_worker_restarts_total") == 0  # ridden out, no crash
