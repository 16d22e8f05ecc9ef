"""The worker heartbeat (/readyz's "consumer loop stalled", the NevIngestWorkerStalled alert) is
stamped by the consume loop itself: with housekeeping refreshing its gauges only every minute,
the heartbeat still moves on while the loop turns."""

from __future__ import annotations

import pytest

from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv

pytestmark = pytest.mark.integration

HEARTBEAT = "nev_ingest_worker_heartbeat_timestamp_seconds"


async def test_heartbeat_moves_with_the_loop_not_the_lag_interval(env: PipelineEnv) -> None:
    async with ps.serving(
        env, "heartbeat", NEV_PIPELINE_LAG_INTERVAL_S="120", NEV_PIPELINE_STALL_AFTER_S="600"
    ) as svc:
        first = svc.metric(HEARTBEAT)

        async def moved_on() -> float:
            value = svc.metric(HEARTBEAT)
            return value if value > first + 2 else 0.0

        # An idle loop turns every poll (0.5 s); housekeeping would not write again for 120 s.
        await ps.until(moved_on, timeout_s=30, what="the heartbeat to move on")
