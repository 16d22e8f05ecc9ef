"""The readiness and lag gauges while the workers cannot reach Kafka (a private broker, stopped):
a worker (re)started meanwhile is reported as waiting for Kafka, not as stalled or without a
database, and a running worker's lag seconds do not freeze at their last value."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest

from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.private_services import PrivateKafka
from tests.integration.traffic import recent_fleet

pytestmark = pytest.mark.integration


async def test_a_worker_waiting_for_kafka_says_so_and_only_that(
    broker: PrivateKafka, broker_env: PipelineEnv
) -> None:
    env = broker_env
    async with ps.serving(env, "waiting", tail_lines=120) as svc:
        (victim,) = svc.worker_pids()
        await asyncio.to_thread(broker.stop)
        os.kill(victim, signal.SIGKILL)  # its successor starts while no broker answers

        seen: list[Any] = []

        async def waiting_for_kafka() -> bool:
            fresh = [p for p in svc.worker_pids() if p != victim]
            seen[:] = [w for w in svc.readyz_body()["workers"] if w["pid"] in fresh]
            # Past its database start (the sink's pools open before the Kafka clients):
            # the one thing /readyz should name is Kafka.
            return any(w["problems"] == ["not connected to Kafka"] for w in seen)

        try:
            await ps.until(waiting_for_kafka, timeout_s=60, what="the restarted worker to wait")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; /readyz said {seen}") from None
        assert any(str(r.get("msg", "")).startswith("Kafka does not answer") for r in svc.logs())
        await asyncio.to_thread(broker.start)
        await ps.until(lambda: ps.ready(svc), timeout_s=120, what="ready once the broker is back")


async def test_lag_seconds_grow_while_the_end_offsets_cannot_be_read(
    broker: PrivateKafka, broker_env: PipelineEnv
) -> None:
    env = broker_env
    messages = recent_fleet(40, 2)
    labels = {"consumergroup": env.group, "topic": env.topic}
    async with ps.serving(env, "cut-off", tail_lines=120) as svc:
        await ps.produce(env.kafka, env.topic, messages, rate=3000)
        await ps.until(lambda: ps.caught_up(env), timeout_s=60, what="every offset stored")

        async def caught_up_gauges() -> bool:
            try:
                return (
                    svc.metric("kafka_consumergroup_current_offset", **labels) == len(messages)
                    and svc.metric("kafka_consumergroup_lag", **labels) == 0
                    and svc.metric("kafka_consumergroup_lag_seconds", **labels) == 0
                )
            except AssertionError:
                return False  # no lag series yet

        await ps.until(caught_up_gauges, timeout_s=30, what="the gauges to show no lag")
        await asyncio.to_thread(broker.stop)

        async def cut_off() -> bool:
            return svc.metric("nev_ingest_worker_kafka_connected") == 0

        await ps.until(cut_off, timeout_s=60, what="the worker to notice the broker is gone")

        async def growing() -> bool:
            # Every partition of the topic has a commit: each counts the time since it.
            return all(
                value > 0
                for name, value in svc.metrics().items()
                if name.startswith("kafka_consumergroup_lag_seconds{")
                and f'topic="{env.topic}"' in name
            )

        # Frozen at 0 (caught up, as last read), the lag alerts would see nothing while the
        # frames pile up in Kafka.
        await ps.until(growing, timeout_s=30, what="lag seconds to count from the last commit")
        await asyncio.to_thread(broker.start)
        await ps.until(caught_up_gauges, timeout_s=120, what="no lag once the broker is back")
