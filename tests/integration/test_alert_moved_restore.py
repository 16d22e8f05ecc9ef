"""``restore_moved`` on a real PostgreSQL (ingest/pipeline/moved.py): a vehicle stamped on
partition 0 with an open alert, whose frame comes from partition 1.

* the engine adopts the open alert under partition 1, and ``Moved.apply`` moves the stored row
  there (what the partition's next owner restores by);
* a bug in the engine's ``restore`` does not fail the batch (which would stop the worker, as a
  non-transient write error): the entity starts blind, said loudly, like the assignment's
  replay does on a bug."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from alerts import AlertChange, RuleEngine, RuleSet, replay
from contract.rows import FrameRows
from ingest.pipeline.batch import Batch
from ingest.pipeline.moved import restore_moved
from storage import PoolParams
from storage.connect import connect
from storage.partitions import ensure

pytestmark = pytest.mark.integration

TOPIC = "nev.vehicle.raw"
VIN = "LMOVED0000000001"


@dataclass
class Rec:
    topic: str
    partition: int


class Broken(RuleEngine):
    def restore(self, records: Any) -> list[AlertChange]:
        raise RuntimeError("a bug")


async def seed(dsn: str) -> tuple[Any, Batch]:
    """The vehicle stored on partition 0 with an open max_temp_high alert; a batch with its
    next frame from partition 1."""
    conn = await connect(PoolParams(dsn=dsn))
    now = await conn.fetchval("SELECT date_trunc('second', now())")
    await ensure(
        conn, "nev", ["vehicle_telemetry"], [(now - timedelta(days=1), now)], timedelta(days=1)
    )
    await conn.execute(
        "INSERT INTO latest_state (entity_kind, entity_id, ts, updated_at, kafka_topic, "
        "kafka_partition) VALUES ('vehicle', $1, $2, now(), $3, 0)",
        VIN,
        now,
        TOPIC,
    )
    await conn.execute(
        "INSERT INTO vehicle_telemetry (vin, ts, edition, command, extremes_derived, "
        "fault_count, max_temp_c) VALUES ($1, $2, 2016, 2, false, 0, 70)",
        VIN,
        now,
    )
    await conn.execute(
        "INSERT INTO alerts (entity_kind, entity_id, rule_id, rule_version, severity, title, "
        "opened_at, last_seen_at, frame_count, trigger_times, late, kafka_partition, "
        "kafka_topic) VALUES ('vehicle', $1, 'max_temp_high', 'v', 'major', 't', $2, $2, 2, "
        "ARRAY[$2]::timestamptz[], false, 0, $3)",
        VIN,
        now,
        TOPIC,
    )
    (stored,) = await replay.frames_of(
        conn, await conn.fetch("SELECT entity_id, ts FROM latest_state"), 60
    )
    assert stored.vehicle is not None and stored.ts_ms is not None
    row = stored.vehicle._replace(ts=stored.vehicle.ts + timedelta(seconds=10))
    live = FrameRows(
        edition=2016, command=2, vin=VIN, ts_ms=stored.ts_ms + 10_000, vehicle=row, packs=None
    )
    batch = Batch(generation=0, frames=[live], records=[Rec(TOPIC, 1)])  # type: ignore[list-item]
    return conn, batch


async def test_a_moved_vehicle_s_alert_is_adopted_and_moved(migrated_database: str) -> None:
    conn, batch = await seed(migrated_database)
    try:
        engine = RuleEngine(RuleSet.default())
        moved = await restore_moved(conn, batch, {"vehicle": engine}, {TOPIC: "vehicle"})
        (adopted,) = engine.open_alerts()
        assert (adopted.rule_id, adopted.topic, adopted.partition) == ("max_temp_high", TOPIC, 1)
        assert moved.moves == {(TOPIC, "vehicle"): {VIN: 1}}
        async with conn.transaction():
            await moved.apply(conn, set())
        assert await conn.fetchval("SELECT kafka_partition FROM alerts") == 1
    finally:
        await conn.close()


async def test_a_bug_in_the_restore_starts_the_entity_blind(
    migrated_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    conn, batch = await seed(migrated_database)
    try:
        engine = Broken(RuleSet.default())
        moved = await restore_moved(conn, batch, {"vehicle": engine}, {TOPIC: "vehicle"})
    finally:
        await conn.close()
    assert VIN not in engine and not engine.open_alerts()
    assert moved.moves == {(TOPIC, "vehicle"): {VIN: 1}}  # the rows still follow the device
    assert "restoring entities moved from another partition failed" in caplog.text
