"""kill -9 of a worker while it consumes chargers, packs and T/CEC pushes: the supervisor
restarts it, and every row of every produced record is stored exactly once, in every table of
the new kinds (keys compared, and no replayed row ever reached a table)."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from devtools.sim import promtext
from devtools.sim.envelope import china_time
from tests.integration import kinds_frames as kf
from tests.integration import kinds_support as ks
from tests.integration import pipeline_support as ps
from tests.integration.kinds_support import Out
from tests.integration.pipeline_support import PipelineEnv
from tests.kinds_traffic import (
    CHARGE,
    OPERATOR,
    charge_status,
    connector,
    pack_code,
    received,
    tcec_headers,
)

pytestmark = pytest.mark.integration


def _traffic(env: PipelineEnv, t0: int) -> list[Out]:
    """20 connectors' frames and 30 packs' frames every 10 s, 8 connectors' T/CEC progress
    pushes every 20 s, over 6 minutes, in time order."""
    recs: list[tuple[int, Out]] = []
    for step in range(36):
        ms = t0 + step * 10_000
        at = china_time(ms)
        for c in range(20):
            cid = connector(c)
            output = (400.0, 125.5, 50.2, round(0.14 * step, 3), 35)
            raw = kf.charger_realtime(at, cid, output=output)[0]
            recs.append((ms, Out(env.charger, f"{OPERATOR}:{cid}".encode(), raw, received(ms))))
        for p in range(30):
            code = pack_code(p)
            raw = kf.pack_realtime(at, code, soc=min(100, 50 + step))[0]
            recs.append((ms, Out(env.battery, code.encode(), raw, received(ms))))
        if step % 2 == 0:
            for c in range(50, 58):
                cid = connector(c)
                value = charge_status(ms, cid, c, t0, 0.28 * step, 40 + step / 2)
                key = f"{OPERATOR}:{cid}".encode()
                recs.append((ms, Out(env.tcec, key, value, tcec_headers(CHARGE, ms))))
    return [r for _, r in sorted(recs, key=lambda x: x[0])]


async def _stored_total(env: PipelineEnv) -> int:
    total = 0
    for topic in env.raw_topics:
        total += sum((await ps.stored_offsets(env.dsn, env.group, topic)).values())
    return total


async def test_kill_9_mid_run_stores_every_charger_and_pack_row_once(env: PipelineEnv) -> None:
    t0 = (time.time_ns() // 10**9 - 10 * 60) * 1000
    records = _traffic(env, t0)
    want = ks.expected(env, records)
    assert not want.bad
    total = len(records)

    async with ps.serving(
        env, "kinds-crash", NEV_PIPELINE_BATCH_MAX_FRAMES="200", **ps.SHORT_SESSION
    ) as svc:
        (victim,) = svc.worker_pids()
        producing = asyncio.create_task(ks.produce_records(env.kafka, records, rate=400))

        async def some_stored() -> int:
            n = await _stored_total(env)
            return n if n >= total // 5 else 0

        at_kill = await ps.until(some_stored, timeout_s=60, what="a fifth of the records stored")
        os.kill(victim, signal.SIGKILL)
        assert at_kill < total and not producing.done(), "the kill must land mid-run"

        async def restarted() -> bool:
            pids = svc.worker_pids()
            return len(pids) == 1 and pids[0] != victim

        await ps.until(restarted, timeout_s=30, what="the supervisor to restart the worker")
        assert await producing == total
        await ps.until(
            lambda: ps.caught_up(env, env.raw_topics),
            timeout_s=ps.KILLED_SESSION_S + 120,
            what="every offset stored (the dead member's session expired first)",
        )

        assert await ks.stored(env.dsn) == want.rows  # nothing lost, nothing twice
        # A replayed row would have been skipped as a duplicate or refused by a key, and
        # the refusal split the batch and dead-lettered the frame: none of that happened.
        assert svc.metric("nev_ingest_duplicate_rows_skipped_total") == 0
        assert svc.metric("nev_ingest_bisect_loads_total") == 0
        assert promtext.total(svc.metrics(), "nev_ingest_frames_dead_lettered_total") == 0
        assert svc.metric("nev_ingest_worker_restarts_total") == 1
