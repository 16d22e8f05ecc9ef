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


# A threshold alert and a drop rule whose window needs the old partition's frames (as in
# tests/integration/test_pipeline_alert_moved.py).
LAG_RULES = RuleSet.from_toml(
    """
[[rule]]
id = "test_hot_pack"
kind = "threshold"
severity = "major"
field = "max_temp_c"
op = ">="
value = 50
hysteresis = 5

[[rule]]
id = "test_temp_drop"
kind = "drop"
severity = "major"
field = "max_temp_c"
pct = 25
window_s = 35
max_gap_s = 35
"""
)
LAG_S = 60.0  # latest_state may lag the rows this much (2 x storage.latest_interval_ms)


async def seed_lagging(dsn: str, *, row: bool) -> tuple[Any, Batch, int]:
    """Bounded-lag latest_state: the old owner (partition 0) stored frames at t0 (30 °C),
    t0 + 10 s and t0 + 20 s (70 °C; the threshold alert open since t0 + 10 s) but merged
    latest_state at t0 only (``row``), or not yet (no row). The batch: the vehicle's frame
    at t0 + 30 s (50 °C) from partition 1. Returns the connection, the batch and t0 in ms."""
    conn = await connect(PoolParams(dsn=dsn))
    now = await conn.fetchval("SELECT date_trunc('second', now())")
    t0 = now - timedelta(seconds=60)
    await ensure(
        conn, "nev", ["vehicle_telemetry"], [(now - timedelta(days=1), now)], timedelta(days=1)
    )
    for s, temp in ((0, 30), (10, 70), (20, 70)):
        await conn.execute(
            "INSERT INTO vehicle_telemetry (vin, ts, edition, command, extremes_derived, "
            "fault_count, max_temp_c) VALUES ($1, $2, 2016, 2, false, 0, $3)",
            VIN,
            t0 + timedelta(seconds=s),
            temp,
        )
    if row:
        await conn.execute(
            "INSERT INTO latest_state (entity_kind, entity_id, ts, updated_at, kafka_topic, "
            "kafka_partition) VALUES ('vehicle', $1, $2, now() - interval '20 seconds', $3, 0)",
            VIN,
            t0,
            TOPIC,
        )
    await conn.execute(
        "INSERT INTO alerts (entity_kind, entity_id, rule_id, rule_version, severity, title, "
        "opened_at, last_seen_at, frame_count, trigger_times, late, kafka_partition, "
        "kafka_topic) VALUES ('vehicle', $1, 'test_hot_pack', $2, 'major', 't', $3, $4, 2, "
        "ARRAY[$3]::timestamptz[], false, 0, $5)",
        VIN,
        next(r.version for r in LAG_RULES.rules if r.id == "test_hot_pack"),
        t0 + timedelta(seconds=10),
        t0 + timedelta(seconds=20),
        TOPIC,
    )
    entities = [{"entity_id": VIN, "ts": t0 + timedelta(seconds=20)}]
    stored = (await replay.frames_of(conn, entities, 1))[0]
    assert stored.vehicle is not None and stored.ts_ms is not None
    t0_ms = stored.ts_ms - 20_000
    row_ = stored.vehicle._replace(ts=stored.vehicle.ts + timedelta(seconds=10), max_temp_c=50)
    live = FrameRows(
        edition=2016, command=2, vin=VIN, ts_ms=t0_ms + 30_000, vehicle=row_, packs=None
    )
    batch = Batch(generation=0, frames=[live], records=[Rec(TOPIC, 1)])  # type: ignore[list-item]
    return conn, batch, t0_ms


async def test_a_moved_vehicle_s_window_reaches_past_a_lagging_latest_state(
    migrated_database: str,
) -> None:
    """latest_state at t0, the rows to t0 + 20 s: the window ends at the rows (the old owner's
    frames since its last merge), so the fall from 70 to 50 °C is a drop."""
    conn, batch, _ = await seed_lagging(migrated_database, row=True)
    try:
        engine = RuleEngine(LAG_RULES)
        moved = await restore_moved(conn, batch, {"vehicle": engine}, {TOPIC: "vehicle"}, LAG_S)
    finally:
        await conn.close()
    assert moved.moves == {(TOPIC, "vehicle"): {VIN: 1}}
    changes = engine.evaluate(batch.frames, partition=1, topic=TOPIC)
    raised = [c.alert.rule_id for c in changes if c.type == "raised"]
    assert raised == ["test_temp_drop"]  # and the threshold alert continued, not raised again


async def test_a_moved_vehicle_without_a_latest_state_row_keeps_its_open_alert(
    migrated_database: str,
) -> None:
    """No latest_state row yet (first seen since the old owner's last merge): found by its
    open alert, which is adopted under partition 1, not raised a second time."""
    conn, batch, t0_ms = await seed_lagging(migrated_database, row=False)
    try:
        engine = RuleEngine(LAG_RULES)
        moved = await restore_moved(conn, batch, {"vehicle": engine}, {TOPIC: "vehicle"}, LAG_S)
        async with conn.transaction():
            await moved.apply(conn, set())
        partition = await conn.fetchval("SELECT kafka_partition FROM alerts")
    finally:
        await conn.close()
    assert moved.moves == {(TOPIC, "vehicle"): {VIN: 1}}
    (adopted,) = engine.open_alerts()
    assert (adopted.rule_id, adopted.opened_ms, adopted.partition) == (
        "test_hot_pack",
        t0_ms + 10_000,
        1,
    )
    changes = engine.evaluate(batch.frames, partition=1, topic=TOPIC)
    assert [c.alert.rule_id for c in changes if c.type == "raised"] == ["test_temp_drop"]
    assert partition == 1


async def test_another_topic_s_alert_seen_later_does_not_hide_this_topic_s(
    migrated_database: str,
) -> None:
    """No latest_state row yet, and the entity has an open alert on another topic of its kind
    too (a charger reporting by both paths), seen later: this topic's open alert is the one
    found, adopted under partition 1, not raised a second time."""
    conn, batch, _ = await seed_lagging(migrated_database, row=False)
    other = "nev.other.raw"
    try:
        last = await conn.fetchval("SELECT last_seen_at FROM alerts")
        await conn.execute(
            "INSERT INTO alerts (entity_kind, entity_id, rule_id, rule_version, severity, title, "
            "opened_at, last_seen_at, frame_count, trigger_times, late, kafka_partition, "
            "kafka_topic) VALUES ('vehicle', $1, 'other_rule', 'v', 'major', 't', $2, $2, 1, "
            "ARRAY[$2]::timestamptz[], false, 0, $3)",
            VIN,
            last + timedelta(seconds=1),
            other,
        )
        engine = RuleEngine(LAG_RULES)
        kinds = {TOPIC: "vehicle", other: "vehicle"}
        moved = await restore_moved(conn, batch, {"vehicle": engine}, kinds, LAG_S)
    finally:
        await conn.close()
    assert moved.moves == {(TOPIC, "vehicle"): {VIN: 1}}
    (adopted,) = engine.open_alerts()  # the other topic's alert stays with its owner
    assert (adopted.rule_id, adopted.topic, adopted.partition) == ("test_hot_pack", TOPIC, 1)
    changes = engine.evaluate(batch.frames, partition=1, topic=TOPIC)
    assert [c.alert.rule_id for c in changes if c.type == "raised"] == ["test_temp_drop"]


@pytest.mark.parametrize("lag_s", [0.0, LAG_S])
async def test_a_latest_state_row_of_another_topic_does_not_hide_this_topic_s_alert(
    migrated_database: str, lag_s: float
) -> None:
    """latest_state's one row for the entity names another topic of its kind (a connector
    reporting by both charger paths: the topic that stamped last): its open alert of this
    topic is found by the alerts, with or without a latest interval, adopted under partition
    1 and moved there, not raised a second time."""
    conn, batch, _ = await seed_lagging(migrated_database, row=True)
    other = "nev.other.raw"
    try:
        await conn.execute("UPDATE latest_state SET kafka_topic = $1", other)
        engine = RuleEngine(LAG_RULES)
        kinds = {TOPIC: "vehicle", other: "vehicle"}
        moved = await restore_moved(conn, batch, {"vehicle": engine}, kinds, lag_s)
        async with conn.transaction():
            await moved.apply(conn, set())
        alert = await conn.fetchrow("SELECT kafka_topic, kafka_partition FROM alerts")
    finally:
        await conn.close()
    assert moved.moves == {(TOPIC, "vehicle"): {VIN: 1}}
    (adopted,) = engine.open_alerts()
    assert (adopted.rule_id, adopted.topic, adopted.partition) == ("test_hot_pack", TOPIC, 1)
    changes = engine.evaluate(batch.frames, partition=1, topic=TOPIC)
    assert "test_hot_pack" not in [c.alert.rule_id for c in changes if c.type == "raised"]
    assert tuple(alert) == (TOPIC, 1)
