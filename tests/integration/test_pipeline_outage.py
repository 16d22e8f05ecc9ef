"""PostgreSQL stopped for a while during a run, then started again: the consumer pauses its
partitions (the metric shows it, /readyz says so), memory stays bounded, and after the restart
it resumes; no frame is lost or stored twice. Uses a private cluster, not the shared one."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.private_services import PrivateCluster
from tests.integration.traffic import recent_fleet

pytestmark = pytest.mark.integration

MAX_IN_FLIGHT = 4000


@pytest.fixture
def env(cluster_env: PipelineEnv) -> PipelineEnv:
    return cluster_env  # the pipeline on this test's own PostgreSQL cluster, to stop


async def test_database_outage_pauses_then_resumes_without_loss(
    env: PipelineEnv, cluster: PrivateCluster
) -> None:
    # 18 s of traffic at 1,500 frames/s. The outage must be seen (paused, /readyz, 3 x the bound
    # piled up in Kafka, the lag gauges) while it still flows: with 12 s of traffic that left
    # ~1.6 s after the pile-up, which a loaded machine's lag refresh could miss.
    messages = recent_fleet(300, 15)
    expected = ps.Expected.of(messages)
    total = len(messages)

    async with ps.serving(
        env,
        "outage",
        NEV_PIPELINE_MAX_IN_FLIGHT_FRAMES=str(MAX_IN_FLIGHT),
        NEV_PIPELINE_BATCH_MAX_FRAMES="1000",
    ) as svc:
        producing = asyncio.create_task(ps.produce(env.kafka, env.topic, messages, rate=1500))

        async def some_stored() -> int:
            n = sum((await ps.stored_offsets(env.dsn, env.group, env.topic)).values())
            return n if n >= total // 5 else 0

        before = await ps.until(some_stored, timeout_s=60, what="a fifth of the frames stored")
        await asyncio.to_thread(cluster.stop)

        async def paused() -> float:
            return svc.metric("nev_ingest_paused_partitions")

        assert await ps.until(paused, timeout_s=60, what="the partitions to be paused") == (
            env.raw_partitions
        )
        await ps.until(
            lambda: asyncio.to_thread(lambda: svc.readyz() == 503),
            timeout_s=30,
            what="/readyz to report the database",
        )

        # The outage lasts while the gateways keep producing: frames pile up in Kafka (not in
        # the worker, which holds no more than its bound), the paused partitions stay paused.
        async def piled_up() -> bool:
            ends = sum((await ps.end_offsets(env.kafka, env.topic)).values())
            return ends - before >= 3 * MAX_IN_FLIGHT

        await ps.until(piled_up, timeout_s=60, what="frames to pile up in Kafka during the outage")

        async def lag_shows_it() -> bool:
            return (
                svc.metric("kafka_consumergroup_lag", consumergroup=env.group) >= 3 * MAX_IN_FLIGHT
                and svc.metric("kafka_consumergroup_lag_seconds", consumergroup=env.group) > 0
            )

        await ps.until(lag_shows_it, timeout_s=30, what="the lag metrics to show the backlog")
        assert svc.metric("nev_ingest_paused_partitions") == env.raw_partitions
        assert svc.metric("nev_ingest_in_flight_frames") <= MAX_IN_FLIGHT
        assert not producing.done(), "the outage must happen while traffic flows"

        await asyncio.to_thread(cluster.start)

        async def resumed() -> bool:
            return (
                svc.metric("nev_ingest_paused_partitions") == 0
                and await ps.caught_up(env)
                and svc.metric("kafka_consumergroup_lag", consumergroup=env.group) == 0
            )

        await producing
        await ps.until(resumed, timeout_s=120, what="resume and store everything")
        assert svc.metric("nev_ingest_write_retries_total", stage="database") > 0

        rows = await ps.stored_rows(env.dsn)
        assert rows == expected.rows  # nothing lost
        assert svc.metric("nev_ingest_duplicate_rows_skipped_total") == 0  # nothing twice
