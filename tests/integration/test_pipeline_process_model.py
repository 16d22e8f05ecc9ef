"""The process model of ``nev-ingest run`` with real Kafka and PostgreSQL: workers never outlive
their supervisor, and signals reach them only when they can take them."""

from __future__ import annotations

import os
import signal

import pytest

from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv

pytestmark = pytest.mark.integration


async def test_a_worker_stops_when_its_supervisor_is_killed(env: PipelineEnv) -> None:
    # SIGKILL (or the OOM killer) gives the supervisor no chance to stop its workers; they
    # used to go on consuming with nobody to restart, stop or scrape them.
    svc = ps.Service(env, "orphan")
    try:
        await ps.until(lambda: ps.ready(svc), timeout_s=60, what="the service to be ready")
        (worker,) = svc.worker_pids()
        svc.proc.kill()
        svc.proc.wait(30)

        async def gone() -> bool:
            return not ps.alive(worker)

        await ps.until(gone, timeout_s=60, what="the worker to stop after its supervisor")
        stopped = [r for r in svc.logs() if r.get("pid") == worker]
        assert any(r.get("msg") == "worker stopped" for r in stopped), svc.tail()
    finally:
        svc.kill()
        for pid in svc.worker_pids():
            os.kill(pid, signal.SIGKILL)
