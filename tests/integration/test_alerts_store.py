"""The alerts table on the real PostgreSQL: idempotent saves, one open alert per (entity, rule),
and a worker restarted mid-alert that neither raises it twice nor loses it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from alerts import AlertChange, AlertRecord, RuleEngine, RuleSet
from alerts.store import load_open, save_changes
from contract.rows import FrameRows
from devtools.sim.scenarios import thermal_runaway
from tests.unit.alerts_entities_support import charger, status_push

pytestmark = pytest.mark.integration

# The alerts table, its outbox and their topic columns (0053 alters both tables).
MIGRATIONS = [
    Path(__file__).parents[2] / "storage" / "migrations" / name
    for name in ("0050_alerts.sql", "0051_alerts_outbox.sql", "0053_alert_topics.sql")
]
TR = "gb38031_thermal_runaway"


@pytest.fixture
async def db(postgres_dsn: str) -> AsyncIterator[Any]:
    """A connection to a fresh database of its own, migrated."""
    name = f"alerts_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    conn = await asyncpg.connect(postgres_dsn, database=name)
    try:
        for migration in MIGRATIONS:
            await conn.execute(migration.read_text())
        yield conn
    finally:
        await conn.close()
        await admin.execute(f'DROP DATABASE "{name}"')
        await admin.close()


async def rows(conn: Any, rule: str | None = None) -> list[Any]:
    q = "SELECT * FROM alerts" + (" WHERE rule_id = $1" if rule else "") + " ORDER BY id"
    return list(await conn.fetch(q, *([rule] if rule else [])))


async def commit(conn: Any, changes: list[AlertChange]) -> None:
    async with conn.transaction():
        await save_changes(conn, changes)


def cooling(last: FrameRows, minutes: int) -> list[FrameRows]:
    """After the event: the temperature falls 1 °C per 10 s frame, the voltage stays low."""
    assert last.vehicle is not None and last.ts_ms is not None
    out = []
    temp = last.vehicle.max_temp_c or 100
    for i in range(1, minutes * 6 + 1):
        v = last.vehicle._replace(max_temp_c=temp - i, max_alarm_level=0, general_flags=0)
        t = last.ts_ms + i * 10_000
        out.append(FrameRows(edition=last.edition, command=2, vin=last.vin, ts_ms=t, vehicle=v))
    return out


async def test_migration_can_run_twice(db: Any) -> None:
    for migration in MIGRATIONS:
        await db.execute(migration.read_text())
    assert await db.fetchval("SELECT count(*) FROM alerts") == 0


async def test_save_changes_is_idempotent_under_replay(db: Any) -> None:
    frames = thermal_runaway(edition=2025)
    changes = RuleEngine(RuleSet.default()).evaluate(frames)
    raised = [c for c in changes if c.type == "raised"]
    assert {c.alert.rule_id for c in raised} >= {TR, "thermal_event"}
    await commit(db, changes)
    first = [dict(r) for r in await rows(db)]
    await commit(db, changes)  # the batch replayed after a crash before the offset commit
    async with db.transaction():
        await save_changes(db, changes)
        await save_changes(db, changes)  # and twice inside one transaction
    again = [dict(r) for r in await rows(db)]
    strip = ("updated_at",)
    assert [{k: v for k, v in r.items() if k not in strip} for r in again] == [
        {k: v for k, v in r.items() if k not in strip} for r in first
    ]
    assert len(first) == len(raised)
    tr = next(r for r in first if r["rule_id"] == TR)
    assert tr["severity"] == "critical" and tr["cleared_at"] is None and tr["frame_count"] >= 1
    assert tr["trigger_times"] and tr["kafka_partition"] is None


async def test_the_database_refuses_a_second_open_alert(db: Any) -> None:
    changes = RuleEngine(RuleSet.default()).evaluate(thermal_runaway(edition=2016))
    await commit(db, changes)
    # an engine that lost its state would raise the same episode again, later
    lost = RuleEngine(RuleSet.default()).evaluate(thermal_runaway(edition=2016)[30:])
    assert any(c.type == "raised" and c.alert.rule_id == TR for c in lost)
    await commit(db, lost)
    assert len(await rows(db, TR)) == 1


async def test_restarted_worker_neither_reraises_nor_loses_the_alert(db: Any) -> None:
    frames = thermal_runaway(edition=2016, seed=4)
    frames += cooling(frames[-1], minutes=8)
    split = len(frames) // 3  # the runaway is under way and alerted by then
    first = RuleEngine(RuleSet.default())
    before = []
    for i in range(0, split, 5):  # batch by batch, each committed with its alerts
        changes = first.evaluate(frames[i : min(i + 5, split)], partition=3)
        before += changes
        await commit(db, changes)
    assert [c.alert.rule_id for c in before if c.type == "raised"].count(TR) == 1
    del first  # kill -9: the in-memory state is gone

    second = RuleEngine(RuleSet.default())
    stored = await load_open(db, partitions=[3])
    assert TR in {a.rule_id for a in stored if a.is_open}
    # rebuild from the stored open alerts plus a short replay of the last committed frames
    assert second.rebuild(stored, replay=frames[split - 10 : split], partition=3) == []
    after = []
    for i in range(split, len(frames), 5):
        changes = second.evaluate(frames[i : i + 5], partition=3)
        after += changes
        await commit(db, changes)
    assert not [c for c in after if c.type == "raised" and c.alert.rule_id == TR]
    assert [c.type for c in after if c.alert.rule_id == TR][-1] == "cleared"
    (row,) = await rows(db, TR)
    assert row["cleared_at"] is not None and row["clear_reason"] == "condition"
    assert row["frame_count"] > 1 and row["kafka_partition"] == 3
    # and a third start finds nothing open for that rule, only the cleared marker
    # (the scenario is dated 2026-07-01: widen the 7-day horizon, which counts from now())
    reloaded = await load_open(db, partitions=[3], cleared_within_s=10 * 365 * 86_400)
    assert [a.is_open for a in reloaded if a.rule_id == TR] == [False]


@pytest.mark.parametrize("peak_is_max", [True, False])
async def test_a_merged_engines_updates_never_move_the_stored_peak_inwards(
    db: Any, peak_is_max: bool
) -> None:
    # The first engine saw the extreme value; a second one (it lost its state, or owned the
    # partition for a moment) raises again, is merged into the open alert, and knows only
    # its own, milder frames. Its updates and clear used to overwrite the stored peak.
    def rec(at: int, peak: float, cleared_ms: int | None = None) -> AlertRecord:
        return AlertRecord(
            "vehicle", "LTEST000000000009", "hot", "v1", "major", "Hot", at, at, cleared_ms,
            peak, peak, 1, (at,), peak_is_max=peak_is_max,
        )  # fmt: skip

    extreme, mild = (90.0, 70.0) if peak_is_max else (10.0, 30.0)
    await commit(db, [AlertChange("raised", rec(1_000, extreme))])
    second = rec(5_000, mild)
    await commit(db, [AlertChange("raised", second), AlertChange("updated", second)])
    (row,) = await rows(db, "hot")
    assert row["peak_value"] == extreme and row["cleared_at"] is None
    closing = rec(9_000, mild - 5 if peak_is_max else mild + 5, cleared_ms=9_000)
    await commit(db, [AlertChange("cleared", closing)])
    (row,) = await rows(db, "hot")
    assert row["peak_value"] == extreme and row["cleared_at"] is not None
    # and a more extreme value does move it
    await commit(db, [AlertChange("raised", rec(20_000, extreme))])
    beyond = rec(20_000, extreme + 1 if peak_is_max else extreme - 1)
    await commit(db, [AlertChange("updated", beyond)])
    assert (await rows(db, "hot"))[-1]["peak_value"] == beyond.peak


async def test_load_open_filters_by_partition_and_entity(db: Any) -> None:
    e = RuleEngine(RuleSet.default())
    await commit(db, e.evaluate(thermal_runaway(vin="LNEVTR0000000001"), partition=1))
    await commit(db, e.evaluate(thermal_runaway(vin="LNEVTR0000000002"), partition=2))
    assert {a.entity_id for a in await load_open(db, partitions=[2])} == {"LNEVTR0000000002"}
    only = await load_open(db, entity_ids=["LNEVTR0000000001"])
    assert {a.entity_id for a in only} == {"LNEVTR0000000001"} and all(a.is_open for a in only)
    assert await load_open(db, entity_kind="charger") == []


async def test_a_charger_alert_is_stored_under_the_topic_of_the_frame_that_raised_it(
    db: Any,
) -> None:
    """A connector first seen by a T/CEC push (tcec-3) overheats in its binary frames (raw-5):
    the row is raw-5's, so the raw path's owner restores it (the T/CEC path's pushes carry no
    temperature and could never clear it)."""
    raw, tcec = "nev.charger.raw", "nev.charger.tcec"
    e = RuleEngine(RuleSet.default(), entity_kind="charger")
    e.evaluate([status_push(0, 3)], partition=3, topic=tcec)
    hot = [charger(10, temp=95), charger(20, temp=95)]
    await commit(db, e.evaluate(hot, partition=5, topic=raw))
    stored = await rows(db, "connector_over_temp")
    assert [(r["kafka_topic"], r["kafka_partition"]) for r in stored] == [(raw, 5)]
    on = {
        t: [a.rule_id for a in await load_open(db, entity_kind="charger", partitions=[p], topic=t)]
        for t, p in ((raw, 5), (tcec, 3))
    }
    assert on == {raw: ["connector_over_temp"], tcec: []}


async def test_the_same_table_on_timescaledb(timescale_dsn: str) -> None:
    """The migration and the helpers on the TimescaleDB engine (PGlite: one connection, no
    SSL), in a schema of their own: raise, replay, clear, reload."""
    schema = f"alerts_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(timescale_dsn, ssl=False)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(f'SET search_path = "{schema}", public')
        for migration in MIGRATIONS:
            await conn.execute(migration.read_text())
        frames = thermal_runaway(edition=2025)
        engine = RuleEngine(RuleSet.default())
        changes = engine.evaluate(frames, partition=0)
        await commit(conn, changes)
        await commit(conn, changes)  # replayed
        raised = sum(c.type == "raised" for c in changes)
        assert len(await rows(conn)) == raised
        cool = cooling(frames[-1], minutes=8)
        await commit(conn, engine.evaluate(cool, partition=0))
        (row,) = await rows(conn, TR)
        assert row["cleared_at"] is not None
        reloaded = await load_open(conn, partitions=[0], cleared_within_s=10 * 365 * 86_400)
        assert {a.rule_id for a in reloaded} == {c.alert.rule_id for c in changes}
    finally:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()


async def test_a_conflicting_raise_merges_into_the_open_alert_which_then_clears(db: Any) -> None:
    """An engine that raises while the table still holds an open alert of that vehicle and rule
    (state lost, two workers briefly disagreeing): the raise is merged into the open alert, not
    dropped, and its clear closes that alert instead of leaving it open forever."""
    frames = thermal_runaway(edition=2016, seed=4)
    frames += cooling(frames[-1], minutes=8)
    split = len(frames) // 3
    await commit(db, RuleEngine(RuleSet.default()).evaluate(frames[:split], partition=3))
    (first,) = await rows(db, TR)
    assert first["cleared_at"] is None

    blind = RuleEngine(RuleSet.default())  # no restore: raises the same condition with a new key
    changes = blind.evaluate(frames[split:], partition=3)
    again = [c for c in changes if c.type == "raised" and c.alert.rule_id == TR]
    assert again and again[0].alert.opened_ms > int(first["opened_at"].timestamp() * 1000)
    assert [c.type for c in changes if c.alert.rule_id == TR][-1] == "cleared"
    await commit(db, changes)
    (row,) = await rows(db, TR)  # one row: the raise went into the open alert
    assert row["id"] == first["id"] and row["opened_at"] == first["opened_at"]
    assert row["last_seen_at"] > first["last_seen_at"]  # the merged raise was not dropped
    assert row["cleared_at"] is not None and row["clear_reason"] == "condition"
    await commit(db, changes)  # replayed: still the same single, cleared row
    assert [dict(r)["cleared_at"] for r in await rows(db, TR)] == [row["cleared_at"]]


def _episode(opened_ms: int, cleared_ms: int | None) -> AlertRecord:
    return AlertRecord(
        entity_kind="vehicle",
        entity_id="LNEVFLAP000000001",
        rule_id="flapping_rule",
        rule_version="1",
        severity="warning",
        title="flapping",
        opened_ms=opened_ms,
        last_seen_ms=cleared_ms or opened_ms,
        cleared_ms=cleared_ms,
        peak=1.0,
        last_value=1.0,
        frame_count=1,
        trigger_ms=(opened_ms,),
        partition=0,
    )


async def test_a_rule_flapping_inside_one_batch_keeps_both_episodes(db: Any) -> None:
    # A backlog caught up in one batch: raised at t1, cleared, raised again at t3 (not cleared).
    t1, t2, t3 = 1_780_000_000_000, 1_780_000_010_000, 1_780_000_020_000
    changes = [
        AlertChange("raised", _episode(t1, None)),
        AlertChange("cleared", _episode(t1, t2)),
        AlertChange("raised", _episode(t3, None)),
    ]
    await commit(db, changes)
    got = [(r["opened_at"], r["cleared_at"]) for r in await rows(db, "flapping_rule")]
    assert [(int(o.timestamp() * 1000), c is not None) for o, c in got] == [
        (t1, True),  # the first episode, closed
        (t3, False),  # the second one, open: not merged into the first
    ]
    await commit(db, changes)  # replayed after a crash: nothing changes
    assert [(r["opened_at"], r["cleared_at"]) for r in await rows(db, "flapping_rule")] == got
