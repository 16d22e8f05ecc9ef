"""``nev_ingest_worker_wait_seconds_total{cause}``: where a worker's consume loop waits. Every
cause is exported from 0; a worker whose writes stall (a lock held by the test on the offsets
table, as in test_pipeline_stall.py) fills its in-flight bound and its waits for room grow (the
loop idle: a room wait under a held lock has nothing to run); the fetches count under ``poll``."""

from __future__ import annotations

import asyncpg
import pytest

from devtools.sim import promtext
from ingest.pipeline.metrics import WAIT_CAUSES
from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.traffic import recent_fleet

pytestmark = pytest.mark.integration

WAIT = "nev_ingest_worker_wait_seconds_total"
BOUND = 200  # pipeline.max_in_flight_frames: a few of the fleet's frames fill it


async def test_a_stalled_write_path_shows_as_waits_for_room(env: PipelineEnv) -> None:
    messages = recent_fleet(40, 3)
    assert len(messages) > 2 * BOUND
    expected = ps.Expected.of(messages)

    async with ps.serving(
        env,
        "waits",
        NEV_PIPELINE_MAX_IN_FLIGHT_FRAMES=str(BOUND),
        NEV_PIPELINE_BATCH_MAX_FRAMES=str(BOUND // 2),
    ) as svc:
        # From 0, before any frame: a rate() over a cause not yet seen is 0, not absent.
        assert set(promtext.by_label(svc.metrics(), WAIT, "cause")) == set(WAIT_CAUSES)
        room_before = svc.metric(WAIT, cause="room")
        lock = await asyncpg.connect(env.dsn)
        try:
            tx = lock.transaction()
            await tx.start()
            await lock.execute(f"LOCK TABLE {ps.SCHEMA}.consumer_offsets IN EXCLUSIVE MODE")
            await ps.produce(env.kafka, env.topic, messages)
            await ps.until_write_waits_on_lock(lock)

            # The bound reached with nothing committed: the loop waits for room, each wait
            # counted when it ends (at most a poll timeout, paused or not).
            async def room_grew() -> bool:
                return svc.metric(WAIT, cause="room") > room_before

            await ps.until(room_grew, timeout_s=60, what="the waits for room to be counted")
            await tx.rollback()
        finally:
            await lock.close()

        await ps.until(lambda: ps.caught_up(env), timeout_s=120, what="every offset stored")
        assert await ps.stored_rows(env.dsn) == expected.rows
        # Fetches were waited for (caught up: a poll with nothing to fetch is idle). The lanes'
        # turns are not asserted: only their idle part counts, which may be none at all.
        assert svc.metric(WAIT, cause="poll") > 0
