"""A partition that comes back to a worker which owned it before: its lag gauges follow the offset
stored in the database at the new assignment, not the worker's own commit from the first
ownership. A second service joins, writes part of the traffic, and leaves; once every offset is
stored, the first service (which owns every partition again, with no traffic left to commit)
reports no lag and no backlog."""

from __future__ import annotations

import pytest

from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.traffic import recent_fleet

pytestmark = pytest.mark.integration


async def test_a_returning_partition_reports_the_stored_offset(env: PipelineEnv) -> None:
    messages = recent_fleet(80, 3)
    half = len(messages) // 2
    first = ps.Service(env, "first")
    second: ps.Service | None = None
    try:
        await ps.until(lambda: ps.ready(first), timeout_s=60, what="the first service ready")
        await ps.produce(env.kafka, env.topic, messages[:half], rate=3000)
        await ps.until(lambda: ps.caught_up(env), timeout_s=60, what="the first half stored")

        second = ps.Service(env, "second")

        async def shared() -> bool:
            try:
                return second.metric("nev_ingest_assigned_partitions") > 0 and (
                    first.metric("nev_ingest_assigned_partitions") < env.raw_partitions
                )
            except AssertionError:
                return False  # not serving metrics yet

        await ps.until(shared, timeout_s=90, what="the second service to take partitions")
        await ps.until(lambda: ps.ready(second), timeout_s=60, what="the second service ready")
        # The second half is stored by both: the second service's partitions move past the
        # offsets the first committed before it gave them up.
        await ps.produce(env.kafka, env.topic, messages[half:], rate=3000)
        await ps.until(lambda: ps.caught_up(env), timeout_s=60, what="the second half stored")
        assert second.metric("nev_ingest_frames_written_total") > 0
        assert second.stop() == 0, second.tail()

        async def all_back() -> bool:
            return first.metric("nev_ingest_assigned_partitions") == env.raw_partitions

        await ps.until(all_back, timeout_s=90, what="the partitions to come back")

        ends = sum((await ps.end_offsets(env.kafka, env.topic)).values())
        labels = {"consumergroup": env.group, "topic": env.topic}

        async def no_lag() -> bool:
            # The gauges of the new assignment (a revoke zeroes them first): every partition's
            # offset as stored, and so no lag and no backlog.
            return (
                first.metric("kafka_consumergroup_current_offset", **labels) == ends
                and first.metric("kafka_consumergroup_lag", **labels) == 0
                and first.metric("nev_ingest_worker_backlog_frames") == 0
            )

        # Nothing is left to commit: with the first ownership's commits the gauges would stay
        # at the offsets of then and count what the second service wrote as lag, for good.
        await ps.until(no_lag, timeout_s=30, what="no lag on the returned partitions")
    finally:
        if second is not None:
            second.kill()
        code = first.stop()
        tail = first.tail()
    assert code == 0, tail
