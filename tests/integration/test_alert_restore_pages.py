"""The paged replay of the alert-state restore (issue 13: at ~2 million devices per worker the
restore read every recent entity at once under a fixed 30 s bound, timed out, and started from
zero on every retry; docs/capacity.md).

On a real PostgreSQL holding a synthetic fleet (latest_state stamped with partitions, three
stored frames per vehicle), ``Replay`` warms an engine a page at a time. What must hold:

* the engine it leaves judges the next live frame exactly as one warmed by the whole-partition
  read (``replay.recent_frames``), and differently from one without history (the SOC-jump rule
  compares with the previous frame, which only the replay brings back);
* each call does a slice of the work and says whether it is complete, and a call that fails
  (a page not read within the step bound: the table locked by another session) loses
  nothing: the next call resumes after the last applied page, so every entity is replayed
  exactly once;
* entities not stored within the rules' window are not read at all."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from aiokafka import TopicPartition

from alerts import RuleEngine, RuleSet, replay
from contract.rows import FrameRows
from ingest.config.load import load_settings
from ingest.pipeline.alert_state import Replay
from ingest.pipeline.metrics import PipelineMetrics
from ingest.pipeline.storage_sink import StorageSink
from storage import PoolParams
from storage.connect import connect
from storage.partitions import ensure

pytestmark = pytest.mark.integration

TOPIC = "nev.vehicle.raw"
RECENT = 1_050  # vehicles stored just now, over two partitions
STALE = 40  # vehicles whose latest frame was stored an hour ago: outside every window
PAGE = 100
STEP_S = 2.0  # the restore's bound on one page (no progress within it: the call fails)

_SEED = """
INSERT INTO latest_state (entity_kind, entity_id, ts, updated_at, kafka_topic, kafka_partition)
SELECT 'vehicle', 'LRESTORE' || lpad(i::text, 9, '0'), $1::timestamptz,
       CASE WHEN i < $3::int THEN now() ELSE now() - interval '1 hour' END, $2, i % 2
FROM generate_series(0, $3::int + $4::int - 1) AS i;
INSERT INTO vehicle_telemetry (vin, ts, edition, command, extremes_derived, fault_count, soc_pct)
SELECT s.entity_id, s.ts - make_interval(secs => 10 * k), 2016, 2, false, 0, 80
FROM latest_state s, generate_series(0, 2) AS k
WHERE s.entity_kind = 'vehicle'
"""


async def seed(dsn: str) -> tuple[Any, list[FrameRows]]:
    """The fleet; returns a connection and one live frame per vehicle: 10 s after its latest
    stored one, its SOC 30 points lower (a jump, against the stored 80 %)."""
    conn = await connect(PoolParams(dsn=dsn))
    now = await conn.fetchval("SELECT date_trunc('second', now())")
    await ensure(
        conn, "nev", ["vehicle_telemetry"], [(now - timedelta(days=1), now)], timedelta(days=1)
    )
    # One statement per execute: asyncpg sends a parameterised query alone.
    first, second = _SEED.split(";\n")
    await conn.execute(first, now, TOPIC, RECENT, STALE)
    await conn.execute(second)
    rows = await conn.fetch("SELECT entity_id, ts FROM latest_state ORDER BY entity_id")
    last = {f.vin: f for f in await replay.frames_of(conn, rows, 30)}
    live = []
    for vin, frame in sorted(last.items()):
        assert frame.vehicle is not None
        row = frame.vehicle._replace(ts=frame.vehicle.ts + timedelta(seconds=10), soc_pct=50)
        assert frame.ts_ms is not None
        live.append(
            FrameRows(
                edition=frame.edition,
                command=frame.command,
                vin=vin,
                ts_ms=frame.ts_ms + 10_000,
                vehicle=row,
            )
        )
    return conn, live


def jumps(engine: RuleEngine, live: list[FrameRows], now_ms: int) -> set[str]:
    """The vehicles the live frames raise a SOC jump for."""
    raised: set[str] = set()
    for partition in (0, 1):
        mine = [f for i, f in enumerate(live) if i % 2 == partition]
        for change in engine.evaluate(mine, now_ms=now_ms, partition=partition, topic=TOPIC):
            if change.type == "raised" and change.alert.rule_id == "soc_jump":
                raised.add(change.alert.entity_id)
    return raised


async def test_the_paged_replay_warms_like_the_whole_read_and_resumes_after_a_failure(
    migrated_database: str,
) -> None:
    conn, live = await seed(migrated_database)
    rules = RuleSet.default()
    keys = [(TOPIC, 0), (TOPIC, 1)]
    try:
        whole = RuleEngine(rules, entity_kind="vehicle")
        got = await replay.recent_frames(conn, "vehicle", TOPIC, [0, 1], rules.window_s)
        for partition, frames in got.items():
            whole.warm(frames, partition=partition, topic=TOPIC)

        paged = RuleEngine(rules, entity_kind="vehicle")
        restore = Replay(page_entities=PAGE, slice_s=0.0, step_timeout_s=STEP_S)  # a page per call
        engines = {"vehicle": paged}
        topics = {TOPIC: "vehicle"}
        calls = 0
        while calls < 3:
            assert not await restore.run(conn, keys, topics, engines, until=0.0)
            calls += 1
        assert restore.totals(keys) == (3 * PAGE, 3 * PAGE * 3)
        # The next page cannot be read (the table locked by another session): after the step
        # bound the call fails, and what was applied stays applied.
        locker = await asyncpg.connect(migrated_database)
        try:
            async with locker.transaction():
                await locker.execute("LOCK TABLE nev.latest_state IN ACCESS EXCLUSIVE MODE")
                with pytest.raises(TimeoutError):
                    await restore.run(conn, keys, topics, engines, until=0.0)
        finally:
            await locker.close()
        assert restore.totals(keys) == (3 * PAGE, 3 * PAGE * 3)
        while not await restore.run(conn, keys, topics, engines, until=0.0):
            calls += 1
        calls += 1
    finally:
        await conn.close()

    # Every recent vehicle exactly once (a restart from zero would count some twice), in a
    # page per call; the stale ones not at all.
    assert restore.totals(keys) == (RECENT, RECENT * 3)
    assert len(paged) == len(whole) == RECENT
    # One page per call, except the call that completes partition 0, which goes on to 1.
    pages = sum(math.ceil((RECENT // 2 + r) / PAGE) for r in (RECENT % 2, 0))
    assert calls == pages - 1

    now_ms = (live[0].ts_ms or 0) + 60_000
    cold = RuleEngine(rules, entity_kind="vehicle")
    recent = {f.vin for f in live[:RECENT]}
    assert jumps(paged, live, now_ms) == jumps(whole, live, now_ms) == recent
    assert jumps(cold, live, now_ms) == set()  # no history, no jump: the replay is what counts


async def test_the_sink_hands_back_each_partition_once_its_own_state_is_restored(
    migrated_database: str,
) -> None:
    """The worker resumes a partition as soon as its replay and open alerts are restored, not
    when every assigned partition's are: partition 0 comes back while 1 is still replayed."""
    conn, _ = await seed(migrated_database)
    await conn.close()
    environ = {
        "NEV_POSTGRES_DSN": migrated_database,
        "NEV_KAFKA_TOPIC_VEHICLE": TOPIC,
        "NEV_KAFKA_GROUP_ID": "restore-pages",
    }
    sink = StorageSink.from_settings(load_settings(environ=environ), metrics=PipelineMetrics())
    await sink.start()
    try:
        sink._replay = Replay(page_entities=PAGE, slice_s=0.0)  # a page per call, to watch it
        first, second = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)
        waiting = [first, second]
        handed_back: list[list[TopicPartition]] = []
        while waiting and len(handed_back) < 20:
            # As the worker does: again with the partitions not handed back yet.
            got = await sink.on_partitions_assigned(waiting)
            handed_back.append(sorted(got))
            waiting = [tp for tp in waiting if tp not in got]
    finally:
        await sink.close()
    # Partition 0's six pages of 525 vehicles: the sixth completes it, and it is handed back
    # alone (that call starts 1), then 1's last five.
    assert handed_back == [[]] * 5 + [[first]] + [[]] * 4 + [[second]]


async def test_with_bounded_lag_latest_state_the_cutoff_allows_for_its_lag(
    migrated_database: str,
) -> None:
    """With ``storage.latest_interval_ms`` an entity still reporting when the last owner crashed
    may have been merged into latest_state up to ~1.5 intervals before: the restore's "recently
    active" cutoff of a partition that refills (a crash left its tuples pending) is the window
    plus 2 intervals. With 10 minutes it reaches that partition's vehicles last merged 15
    minutes ago; the other partition (nothing pending: latest_state complete) is replayed as
    without an interval (above)."""
    conn, _ = await seed(migrated_database)
    await conn.execute(
        "UPDATE latest_state SET updated_at = now() - interval '15 minutes' "
        "WHERE updated_at < now() - interval '30 minutes'"
    )
    group = "restore-lag"
    await conn.execute(
        "INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset, latest_from) "
        "VALUES ($1, $2, 0, 10, 5), ($1, $2, 1, 10, NULL)",
        group,
        TOPIC,
    )
    await conn.close()
    environ = {
        "NEV_POSTGRES_DSN": migrated_database,
        "NEV_KAFKA_TOPIC_VEHICLE": TOPIC,
        "NEV_KAFKA_GROUP_ID": group,
        "NEV_STORAGE_LATEST_INTERVAL_MS": "600000",
    }
    sink = StorageSink.from_settings(load_settings(environ=environ), metrics=PipelineMetrics())
    await sink.start()
    try:
        waiting = [TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)]
        await sink.stored_offsets(waiting)  # as the worker does first: partition 0 refills
        assert sink.latest.refilling((TOPIC, 0)) and not sink.latest.refilling((TOPIC, 1))
        for _ in range(20):
            got = await sink.on_partitions_assigned(waiting)
            waiting = [tp for tp in waiting if tp not in got]
            if not waiting:
                break
        assert waiting == []
        engine = sink._engines["vehicle"]
        assert len(engine) == RECENT + STALE // 2  # partition 0's stale half
    finally:
        await sink.close()
