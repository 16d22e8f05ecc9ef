"""A worker restarted while the broker is down waits for the broker (no crash loop), the service
recovers once the broker is back, and the next SIGTERM exits 0. Uses a private broker."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.private_services import PrivateKafka

pytestmark = pytest.mark.integration


async def test_worker_restarted_while_broker_down_recovers_and_stops_cleanly(
    broker: PrivateKafka, broker_env: PipelineEnv
) -> None:
    env = broker_env
    async with ps.serving(env, "restart", tail_lines=120) as svc:
        (victim,) = svc.worker_pids()
        await asyncio.to_thread(broker.stop)
        os.kill(victim, signal.SIGKILL)

        async def restarted_while_down() -> bool:
            return any(r.get("msg") == "worker started" for r in svc.logs()[1:]) and bool(
                [p for p in svc.worker_pids() if p != victim]
            )

        await ps.until(
            restarted_while_down, timeout_s=60, what="a restart while the broker is down"
        )
        await asyncio.to_thread(broker.start)
        await ps.until(
            lambda: ps.ready(svc), timeout_s=120, what="ready again after the broker is back"
        )
        # The restarted worker waited for the broker instead of crash-looping: the kill was
        # the only restart.
        assert svc.metric("nev_ingest_worker_restarts_total") == 1
        assert any(str(r.get("msg", "")).startswith("Kafka does not answer") for r in svc.logs())
