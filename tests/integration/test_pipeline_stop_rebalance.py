"""A graceful stop while the group rebalances: the workers stop within the shutdown deadline and
exit 0, though the rebalance waits for a member that died without leaving.

aiokafka's poll waits for the new assignment whatever its timeout, and the group waits for the
dead member until its session times out: a stop that waited with it outlived the supervisor's
deadline (``pipeline.shutdown_timeout_s`` + 20 s) and the workers were SIGKILLed (exit 1)."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv

pytestmark = pytest.mark.integration


def _revokes(logs: list[dict[str, Any]], pid: int) -> int:
    return sum(
        1 for r in logs if r.get("pid") == pid and r.get("msg", "").startswith("partitions revoked")
    )


async def test_a_stop_during_a_rebalance_held_by_a_dead_member_exits_0(env: PipelineEnv) -> None:
    # The killed worker's membership outlives the stop by far: its session lasts 45 s, the
    # supervisor kills the workers 21 s after the SIGTERM (shutdown deadline 1 s + 20 s).
    svc = ps.Service(
        env,
        "stop-rebalance",
        workers=2,
        NEV_PIPELINE_SHUTDOWN_TIMEOUT_S="1",
        NEV_KAFKA_SESSION_TIMEOUT_MS="45000",
    )
    try:
        await ps.until(lambda: ps.ready(svc), timeout_s=60, what="the service to be ready")
        victim, survivor = svc.worker_pids()

        async def both_own_partitions() -> bool:
            owners = {
                r.get("pid")
                for r in svc.logs()
                if r.get("msg") == "partitions assigned" and r.get("partitions")
            }
            return {victim, survivor} <= owners

        # The survivor must own partitions when the victim dies: the restarted worker's join
        # then revokes them, and the rebalance waits for the dead member.
        await ps.until(both_own_partitions, timeout_s=60, what="both workers to own partitions")
        before = _revokes(svc.logs(), survivor)
        os.kill(victim, signal.SIGKILL)

        async def rebalancing() -> bool:
            # The restarted worker joined, and the survivor gave up its partitions for the
            # rebalance that this join began, which now waits for the dead member.
            logs = svc.logs()
            pids = svc.worker_pids()
            joined = any(
                r.get("pid") not in (victim, survivor) and r.get("msg", "") == "consumer started"
                for r in logs
            )
            return len(pids) == 2 and joined and _revokes(logs, survivor) > before

        await ps.until(rebalancing, timeout_s=60, what="a rebalance waiting for the dead member")
    except BaseException:
        svc.kill()
        raise
    code = svc.stop()
    assert code == 0, svc.tail()
    assert not [r for r in svc.logs() if r.get("msg", "").startswith("worker did not stop")], (
        svc.tail()
    )
