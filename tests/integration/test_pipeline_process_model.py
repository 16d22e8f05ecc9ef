"""The process model of ``nev-ingest run`` with real Kafka and PostgreSQL: workers never outlive
their supervisor, and signals reach them only when they can take them."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import orjson
import pytest

from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.traffic import HOT_PACK_RULES, recent_fleet

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


async def test_a_sighup_while_a_worker_starts_does_not_kill_it(env: PipelineEnv) -> None:
    # SIGHUP's default action terminates: a worker that had not yet installed its handler
    # (importing, connecting) was killed by a reload, counted as a crash and backed off.
    svc = ps.Service(env, "hup-at-start")
    try:

        async def started() -> list[int]:
            return svc.worker_pids()

        (worker,) = await ps.until(started, timeout_s=60, what="the worker's pid", every_s=0.01)

        async def hup_until_ready() -> bool:
            # As an operator's reload forwarded to it, from its first moments until it runs.
            svc.proc.send_signal(signal.SIGHUP)
            try:
                os.kill(worker, signal.SIGHUP)
            except ProcessLookupError:
                raise AssertionError(f"the worker died of the SIGHUP:\n{svc.tail()}") from None
            return await ps.ready(svc)

        await ps.until(hup_until_ready, timeout_s=60, what="the service ready", every_s=0.02)
        assert svc.worker_pids() == [worker]
        assert svc.metric("nev_ingest_worker_restarts_total") == 0
    finally:
        code = svc.stop()
    assert code == 0, svc.tail()


async def test_a_worker_restarted_after_a_refused_reload_runs_the_old_rules(
    env: PipelineEnv, tmp_path: Path
) -> None:
    # A rule file refused on SIGHUP left the old rules in force in the running worker, but
    # each worker started after it loaded the broken file and crashed: a crash loop.
    rules = tmp_path / "rules.toml"
    rules.write_text(HOT_PACK_RULES)
    svc = ps.Service(env, "refused", NEV_ALERTS_RULES_FILE=str(rules))
    try:
        await ps.until(lambda: ps.ready(svc), timeout_s=60, what="the service to be ready")
        (first,) = svc.worker_pids()
        rules.write_text(HOT_PACK_RULES.replace("value = 50", "value = "))  # broken TOML
        svc.proc.send_signal(signal.SIGHUP)

        async def refused() -> bool:
            return any(
                r.get("level") == "error" and r.get("msg", "").startswith("SIGHUP")
                for r in svc.logs()
            )

        await ps.until(refused, timeout_s=30, what="the reload refused")
        os.kill(first, signal.SIGKILL)

        async def restarted() -> bool:
            return svc.worker_pids() not in ([], [first]) and await ps.ready(svc)

        await ps.until(restarted, timeout_s=60, what="a restarted worker ready")
        await ps.produce_and_store(env, recent_fleet(5, 4, runaway=True), timeout_s=60)
        raised = await ps.read_topic(env.kafka, env.alerts, expect=1)
        assert {orjson.loads(r.value)["rule_id"] for r in raised} == {"test_hot_pack"}
        assert svc.metric("nev_ingest_worker_restarts_total") == 1  # the kill, no crash loop
    finally:
        code = svc.stop()
    assert code == 0, svc.tail()
