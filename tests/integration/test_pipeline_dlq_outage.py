"""The dead-letter topic gone mid-run (deleted by mistake; the broker does not create topics): a
batch's dead letters cannot be acknowledged, so its transaction - which waits for them, a bounded
time, right before its commit - rolls back and the batch is retried. No stored offset moves past
a frame whose dead letter is not acknowledged; once the topic is back, every frame is stored once
and every dead letter is on it."""

from __future__ import annotations

from collections import defaultdict

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from ingest.decoders.errors import FrameError
from ingest.decoders.fast import decode_rows
from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.traffic import recent_fleet

pytestmark = pytest.mark.integration


def _bad(value: bytes) -> bool:
    try:
        decode_rows(value)
    except FrameError:
        return True
    return False


async def test_no_offset_is_stored_past_an_unacknowledged_dead_letter(env: PipelineEnv) -> None:
    messages = recent_fleet(40, 2, bad_ratio=0.05)
    expected = ps.Expected.of(messages)
    n_bad = sum(expected.bad.values())
    assert n_bad >= 3, "the traffic must hold bad frames"

    admin = AIOKafkaAdminClient(bootstrap_servers=env.kafka)
    await admin.start()
    try:
        # A short request timeout: the dead-letter send gives up on the missing topic quickly.
        async with ps.serving(env, "dlq-gone", NEV_KAFKA_REQUEST_TIMEOUT_MS="3000") as svc:
            await admin.delete_topics([env.dlq])
            await ps.produce(env.kafka, env.topic, messages)

            async def retrying() -> bool:
                try:
                    return svc.metric("nev_ingest_write_retries_total", stage="dlq") >= 2
                except AssertionError:
                    return False  # no retry yet: the labelled counter has no sample

            await ps.until(retrying, timeout_s=120, what="the dead-letter sends to be retried")
            # Where each partition's first bad frame sits: nothing at or after it is stored.
            first_bad: dict[int, int] = defaultdict(lambda: 1 << 62)
            for r in await ps.read_topic(env.kafka, env.topic, expect=len(messages)):
                if _bad(r.value):
                    first_bad[r.partition] = min(first_bad[r.partition], r.offset)
            stored = await ps.stored_offsets(env.dsn, env.group, env.topic)
            for partition, offset in first_bad.items():
                assert stored.get(partition, 0) <= offset, (partition, stored, dict(first_bad))
            database_retries = 'nev_ingest_write_retries_total{stage="database"}'
            # Kafka's failure, not the database's (the series exists from 0 for the alert rules)
            assert svc.metrics().get(database_retries, 0) == 0

            await admin.create_topics([NewTopic(env.dlq, 1, 1)])
            await ps.until(lambda: ps.caught_up(env), timeout_s=120, what="every offset stored")
            assert await ps.stored_rows(env.dsn) == expected.rows  # each frame exactly once
            assert svc.metric("nev_ingest_duplicate_rows_skipped_total") == 0
            dead = await ps.read_topic(env.kafka, env.dlq, expect=n_bad)
            bad_values = {(m.key, m.value) for m in messages if _bad(m.value)}
            # At least once: a send that failed halfway is sent whole again.
            assert {(r.key, r.value) for r in dead} == bad_values
            assert len(dead) >= n_bad
    finally:
        await admin.close()
