"""End to end through the real service: frames on Kafka become rows once; bad frames and frames
outside the stored time window land in the dead-letter topic with their reason; SIGTERM exits
0."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest

from devtools.sim.fleet import Message, SimVehicle
from ingest.decoders import encode_frame
from ingest.decoders.errors import FrameError
from ingest.decoders.fast import decode_rows
from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.traffic import recent_fleet

pytestmark = pytest.mark.integration


def _far_future_frame() -> Message:
    """A valid frame dated 2035: outside the frame-time window (far ahead of its received_at),
    so the pipeline dead-letters it before the database, and stores nothing of it."""
    import random

    v = SimVehicle("LNEVFUTURE0000001", random.Random(3), 2016)
    v.step(10.0)
    t = int(datetime(2035, 1, 1, tzinfo=UTC).timestamp() * 1000)
    return Message(t, b"LNEVFUTURE0000001", encode_frame(v.frame(t)), "realtime")


async def test_rows_arrive_once_and_bad_frames_reach_the_dlq_with_reasons(env: PipelineEnv) -> None:
    messages = [*recent_fleet(80, 3, bad_ratio=0.04), _far_future_frame()]
    expected = ps.Expected.of(messages)
    future = ("LNEVFUTURE0000001", messages[-1].t_ms)
    del expected.rows[future]  # outside the time window
    assert sum(expected.bad.values()) >= 10, "the traffic must hold bad frames"

    async with ps.serving(env, "e2e") as svc:
        sent = await ps.produce_and_store(env, messages)
        assert sent.frames == len(messages)

        rows = await ps.stored_rows(env.dsn)
        assert rows == expected.rows  # every decodable frame, each exactly once
        assert svc.metric("nev_ingest_duplicate_rows_skipped_total") == 0

        n_dead = sum(expected.bad.values()) + 1
        dead = await ps.read_topic(env.kafka, env.dlq, expect=n_dead)
        reasons = Counter((ps.header(r.headers, "error.reason") or b"").decode() for r in dead)
        assert reasons == {**expected.bad, "time_out_of_window": 1}
        # A dead letter is the original record: same key, value and headers, plus the error.
        bad_values = set()
        for m in messages:
            try:
                decode_rows(m.value)
            except FrameError:
                bad_values.add((m.key, m.value))
        assert {(r.key, r.value) for r in dead} == {
            *bad_values,
            (messages[-1].key, messages[-1].value),
        }
        for r in dead:
            assert ps.header(r.headers, "source.topic") == env.topic.encode()
            assert int(ps.header(r.headers, "source.offset") or b"-1") >= 0
            assert ps.header(r.headers, "received_at") is not None  # original header kept
            assert ps.header(r.headers, "error.detail")
        late = next(
            r for r in dead if ps.header(r.headers, "error.reason") == b"time_out_of_window"
        )
        assert ps.header(late.headers, "error.stage") == b"decode"  # decided before the database

        for reason, n in expected.bad.items():
            assert svc.metric("nev_ingest_frames_dead_lettered_total", reason=reason) == n
        assert svc.metric("nev_ingest_frames_written_total") == sum(expected.rows.values()) + (
            expected.sessions
        )
        assert svc.metric("nev_ingest_end_to_end_latency_seconds_count") > 0
