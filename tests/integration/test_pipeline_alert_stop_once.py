"""A graceful stop publishes each alert change once (issue 13, catch-up run 1 of
docs/capacity.md: 9 raises of the batch in flight at SIGTERM were published twice).

The batch sealed by the stop commits its alert with an outbox row, publishes it, and Kafka
acknowledges it; acknowledged rows used to be deleted only by the next batch's transaction,
and after a stop there is none, so the next owner sent the message again. The batch is made to
be in flight at the stop by a long linger: the frames wait in the open batch until SIGTERM seals
it (the stop itself waits for the consumer's poll, which lasts up to the linger)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import orjson
import pytest

from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.traffic import HOT_PACK_RULES, HOT_VIN, hot_frames

pytestmark = pytest.mark.integration

LINGER_MS = 15_000


async def count(dsn: str, sql: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def test_a_graceful_stop_with_an_alert_in_flight_publishes_it_once(
    env: PipelineEnv, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(HOT_PACK_RULES)
    start = time.time_ns() // 1_000_000 - 3_600_000
    frames = hot_frames(start, [60.0, 60.0, 60.0, 40.0])
    svc = ps.Service(
        env,
        "first",
        NEV_ALERTS_RULES_FILE=str(rules),
        NEV_PIPELINE_BATCH_LINGER_MS=str(LINGER_MS),  # nothing is written before the stop
    )
    try:
        await ps.until(lambda: ps.ready(svc), timeout_s=60, what="the service ready")
        await ps.produce(env.kafka, env.topic, frames[:3])

        async def in_open_batch() -> bool:
            return svc.metric("nev_ingest_in_flight_frames") == 3

        await ps.until(in_open_batch, timeout_s=30, what="3 frames in the open batch")
        assert await count(env.dsn, f"SELECT count(*) FROM {ps.SCHEMA}.alerts") == 0
        code = await asyncio.to_thread(svc.stop, 60)
    finally:
        svc.kill()
    assert code == 0, svc.tail()
    # The stop wrote the batch, published its raise and forgot the acknowledged message.
    assert await count(env.dsn, f"SELECT count(*) FROM {ps.SCHEMA}.alerts") == 1
    assert await count(env.dsn, f"SELECT count(*) FROM {ps.SCHEMA}.alerts_outbox") == 0

    # The next owner restores the open alert and sends nothing of the first one's again: the
    # topic holds the raise once, then the clear of the cooler frame.
    async with ps.serving(env, "second", NEV_ALERTS_RULES_FILE=str(rules)):
        await ps.produce_and_store(env, frames[3:], timeout_s=60)
        published = await ps.read_topic(env.kafka, env.alerts, expect=2)
    changes = [(r.key, orjson.loads(r.value)["type"]) for r in published]
    assert changes == [(HOT_VIN.encode(), "raised"), (HOT_VIN.encode(), "cleared")]
