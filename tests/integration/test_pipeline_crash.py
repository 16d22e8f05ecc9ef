"""kill -9 of a worker in the middle of a run: the supervisor restarts it, and every produced
frame ends up stored exactly once (keys compared); dead letters are at least once."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter

import pytest

from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.traffic import recent_fleet

pytestmark = pytest.mark.integration


async def test_kill_9_mid_run_then_restart_stores_every_frame_once(env: PipelineEnv) -> None:
    messages = recent_fleet(300, 10, bad_ratio=0.01)
    expected = ps.Expected.of(messages)
    total = len(messages)

    # Small batches: many transactions in flight over the run, so the kill lands inside one.
    async with ps.serving(
        env, "crash", NEV_PIPELINE_BATCH_MAX_FRAMES="300", **ps.SHORT_SESSION
    ) as svc:
        (victim,) = svc.worker_pids()
        producing = asyncio.create_task(ps.produce(env.kafka, env.topic, messages, rate=3000))

        async def some_stored() -> int:
            n = sum((await ps.stored_offsets(env.dsn, env.group, env.topic)).values())
            return n if n >= total // 5 else 0

        at_kill = await ps.until(some_stored, timeout_s=60, what="a fifth of the frames stored")
        os.kill(victim, signal.SIGKILL)
        assert at_kill < total and not producing.done(), "the kill must land mid-run"

        async def restarted() -> bool:
            pids = svc.worker_pids()
            return len(pids) == 1 and pids[0] != victim

        await ps.until(restarted, timeout_s=30, what="the supervisor to restart the worker")
        await producing
        await ps.until(
            lambda: ps.caught_up(env),
            timeout_s=ps.KILLED_SESSION_S + 120,
            what="every offset stored (the dead member's session expired first)",
        )

        rows = await ps.stored_rows(env.dsn)
        assert rows == expected.rows  # nothing lost
        # Nothing twice: the tables' keys would hide a second copy, so ask the writer whether a
        # replayed frame ever reached them (it would, had the restart not sought to the
        # offsets stored with the rows).
        assert svc.metric("nev_ingest_duplicate_rows_skipped_total") == 0
        assert svc.metric("nev_ingest_worker_restarts_total") == 1
        crashed = [r for r in svc.logs() if r.get("msg", "").startswith("worker crashed")]
        assert crashed and crashed[0]["worker_pid"] == victim
        assert "SIGKILL" in crashed[0]["msg"]

        # Dead letters: at least once (a batch killed after its DLQ send is sent again).
        dead = await ps.read_topic(env.kafka, env.dlq, expect=sum(expected.bad.values()))
        by_source = {
            (ps.header(r.headers, "source.partition"), ps.header(r.headers, "source.offset")): (
                ps.header(r.headers, "error.reason") or b""
            ).decode()
            for r in dead
        }
        assert Counter(by_source.values()) == expected.bad
