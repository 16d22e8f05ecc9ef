"""Two owners of a moved device whose watermarks both reach latest_state's time, on a real
PostgreSQL (ingest/pipeline/moved.py ``drop_moved``, alerts/moves.py ``reclaim``).

The device moved from partition 0 (worker A, which evaluated its frame at T) to partition 1
(worker B), and its first frame there was no newer (a resend): B's restore warmed it up to T
and stamped partition 1, then the device went quiet. Each check found the other's placement
at a time no newer than its own watermark and placed the device back: for ever, the alert
counted by both workers and its row's partition flipping at every check. Now a worker places
a device back at its watermark once; found elsewhere again at that time, it drops its copy:
exactly one worker keeps the alert, and latest_state and the alert row stay where it is."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from alerts import RuleEngine, RuleSet, replay
from alerts.store import load_open
from ingest.pipeline.batch import Batch
from ingest.pipeline.moved import Claims, drop_moved, restore_moved
from tests.integration.test_alert_moved_restore import TOPIC, VIN, Rec, seed

pytestmark = pytest.mark.integration


async def test_a_tie_between_two_owners_leaves_the_device_with_one(
    migrated_database: str,
) -> None:
    conn, _ = await seed(migrated_database)  # stored at T on partition 0, its alert open
    try:
        entities = await conn.fetch("SELECT entity_id, ts FROM latest_state")
        (stored,) = await replay.frames_of(conn, entities, 60)
        a = RuleEngine(RuleSet.default())  # the old owner: has the frame at T and the alert
        a.warm([stored], partition=0, topic=TOPIC)
        a.restore(await load_open(conn, entity_kind="vehicle", entity_ids=[VIN]))
        b = RuleEngine(RuleSet.default())  # the new owner: the same frame again, on partition 1
        batch = Batch(generation=0, frames=[stored], records=[Rec(TOPIC, 1)])  # type: ignore[list-item]
        moved = await restore_moved(conn, batch, {"vehicle": b}, {TOPIC: "vehicle"})
        async with conn.transaction():
            await moved.apply(conn, set())
        b.evaluate(batch.frames, partition=1, topic=TOPIC)

        @asynccontextmanager
        async def acquire(shard: int) -> AsyncIterator[Any]:
            yield conn

        claims: dict[str, Claims] = {"A": {}, "B": {}}  # each worker's own, across checks
        seen = []
        for _ in range(4):
            for name, engine in (("A", a), ("B", b)):
                await drop_moved({"vehicle": engine}, acquire, lambda p: 0, claims[name])
                placed = await conn.fetchval("SELECT kafka_partition FROM latest_state")
                alert = await conn.fetchval("SELECT kafka_partition FROM alerts")
                holders = [n for n, e in (("A", a), ("B", b)) if e.open_alerts()]
                seen.append((placed, alert, holders))
    finally:
        await conn.close()
    # Settled within the first rounds, then nothing moves any more.
    last = seen[-4:]
    assert all(s == last[0] for s in last), seen
    placed, alert, holders = last[0]
    assert len(holders) == 1, seen
    assert placed == alert == (0 if holders == ["A"] else 1), seen
