"""The service, when a batch's COMMIT reached PostgreSQL but its answer never came back
(storage/unsure.py).

The service talks to the real database through a proxy that passes one batch write's COMMIT
on, waits for the server's answer and drops the connection instead of passing it back (what
``storage.write_timeout_s`` cutting the connection right then, or a reset, does). The writer
retries; the database already has the batch. It is the worker's own commit, not another
consumer's work: counted written, not abandoned as fenced; its alert message published once,
right away (not left in the outbox for the next assignment); its latest_state tuples kept
pending (``storage.latest_interval_ms`` > 0) and merged by the graceful stop; every frame
stored once."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest
from aiokafka import TopicPartition

from ingest.config import Settings
from ingest.config.load import load_settings
from ingest.pipeline.batch import Batch
from ingest.pipeline.metrics import PipelineMetrics
from ingest.pipeline.sink import TransientSinkError
from ingest.pipeline.storage_sink import StorageSink
from ingest.wiring import shard_pool_params, storage_params, writer_params
from storage import RetryParams
from tests.integration import pipeline_support as ps
from tests.integration.commit_cut import CommitCut
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.test_pipeline_latest_lag import behind
from tests.integration.traffic import HOT_PACK_RULES, HOT_VIN, hot_frames

pytestmark = pytest.mark.integration


async def count(dsn: str, sql: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def test_a_commit_whose_answer_was_lost_is_finished_as_committed(
    env: PipelineEnv, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(HOT_PACK_RULES)
    start = time.time_ns() // 1_000_000 - 3_600_000
    cool = hot_frames(start, [20.0, 20.0])  # the partition's first batch: merged at once
    hot = hot_frames(start + 60_000, [60.0] * 4)  # raises test_hot_pack; its answer is lost
    outbox_rows = f"SELECT count(*) FROM {ps.SCHEMA}.alerts_outbox"
    with CommitCut(env.dsn) as cut:
        async with ps.serving(
            env,
            "commit-unknown",
            NEV_POSTGRES_DSN=cut.dsn,
            NEV_ALERTS_RULES_FILE=str(rules),
            # Long: the hot batch's tuples wait; only the stop merges them.
            NEV_STORAGE_LATEST_INTERVAL_MS="600000",
        ) as svc:
            await ps.produce_and_store(env, cool)
            cut.arm()
            await ps.produce_and_store(env, hot)
            assert cut.cut == 1, "the proxy never cut a COMMIT's answer"

            async def published() -> bool:
                # Sent and acknowledged while the worker runs: its outbox row deleted.
                return await count(env.dsn, outbox_rows) == 0

            await ps.until(published, timeout_s=30, what="the alert message published")
            log_tail = svc.tail()
            # No batch given up (the counter has no sample until one is).
            abandoned = [k for k in svc.metrics() if k.startswith("nev_ingest_batches_abandoned")]
            assert abandoned == [], log_tail
            assert svc.metric("nev_ingest_frames_written_total") == len(cool) + len(hot), log_tail
            assert await behind(env.dsn) == 1  # HOT_VIN's newest tuple waits for the merge
            assert any(
                r.get("msg", "").startswith("commit outcome was unknown") for r in svc.logs()
            ), log_tail
    # The graceful stop merged the pending tuples: latest_state has the hot batch's newest.
    assert await behind(env.dsn) == 0
    assert await ps.stored_rows(env.dsn) == ps.Expected.of([*cool, *hot]).rows
    messages = await ps.read_topic(env.kafka, env.alerts, expect=1)
    assert [r.key for r in messages] == [HOT_VIN.encode()]
    assert await count(env.dsn, f"SELECT count(*) FROM {ps.SCHEMA}.alerts") == 1


async def read_batch(env: PipelineEnv, settings: Settings) -> Batch:
    """Every record of the vehicle topic as one batch, as a worker builds it."""
    return await ps.read_batch(env, settings, [(TopicPartition(env.topic, p), 0) for p in range(4)])


async def no_rejects(rejected: list[tuple[int, str]]) -> None:
    assert rejected == [], f"the database rejected frames: {rejected}"


def one_attempt_sink(
    settings: Settings, name: str, alert_topics: dict[str, str], rules: Path
) -> StorageSink:
    """The pipeline's sink whose writer makes one attempt: a lost COMMIT answer comes out as
    ``TransientSinkError`` and the lane's retry is the sink's next ``write``."""
    return StorageSink(
        pools=shard_pool_params(settings, name),
        writer=replace(
            writer_params(settings), retry=RetryParams(attempts=1, initial=0.01, maximum=0.01)
        ),
        storage=storage_params(settings),
        metrics=PipelineMetrics(),
        alert_topics=alert_topics,
        rules_file=str(rules),
    )


async def test_the_sinks_retry_after_the_writer_gave_up_has_the_alert(
    env: PipelineEnv, tmp_path: Path
) -> None:
    """The writer gives up after the lost answer (one attempt: ``StorageUnavailable``); the
    lane writes the batch again through the sink, which finds it committed and hands back the
    alert message that attempt saved in the outbox, to publish now."""
    rules = tmp_path / "rules.toml"
    rules.write_text(HOT_PACK_RULES)
    start = time.time_ns() // 1_000_000 - 3_600_000
    await ps.produce(env.kafka, env.topic, hot_frames(start, [60.0] * 4))

    with CommitCut(env.dsn) as cut:
        environ = env.environ(NEV_POSTGRES_DSN=cut.dsn, NEV_ALERTS_RULES_FILE=str(rules))
        settings = load_settings(environ=environ)
        batch = await read_batch(env, settings)
        sink = one_attempt_sink(settings, "nev-test-commit-unknown", {env.topic: "vehicle"}, rules)
        await sink.start()
        try:
            await sink.on_partitions_assigned(batch.partitions)
            cut.arm()
            with pytest.raises(TransientSinkError, match="COMMIT got no answer"):
                await sink.write(batch, no_rejects)
            assert cut.cut == 1
            result = await sink.write(batch, no_rejects)
        finally:
            await sink.close()
    assert result.fenced == {}
    assert [(a.change, a.rule) for a in result.alerts] == [("raised", "test_hot_pack")]
    assert await count(env.dsn, f"SELECT count(*) FROM {ps.SCHEMA}.alerts") == 1
    assert await count(env.dsn, f"SELECT count(*) FROM {ps.SCHEMA}.alerts_outbox") == 1
    assert await ps.caught_up(env)


async def test_a_zombies_lost_commit_is_not_taken_for_its_own(
    env: PipelineEnv, tmp_path: Path
) -> None:
    """A zombie after a network split: the sink's COMMIT never reached the server (rolled
    back); the partitions' new owner wrote the same records (the same offset ranges). The
    zombie's retry must come out fenced: no alert message of its rolled-back transaction (the
    owner's is the one "raised"), no latest_state tuples of partitions it does not own (before:
    taken for its own commit, handing back a second "raised" whose outbox row never
    committed)."""
    rules = tmp_path / "rules.toml"
    rules.write_text(HOT_PACK_RULES)
    start = time.time_ns() // 1_000_000 - 3_600_000
    await ps.produce(env.kafka, env.topic, hot_frames(start, [60.0] * 4))

    def sink_of(settings: Settings, name: str) -> StorageSink:
        return one_attempt_sink(settings, name, {env.topic: "vehicle"}, rules)

    alerts_rows = f"SELECT count(*) FROM {ps.SCHEMA}.alerts"
    with CommitCut(env.dsn) as cut:
        # Long: a batch's tuples stay pending in the writer that committed it.
        pending = {"NEV_STORAGE_LATEST_INTERVAL_MS": "600000", "NEV_ALERTS_RULES_FILE": str(rules)}
        through = load_settings(environ=env.environ(NEV_POSTGRES_DSN=cut.dsn, **pending))
        direct = load_settings(environ=env.environ(**pending))
        batch = await read_batch(env, through)
        again = await read_batch(env, direct)
        zombie = sink_of(through, "nev-test-zombie")
        owner = sink_of(direct, "nev-test-owner")
        await zombie.start()
        await owner.start()
        try:
            await zombie.on_partitions_assigned(batch.partitions)
            cut.arm(drop=True)
            with pytest.raises(TransientSinkError, match="COMMIT got no answer"):
                await zombie.write(batch, no_rejects)
            assert cut.cut == 1, "the proxy never dropped a COMMIT"
            assert await count(env.dsn, alerts_rows) == 0, "the zombie's attempt committed"
            await owner.on_partitions_assigned(again.partitions)
            mine = await owner.write(again, no_rejects)
            theirs = await zombie.write(batch, no_rejects)
            zombie_latest = zombie.writer_of(batch.shard).latest.parts
        finally:
            await zombie.close()
            await owner.close()
    assert [(a.change, a.rule) for a in mine.alerts] == [("raised", "test_hot_pack")]
    assert mine.fenced == {}
    assert theirs.alerts == [], "an alert message of a rolled-back transaction"
    assert set(theirs.fenced) == set(batch.next)
    assert not set(batch.next) & set(zombie_latest), "the owner's tuples kept by the zombie"
    assert await count(env.dsn, alerts_rows) == 1
