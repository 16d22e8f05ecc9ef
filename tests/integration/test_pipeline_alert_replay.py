"""The short replay of the last rule window on partition assignment (issue 9, item 3): a
windowed rule whose window spans a partition's move from one worker to another still fires on
the first frame after the move, as it would have without the move. Two services share one
consumer group; the first stops, so its partitions (and the vehicle's history) move."""

from __future__ import annotations

import random
import time
from pathlib import Path

import asyncpg
import pytest
from aiokafka.partitioner import DefaultPartitioner

from devtools.sim.fleet import Message, SimVehicle
from ingest.decoders.encoder import encode_frame
from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.traffic import HOT_VIN, hot_frames

pytestmark = pytest.mark.integration

RULES = """
version = 1

[[rule]]
id = "test_temp_drop"
kind = "drop"
severity = "major"
title = "Pack temperature fell by more than 25 % within 35 s (test rule)"
source = "tests/integration/test_pipeline_alert_replay.py"
field = "max_temp_c"
pct = 25
window_s = 35
max_gap_s = 35
"""


async def opened(dsn: str) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            f"SELECT (extract(epoch FROM opened_at) * 1000)::bigint AS ms FROM {ps.SCHEMA}.alerts "
            "WHERE rule_id = 'test_temp_drop'"
        )
    finally:
        await conn.close()
    return [r["ms"] for r in rows]


async def test_windowed_rule_fires_across_a_partition_move(
    env: PipelineEnv, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    start = time.time_ns() // 1_000_000 - 3_600_000
    # 60 °C at 0, 10, 20 s (stored by the first owner), 40 °C at 30 s (read by the second):
    # a fall of 33 % from the highest value of the last 35 s, which only the replay knows.
    messages = hot_frames(start, [60.0, 60.0, 60.0, 40.0])
    first = ps.Service(env, "first", NEV_ALERTS_RULES_FILE=str(rules))
    second: ps.Service | None = None
    try:
        await ps.until(lambda: ps.ready(first), timeout_s=60, what="the first service to be ready")
        await ps.produce(env.kafka, env.topic, messages[:3])
        await ps.until(lambda: ps.caught_up(env), timeout_s=60, what="the history stored")
        second = ps.Service(env, "second", NEV_ALERTS_RULES_FILE=str(rules))
        await ps.until(lambda: ps.ready(second), timeout_s=60, what="the second service to join")
        assert first.stop() == 0, first.tail()  # every partition moves to the second
        await ps.produce(env.kafka, env.topic, messages[3:])
        await ps.until(lambda: ps.caught_up(env), timeout_s=60, what="the fall stored")
        got = await ps.until(lambda: opened(env.dsn), timeout_s=30, what="the drop alert")
        # Opened on the first frame after the move (frame times have whole seconds).
        assert got == [messages[3].t_ms // 1000 * 1000], second.tail()
        replayed = [r for r in second.logs() if r.get("msg") == "alert state restored"]
        assert any(r.get("replayed_frames", 0) >= 3 for r in replayed), second.tail()
    finally:
        code = second.stop() if second is not None else 0
        first.kill()
    assert code == 0


def neighbour_frame(t_ms: int, partitions: int) -> Message:
    """A frame of another vehicle on HOT_VIN's partition (the producer's default partitioner)."""
    part = DefaultPartitioner()
    ids = list(range(partitions))
    hot = part(HOT_VIN.encode(), ids, ids)
    vin = next(
        v for v in (f"LNEVNEXT{k:09d}" for k in range(1000)) if part(v.encode(), ids, ids) == hot
    )
    v = SimVehicle(vin, random.Random(3), 2016)
    v.step(10)  # a first step sets the vehicle's current
    return Message(t_ms, vin.encode(), encode_frame(v.frame(t_ms)), "realtime")


async def test_the_replay_finds_entities_merged_after_their_batch(
    env: PipelineEnv, tmp_path: Path
) -> None:
    # storage.latest_interval_ms > 0: the hot vehicle's frames come after its partition's
    # first batch, so they wait in the pending set and reach latest_state only with the merge
    # at the graceful stop - which must also record their partition, or the second owner's
    # replay cannot find the vehicle and the drop goes unseen (issue 12).
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    start = time.time_ns() // 1_000_000 - 3_600_000
    messages = hot_frames(start, [60.0, 60.0, 60.0, 40.0])
    lag = "600000"
    first = ps.Service(
        env, "first", NEV_ALERTS_RULES_FILE=str(rules), NEV_STORAGE_LATEST_INTERVAL_MS=lag
    )
    second: ps.Service | None = None
    try:
        await ps.until(lambda: ps.ready(first), timeout_s=60, what="the first service to be ready")
        partitions = len(await ps.end_offsets(env.kafka, env.topic))
        await ps.produce(env.kafka, env.topic, [neighbour_frame(start - 1000, partitions)])
        await ps.until(lambda: ps.caught_up(env), timeout_s=60, what="the partition's first batch")
        await ps.produce(env.kafka, env.topic, messages[:3])
        await ps.until(lambda: ps.caught_up(env), timeout_s=60, what="the history stored")
        second = ps.Service(
            env, "second", NEV_ALERTS_RULES_FILE=str(rules), NEV_STORAGE_LATEST_INTERVAL_MS=lag
        )
        await ps.until(lambda: ps.ready(second), timeout_s=60, what="the second service to join")
        assert first.stop() == 0, first.tail()  # every partition moves to the second
        await ps.produce(env.kafka, env.topic, messages[3:])
        await ps.until(lambda: ps.caught_up(env), timeout_s=60, what="the fall stored")
        got = await ps.until(lambda: opened(env.dsn), timeout_s=30, what="the drop alert")
        assert got == [messages[3].t_ms // 1000 * 1000], second.tail()
    finally:
        code = second.stop() if second is not None else 0
        first.kill()
    assert code == 0
