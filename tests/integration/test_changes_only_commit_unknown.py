"""A changes-only write (alert changes without frames: a rules reload's clears, an idle
worker's) whose COMMIT answer was lost, or whose COMMIT was lost (storage/unsure.py).

Such a transaction stores no offsets, so no fence shows whether it committed. The retry asks
the transaction's own status: committed - finished as committed, its alert messages handed
back once, nothing written again; not committed - written once by the retry. The retry is
the writer's own (its next attempt), or, the writer making one attempt, the lane's next
``write`` of the same batch."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ingest.config.load import load_settings
from ingest.pipeline.batch import Batch
from ingest.pipeline.metrics import PipelineMetrics
from ingest.pipeline.sink import TransientSinkError
from ingest.pipeline.storage_sink import StorageSink
from ingest.wiring import shard_pool_params, storage_params, writer_params
from tests.integration import pipeline_support as ps
from tests.integration.commit_cut import CommitCut
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.test_pipeline_commit_unknown import (
    count,
    no_rejects,
    one_attempt_sink,
    read_batch,
)
from tests.integration.traffic import HOT_PACK_RULES, hot_frames

pytestmark = pytest.mark.integration

# The reload swaps test_hot_pack for another rule: its open alert is cleared by the change.
OTHER_RULES = HOT_PACK_RULES.replace('id = "test_hot_pack"', 'id = "test_other_rule"')


@pytest.mark.parametrize("lane", [True, False], ids=["lane-retry", "writer-retry"])
@pytest.mark.parametrize("drop", [False, True], ids=["answer-lost", "commit-lost"])
async def test_a_changes_only_write_is_not_written_twice(
    env: PipelineEnv, tmp_path: Path, drop: bool, lane: bool
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(HOT_PACK_RULES)
    start = time.time_ns() // 1_000_000 - 3_600_000
    await ps.produce(env.kafka, env.topic, hot_frames(start, [60.0] * 4))
    cleared = (
        f"SELECT count(*) FROM {ps.SCHEMA}.alerts_outbox "
        """WHERE convert_from(msg_value, 'UTF8') LIKE '%"type":"cleared"%'"""
    )
    with CommitCut(env.dsn) as cut:
        environ = env.environ(NEV_POSTGRES_DSN=cut.dsn, NEV_ALERTS_RULES_FILE=str(rules))
        settings = load_settings(environ=environ)
        batch = await read_batch(env, settings)
        name, topics = "nev-test-changes-only", {env.topic: "vehicle"}
        if lane:
            sink = one_attempt_sink(settings, name, topics, rules)
        else:
            sink = StorageSink(
                pools=shard_pool_params(settings, name),
                writer=writer_params(settings),
                storage=storage_params(settings),
                metrics=PipelineMetrics(),
                alert_topics=topics,
                rules_file=str(rules),
            )
        await sink.start()
        try:
            await sink.on_partitions_assigned(batch.partitions)
            raised = await sink.write(batch, no_rejects)
            rules.write_text(OTHER_RULES)
            sink.reload_rules()
            assert sink.has_pending_changes()
            changes = Batch(batch.generation, changes_only=True)
            cut.arm(drop, copied=False)
            if lane:
                with pytest.raises(TransientSinkError, match="COMMIT got no answer"):
                    await sink.write(changes, no_rejects)
                assert await count(env.dsn, cleared) == (0 if drop else 1)
            retried = await sink.write(changes, no_rejects)
            assert cut.cut == 1, "the proxy never cut a COMMIT"
        finally:
            await sink.close()
    assert [(a.change, a.rule) for a in raised.alerts] == [("raised", "test_hot_pack")]
    assert [(a.change, a.rule) for a in retried.alerts] == [("cleared", "test_hot_pack")]
    # One message for the clear: the raise's row and the clear's, nothing written twice.
    assert await count(env.dsn, cleared) == 1
    assert await count(env.dsn, f"SELECT count(*) FROM {ps.SCHEMA}.alerts_outbox") == 2
    alerts = f"SELECT count(*) FROM {ps.SCHEMA}.alerts"
    assert await count(env.dsn, alerts) == 1
    assert await count(env.dsn, f"{alerts} WHERE cleared_at IS NOT NULL") == 1
