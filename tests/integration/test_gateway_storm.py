"""A reconnect storm, small (issue 13): every vehicle of a fleet connects and logs in through
the gateway at once, then sends; the service (``nev-ingest run``) stores every real-time frame
the gateway acknowledged exactly once - nothing lost, nothing duplicated. ``loadtest/storm.py``
is the large version."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from devtools.loadgen_gateway import GatewayPlan, run_via_gateway
from devtools.loadgen_send import Progress
from devtools.sim.scale import ScaleOptions, scale_messages
from ingest.config.load import load_settings
from ingest.gateway import Gateway
from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv

pytestmark = pytest.mark.integration

DEVICES = 300
ROUNDS = 4  # the login round's report, then three more


@pytest.fixture
async def gateway(env: PipelineEnv, tmp_path: Path) -> AsyncIterator[Gateway]:
    settings = load_settings(
        environ={
            "NEV_KAFKA_BOOTSTRAP_SERVERS": env.kafka,
            "NEV_KAFKA_TOPIC_VEHICLE": env.topic,
            "NEV_GATEWAY_LISTEN_VEHICLE": "127.0.0.1:0",
        }
    )
    gw = Gateway(settings)
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


async def test_a_login_storm_through_the_gateway_stores_every_acked_frame_once(
    env: PipelineEnv, gateway: Gateway
) -> None:
    interval_ms = 10_000
    # Dated in the recent past (inside the service's frame-time window), no corrupted frames:
    # every data frame the gateway acknowledges must become exactly one row.
    options = ScaleOptions(
        devices=DEVICES,
        mix=(("vehicle", 1),),
        interval_s=interval_ms / 1000,
        bad_ratio=0.0,
        reissue_share=0.0,
        start_ms=time.time_ns() // 1_000_000 - ROUNDS * interval_ms,
    )
    messages = list(itertools.islice(scale_messages(options), DEVICES * ROUNDS))
    plan = GatewayPlan(
        targets=(("127.0.0.1", gateway.ports["vehicle"]),), sources=("127.0.0.2", "127.0.0.3")
    )
    async with ps.serving(env, "storm") as svc:
        # rate 0: every device connects and logs in at once (256 connects in flight).
        _, stats = await run_via_gateway(
            plan, iter(messages), devices=DEVICES, rate=0, max_frames=None, max_seconds=120,
            progress=Progress(None, None),
        )  # fmt: skip
        assert stats.opened == DEVICES and stats.connect_failed == 0
        assert stats.logins == DEVICES and not stats.bad_answers and not stats.data_refused
        # Each vehicle's logout was answered, so everything it sent before is on Kafka.
        sent_data = sum(m.kind == "realtime" for m in messages)
        assert stats.acked == stats.data_sent == sent_data
        await ps.until(lambda: ps.caught_up(env), timeout_s=120, what="every offset stored")
        rows = await ps.stored_rows(env.dsn)
        assert max(rows.values()) == 1  # nothing duplicated
        assert sum(rows.values()) == stats.acked  # nothing lost
        assert len({vin for vin, _ in rows}) == DEVICES
        assert svc.metric("nev_ingest_duplicate_rows_skipped_total") == 0
    assert gateway.metrics.registry.get_sample_value(
        "nev_gateway_logins_total", {"kind": "vehicle", "login": "login", "result": "ok"}
    ) == float(DEVICES)
