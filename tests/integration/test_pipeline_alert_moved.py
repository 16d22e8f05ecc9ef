"""A device whose frames move to another partition of its topic (partitions added to the topic:
the producers' partitioners send its key elsewhere) while it has an open alert and a rule
window in progress. The partition's owner, another worker, must continue the open alert (no
second raise), judge the history rule with the window the old owner saw, and the old owner
must drop its copy of the alert (else the open-alerts gauge counts it forever).

The move is made by producing to an explicit partition, as a partitioner does after the
partition count changed; the two partitions belong to the two workers of one service."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from devtools.loadgen_send import gateway_name, peer_of
from devtools.sim.fleet import Message
from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.traffic import HOT_PACK_RULES, HOT_VIN, hot_frames

pytestmark = pytest.mark.integration

RULES = (
    HOT_PACK_RULES
    + """
[[rule]]
id = "test_temp_drop"
kind = "drop"
severity = "major"
title = "Pack temperature fell by more than 25 % within 35 s (test rule)"
source = "tests/integration/test_pipeline_alert_moved.py"
field = "max_temp_c"
pct = 25
window_s = 35
max_gap_s = 35
"""
)


async def send_to(kafka: str, topic: str, partition: int, messages: list[Message]) -> None:
    """Produce ``messages`` to ``partition`` whatever their key hashes to."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for msg in messages:
            headers = [
                ("received_at", str(time.time_ns() // 1_000_000).encode()),
                ("gateway", gateway_name()),
                ("peer", peer_of(msg.key)),
            ]
            await producer.send_and_wait(
                topic, msg.value, key=msg.key, partition=partition, headers=headers
            )
    finally:
        await producer.stop()


def owners(svc: ps.Service, topic: str) -> dict[int, int]:
    """Partition of ``topic`` -> pid of the worker whose latest restore took it."""
    out: dict[int, int] = {}
    for r in svc.logs():
        if r.get("msg") == "alert state restored":
            for p in r.get("partitions", {}).get(topic, []):
                out[p] = r["pid"]
    return out


async def alert_rows(dsn: str) -> list[Any]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(
            await conn.fetch(
                "SELECT rule_id, (extract(epoch FROM opened_at) * 1000)::bigint AS opened, "
                f"cleared_at, kafka_partition FROM {ps.SCHEMA}.alerts ORDER BY id"
            )
        )
    finally:
        await conn.close()


@pytest.mark.parametrize("interval_ms", ["0", "600000"], ids=["merged", "lagging"])
async def test_an_entity_moved_to_another_partition_keeps_its_alert_and_window(
    env: PipelineEnv, tmp_path: Path, interval_ms: str
) -> None:
    """``lagging``: a latest interval longer than the test, so latest_state holds the vehicle's
    first frame at most (a partition's first batch merges) when it moves: the new owner reads
    its window past latest_state's time, or finds it by its open alert without a row."""
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    start = time.time_ns() // 1_000_000 - 3_600_000
    # 40 °C at 0 s, then 70 °C at 10, 20 s on the old partition (the threshold alert opens);
    # 50 °C at 30 s on the new one continues it and is a fall of 29 % from the 70 °C of the
    # last 35 s, which the drop rule sees only with the old partition's frames after the
    # first (a window ending at a latest_state of 0 s rises from 40 °C); 30 °C clears it.
    messages = hot_frames(start, [40.0, 70.0, 70.0, 50.0, 30.0])
    async with ps.serving(
        env,
        "moved",
        workers=2,
        NEV_ALERTS_RULES_FILE=str(rules),
        NEV_STORAGE_LATEST_INTERVAL_MS=interval_ms,
    ) as svc:

        async def split() -> dict[int, int]:
            got = owners(svc, env.topic)
            return got if len(got) >= 2 and len(set(got.values())) == 2 else {}

        placed = await ps.until(split, timeout_s=60, what="both workers owning partitions")
        old = min(placed)
        new = next(p for p in sorted(placed) if placed[p] != placed[old])
        await send_to(env.kafka, env.topic, old, messages[:1])  # the partition's first batch
        await ps.until(lambda: ps.caught_up(env), timeout_s=60, what="the first frame stored")
        await send_to(env.kafka, env.topic, old, messages[1:3])
        await ps.until(lambda: ps.caught_up(env), timeout_s=60, what="the hot frames stored")
        await send_to(env.kafka, env.topic, new, messages[3:])
        await ps.until(lambda: ps.caught_up(env), timeout_s=60, what="the moved frames stored")

        async def settled() -> list[Any]:
            rows = await alert_rows(env.dsn)
            hot = [r for r in rows if r["rule_id"] == "test_hot_pack"]
            return rows if hot and all(r["cleared_at"] is not None for r in hot) else []

        rows = await ps.until(settled, timeout_s=30, what="the hot alert cleared")
        published = await ps.read_topic(env.kafka, env.alerts, expect=3)
        t = [m.t_ms // 1000 * 1000 for m in messages]
        assert [(r["rule_id"], r["opened"]) for r in rows] == [
            ("test_hot_pack", t[1]),  # one alert, continued by the new owner
            ("test_temp_drop", t[3]),  # the old partition's frames were its window
        ], svc.tail()
        assert {r["kafka_partition"] for r in rows} == {new}  # where the next owner looks
        changes = [orjson.loads(r.value) for r in published]
        hot = [c["type"] for c in changes if c["rule_id"] == "test_hot_pack"]
        assert [c for c in hot if c != "updated"] == ["raised", "cleared"], changes

        if interval_ms != "0":
            # No merge of the moved frames within the test: latest_state has no frame newer
            # than the old owner's for its check to go by (it drops its copy once the new
            # owner's merge stored one).
            return

        async def old_copy_dropped() -> bool:
            return svc.metric("nev_ingest_alerts_open", rule="test_hot_pack") == 0

        # The old owner gets no more frames of the vehicle: its copy of the alert must go.
        await ps.until(old_copy_dropped, timeout_s=60, what="the old owner's copy dropped")


def dropped_by(svc: ps.Service, pid: int) -> int:
    """How many times worker ``pid`` dropped the state of entities moved elsewhere."""
    msg = "alert state of entities moved to another partition dropped"
    return sum(1 for r in svc.logs() if r.get("msg") == msg and r.get("pid") == pid)


async def placed_on(dsn: str) -> int | None:
    """The partition latest_state places the hot vehicle on (None: no row yet)."""
    conn = await asyncpg.connect(dsn)
    try:
        got: int | None = await conn.fetchval(
            f"SELECT kafka_partition FROM {ps.SCHEMA}.latest_state WHERE entity_id = $1",
            HOT_VIN,
        )
        return got
    finally:
        await conn.close()


@pytest.mark.parametrize("interval_ms", ["0", "1000"], ids=["merged", "bounded"])
async def test_an_entity_back_on_its_old_partition_is_judged_by_one_worker(
    env: PipelineEnv, tmp_path: Path, interval_ms: str
) -> None:
    """P0 -> P1 -> P0: the first worker dropped the device when it moved, restores it when it
    comes back, and must stamp P0 again (it had stamped P0 before: taken for stamped, the
    device stayed placed on P1, whose owner never dropped its copy; two workers counted the
    alert). With a latest interval the merges stamp, remembering the same."""
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    start = time.time_ns() // 1_000_000 - 3_600_000
    messages = hot_frames(start, [70.0] * 5)  # the alert opens and stays open
    async with ps.serving(
        env,
        "back",
        workers=2,
        NEV_ALERTS_RULES_FILE=str(rules),
        NEV_STORAGE_LATEST_INTERVAL_MS=interval_ms,
    ) as svc:

        async def split() -> dict[int, int]:
            got = owners(svc, env.topic)
            return got if len(got) >= 2 and len(set(got.values())) == 2 else {}

        placed = await ps.until(split, timeout_s=60, what="both workers owning partitions")
        old = min(placed)
        new = next(p for p in sorted(placed) if placed[p] != placed[old])
        first, second = placed[old], placed[new]

        async def on(partition: int) -> bool:
            return await placed_on(env.dsn) == partition

        await send_to(env.kafka, env.topic, old, messages[:3])
        await ps.until(lambda: on(old), timeout_s=60, what="the vehicle placed on its partition")
        await send_to(env.kafka, env.topic, new, messages[3:4])
        await ps.until(lambda: on(new), timeout_s=60, what="the vehicle placed on the new one")

        async def dropped(pid: int) -> bool:
            return dropped_by(svc, pid) > 0

        await ps.until(lambda: dropped(first), timeout_s=60, what="the first worker's copy dropped")
        await send_to(env.kafka, env.topic, old, messages[4:])  # back on its old partition
        await ps.until(lambda: ps.caught_up(env), timeout_s=60, what="the frame back stored")
        await ps.until(lambda: on(old), timeout_s=60, what="the vehicle placed back on the old")
        await ps.until(
            lambda: dropped(second), timeout_s=60, what="the second worker's copy dropped"
        )

        async def one_counted() -> bool:
            return svc.metric("nev_ingest_alerts_open", rule="test_hot_pack") == 1

        await ps.until(one_counted, timeout_s=30, what="one worker counting the open alert")
        rows = await alert_rows(env.dsn)
        assert [(r["rule_id"], r["cleared_at"], r["kafka_partition"]) for r in rows] == [
            ("test_hot_pack", None, old)
        ], svc.tail()


@pytest.mark.parametrize("interval_ms", ["0", "1000"], ids=["merged", "bounded"])
async def test_an_entity_back_before_its_old_owner_s_check_is_judged_by_one_worker(
    env: PipelineEnv, tmp_path: Path, interval_ms: str
) -> None:
    """P0 -> P1 -> P0 before the first worker's drop check ran (every MOVED_CHECK_S): it
    still had the device, so it restored and stamped nothing, and latest_state kept P1 with
    the first worker's newer frame: neither check dropped, two workers counted the alert. The
    first worker's check now places the device (and its alert rows) back on P0; the second
    one's then drops its copy. (Should the first check fall between the move and the frame
    back, the device takes the path of the test above: the same end.)"""
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    start = time.time_ns() // 1_000_000 - 3_600_000
    messages = hot_frames(start, [70.0] * 5)  # the alert opens and stays open
    async with ps.serving(
        env,
        "bounce",
        workers=2,
        NEV_ALERTS_RULES_FILE=str(rules),
        NEV_STORAGE_LATEST_INTERVAL_MS=interval_ms,
    ) as svc:

        async def split() -> dict[int, int]:
            got = owners(svc, env.topic)
            return got if len(got) >= 2 and len(set(got.values())) == 2 else {}

        placed = await ps.until(split, timeout_s=60, what="both workers owning partitions")
        old = min(placed)
        new = next(p for p in sorted(placed) if placed[p] != placed[old])

        async def on(partition: int) -> bool:
            return await placed_on(env.dsn) == partition

        await send_to(env.kafka, env.topic, old, messages[:3])
        await ps.until(lambda: on(old), timeout_s=60, what="the vehicle placed on its partition")
        await send_to(env.kafka, env.topic, new, messages[3:4])
        await ps.until(lambda: on(new), timeout_s=60, what="the vehicle placed on the new one")
        await send_to(env.kafka, env.topic, old, messages[4:])  # back at once
        await ps.until(lambda: ps.caught_up(env), timeout_s=60, what="the frame back stored")

        async def settled() -> bool:
            return (
                await on(old)
                and svc.metric("nev_ingest_alerts_open", rule="test_hot_pack") == 1
                and dropped_by(svc, placed[new]) > 0
            )

        await ps.until(settled, timeout_s=60, what="placed on the old partition, one copy left")
        rows = await alert_rows(env.dsn)
        assert [(r["rule_id"], r["cleared_at"], r["kafka_partition"]) for r in rows] == [
            ("test_hot_pack", None, old)
        ], svc.tail()
