"""Alerts with two shards (``storage.shards``): an alert is written, with its outbox row, to the
shard of its entity's Kafka partition (partition p -> shard p % 2) and to no other, and the
alerts topic carries each alert change once.

Four hot vehicles, one per partition of the 4-partition vehicle topic (two per shard), each
heats past the test rule's threshold and cools below it: one alert raised and cleared per
vehicle."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

import asyncpg
import orjson
import pytest

from devtools.sim.fleet import Message, SimVehicle
from ingest.decoders.encoder import encode_frame
from storage.shards import kafka_partition
from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.private_services import PrivateCluster
from tests.integration.traffic import HOT_PACK_RULES

pytestmark = pytest.mark.integration

PARTITIONS = 4  # of the vehicle topic (make_env)
TEMPS = [60.0, 61.0, 40.0, 40.0]  # raised at 60, cleared below 50 - hysteresis 5


def vin_on(partition: int) -> str:
    """A VIN whose Kafka key the default partitioner puts on ``partition``."""
    for n in range(10_000):
        vin = f"LSHARDHOT{n:08d}"
        if kafka_partition(vin.encode(), PARTITIONS) == partition:
            return vin
    raise AssertionError(f"no VIN for partition {partition}")


def hot(vin: str, start_ms: int) -> list[Message]:
    v = SimVehicle(vin, random.Random(vin), 2016)
    v.mode, v.current, v.probe_offsets = "park", 0.4, [0] * len(v.probe_offsets)
    out = []
    for i, temp in enumerate(TEMPS):
        t = start_ms + i * 10_000
        v.temp = temp
        out.append(Message(t, vin.encode(), encode_frame(v.frame(t)), "realtime"))
    return out


async def alerts_of(dsn: str) -> list[tuple[str, str, bool, int | None]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            f"SELECT entity_id, rule_id, cleared_at IS NOT NULL AS cleared, kafka_partition "
            f"FROM {ps.SCHEMA}.alerts ORDER BY entity_id"
        )
        left = await conn.fetchval(f"SELECT count(*) FROM {ps.SCHEMA}.alerts_outbox")
    finally:
        await conn.close()
    assert left == 0, "every outbox row is deleted once Kafka acknowledged its message"
    return [(r["entity_id"], r["rule_id"], r["cleared"], r["kafka_partition"]) for r in rows]


async def test_alerts_land_on_their_partitions_shard_and_the_topic_once(
    env: PipelineEnv, cluster: PrivateCluster, tmp_path: Path
) -> None:
    shards = await ps.two_shards(env, cluster.dsn)
    rules = tmp_path / "rules.toml"
    rules.write_text(HOT_PACK_RULES)
    vins = {p: vin_on(p) for p in range(PARTITIONS)}
    start = time.time_ns() // 1_000_000 - 3_600_000
    messages = [m for p in range(PARTITIONS) for m in hot(vins[p], start)]

    async with ps.serving(env, "shard-alerts", NEV_ALERTS_RULES_FILE=str(rules)):
        await ps.produce(env.kafka, env.topic, messages)

        async def stored() -> bool:
            ends = await ps.end_offsets(env.kafka, env.topic)
            got: dict[int, int] = {}
            for dsn in shards:
                got.update(await ps.stored_offsets(dsn, env.group, env.topic))
            return all(got.get(p, 0) >= end for p, end in ends.items())

        await ps.until(stored, timeout_s=60, what="every frame stored")
        # raised + cleared per vehicle; read until then, and on for more (none may come)
        published = await ps.read_topic(env.kafka, env.alerts, expect=2 * PARTITIONS)

    for shard, dsn in enumerate(shards):
        want = [(vins[p], "test_hot_pack", True, p) for p in sorted(vins) if p % 2 == shard]
        assert await alerts_of(dsn) == sorted(want), f"shard {shard}"

    bodies = [orjson.loads(r.value) for r in published]
    changes = Counter((b["entity_id"], b["type"]) for b in bodies)
    assert changes == Counter(
        {(vin, change): 1 for vin in vins.values() for change in ("raised", "cleared")}
    ), changes
    assert all(r.key == orjson.loads(r.value)["entity_id"].encode() for r in published)
