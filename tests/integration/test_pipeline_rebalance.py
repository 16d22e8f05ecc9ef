"""Rebalance: a second service (worker) joins the group during a run and leaves again; the
partitions move twice, and every frame is stored exactly once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from devtools.sim.fleet import FleetOptions, Message, fleet_messages
from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv

pytestmark = pytest.mark.integration


async def test_worker_joins_and_leaves_without_loss_or_duplicates(env: PipelineEnv) -> None:
    now_ms = time.time_ns() // 1_000_000
    # Traffic flows until the partitions have moved there and back (not for a fixed time, which
    # a loaded machine can outlast while a worker starts): at most 2 h of a 300-vehicle fleet.
    fleet = FleetOptions(vehicles=300, minutes=120, bad_ratio=0.0, runaway=False, end_ms=now_ms)
    sent: list[Message] = []
    stop = asyncio.Event()

    def flowing() -> Iterator[Message]:
        for message in fleet_messages(fleet):
            if stop.is_set():
                return
            sent.append(message)
            yield message

    first = ps.Service(env, "first", NEV_PIPELINE_BATCH_MAX_FRAMES="500")
    second: ps.Service | None = None
    try:
        await ps.until(lambda: ps.ready(first), timeout_s=60, what="the first service to be ready")
        producing = asyncio.create_task(ps.produce(env.kafka, env.topic, flowing(), rate=2000))

        async def some_stored() -> int:
            n = sum((await ps.stored_offsets(env.dsn, env.group, env.topic)).values())
            return n if n >= 3000 else 0

        await ps.until(some_stored, timeout_s=60, what="3,000 frames stored")
        second = ps.Service(env, "second", NEV_PIPELINE_BATCH_MAX_FRAMES="500")

        async def second_works() -> bool:
            try:
                return (
                    second.metric("nev_ingest_assigned_partitions") > 0
                    and second.metric("nev_ingest_frames_written_total") > 0
                )
            except AssertionError:
                return False  # not serving metrics yet

        await ps.until(second_works, timeout_s=90, what="the joining worker to take partitions")
        assert first.metric("nev_ingest_assigned_partitions") < env.raw_partitions  # gave some
        assert not producing.done(), "the join must happen while traffic flows"
        assert second.metric("nev_ingest_duplicate_rows_skipped_total") == 0
        assert second.stop() == 0, (
            second.tail()
        )  # leaves the group: its partitions go back to the first

        async def first_has_all() -> bool:
            return first.metric("nev_ingest_assigned_partitions") == env.raw_partitions

        await ps.until(first_has_all, timeout_s=90, what="the partitions to come back")
        assert not producing.done(), "the partitions must come back while traffic flows"
        stop.set()
        await producing
        await ps.until(lambda: ps.caught_up(env), timeout_s=120, what="every offset stored")

        rows = await ps.stored_rows(env.dsn)
        assert rows == ps.Expected.of(sent).rows  # nothing lost
        assert first.metric("nev_ingest_duplicate_rows_skipped_total") == 0  # nothing twice
        assert first.metric("nev_ingest_rebalances_total", event="revoked") >= 2
    finally:
        stop.set()
        code = first.stop()
        log_tail = first.tail()
        if second is not None and second.proc.poll() is None:
            second.stop()
    assert code == 0, log_tail
