"""The Kafka broker restarted during a run: the workers ride it out (no crash), and every frame,
produced before and after the restart, is stored exactly once. Uses a private broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devtools.devstack import Paths, ServiceState
from devtools.devstack import kafka as kafkadev
from devtools.settings import load_dev_settings
from devtools.sim.fleet import FleetOptions, fleet_messages
from tests.integration.pipeline_support import (
    Expected,
    PipelineEnv,
    Service,
    caught_up,
    migrate_database,
    produce,
    ready,
    stored_offsets,
    stored_rows,
    until,
)

pytestmark = pytest.mark.integration


class PrivateKafka:
    """A single-node KRaft broker of this test's own (started by the devstack code)."""

    def __init__(self, home: Path) -> None:
        settings = load_dev_settings()
        self._home = home
        self._cache = Paths.from_settings(settings).cache_dir
        self._version = settings.devstack.kafka_version
        self.state = self._up(None)

    def _up(self, previous: ServiceState | None) -> ServiceState:
        return kafkadev.up(
            self._home,
            previous,
            cache_dir=self._cache,
            version=self._version,
            heap="512m",
            topics={"veh": 4, "dlq": 1, "alerts": 1},
            replication_factor=1,
            timeout_s=180.0,
        )

    @property
    def bootstrap(self) -> str:
        return self.state.url

    def stop(self) -> None:
        kafkadev.down(self.state, 60)

    def start(self) -> None:
        port = self.state.port
        self.state = self._up(self.state)
        assert self.state.port == port, "restarted on another port; clients cannot follow"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateKafka]:
    kafka = PrivateKafka(tmp_path / "kafka")
    try:
        yield kafka
    finally:
        kafka.stop()


async def test_broker_restart_mid_run_loses_and_duplicates_nothing(
    broker: PrivateKafka,
    fresh_database: str,
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    await migrate_database(fresh_database)
    env = PipelineEnv(
        kafka=broker.bootstrap,
        dsn=fresh_database,
        topic="veh",
        dlq="dlq",
        alerts="alerts",
        group=unique_name("group"),
        tmp=tmp_path,
    )
    now_ms = time.time_ns() // 1_000_000
    fleet = FleetOptions(vehicles=200, minutes=10, bad_ratio=0.0, runaway=False, end_ms=now_ms)
    messages = list(fleet_messages(fleet))
    half = len(messages) // 2
    expected = Expected.of(messages)

    svc = Service(env, "broker")
    try:
        await until(lambda: ready(svc), timeout_s=60, what="the service to be ready")
        await produce(env.kafka, env.topic, messages[:half], rate=3000)

        async def first_half_stored() -> bool:
            return sum((await stored_offsets(env.dsn, env.group, env.topic)).values()) >= half

        await until(first_half_stored, timeout_s=60, what="the first half stored")
        await asyncio.to_thread(broker.stop)

        async def noticed() -> bool:
            return svc.metric("nev_ingest_worker_kafka_connected") == 0

        await until(noticed, timeout_s=60, what="the workers to notice the broker is gone")
        await asyncio.to_thread(broker.start)
        await produce(env.kafka, env.topic, messages[half:], rate=3000)
        await until(lambda: caught_up(env), timeout_s=180, what="every offset stored")
        await until(lambda: ready(svc), timeout_s=60, what="ready again")

        rows = await stored_rows(env.dsn)
        assert rows == expected.rows  # nothing lost
        assert svc.metric("nev_ingest_duplicate_rows_skipped_total") == 0  # nothing twice
        assert svc.metric("nev_ingest_worker_restarts_total") == 0  # ridden out, no crash
    finally:
        code = svc.stop()
        log_tail = svc.tail()
    assert code == 0, log_tail
