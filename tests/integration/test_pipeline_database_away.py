"""A worker started while its database is away (a private PostgreSQL cluster, stopped before
``nev-ingest run --skip-checks``): it waits for the key registry (shard 0) instead of crashing,
says so on /metrics and /readyz (Kafka not tried yet, the database unreachable), judges
signatures with the registry once it is back (neither an empty cache nor no check), and a stop
meanwhile is clean. Kafka is not tried at all while the database is awaited: the service's
way to the broker is a tap that counts connections (tests/integration/tcp_tap.py)."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from devtools.sim.fleet import Message
from devtools.sim.signing import RSA, make_key, realtime
from storage.keys import DeviceKey, add
from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.private_services import PrivateCluster
from tests.integration.tcp_tap import TcpTap

pytestmark = pytest.mark.integration

SIGNED = "LDBAWAY0000000001"
STRANGER = "LDBAWAYUNKNOWN001"
CANNOT_CONNECT = "signature keys: cannot connect"
# What /readyz says of a worker that waits for its database before it ever tried Kafka.
STARTING = ["starting: Kafka not tried yet", "database unreachable"]


@pytest.fixture
def env(cluster_env: PipelineEnv) -> PipelineEnv:
    return cluster_env  # the pipeline on this test's own PostgreSQL cluster, to stop


def away(env: PipelineEnv, name: str, **overrides: str) -> ps.Service:
    """The service started without its pre-start checks (they would refuse the stopped
    database): what an orchestrator does when the database comes up after the service."""
    return ps.Service(env, name, 1, args=("--skip-checks",), **overrides)


def msg(value: bytes) -> Message:
    return Message(0, value[4:21], value, "realtime")


def cannot_connect(svc: ps.Service) -> int:
    """How often the worker's keeper tried shard 0 in vain (one log line per attempt)."""
    return sum(str(r.get("msg", "")).startswith(CANNOT_CONNECT) for r in svc.logs())


async def test_a_worker_waits_for_the_key_registry_then_judges_with_it(
    env: PipelineEnv, cluster: PrivateCluster, tmp_path: Path
) -> None:
    key = make_key(tmp_path, RSA)
    conn = await asyncpg.connect(env.dsn)
    try:
        await add(conn, ps.SCHEMA, DeviceKey(SIGNED, RSA, key.public_pem, "admin"))
    finally:
        await conn.close()
    await asyncio.to_thread(cluster.stop)
    now = (time.time_ns() // 1_000_000_000 - 60) * 1000  # whole seconds, as frames carry
    good = [realtime(SIGNED, now + i * 1000, key) for i in range(5)]
    stranger = realtime(STRANGER, now + 10_000, key)  # a VIN the registry has no key for

    svc = away(env, "keys-away", NEV_SECURITY_SIGNATURES="reject", NEV_SECURITY_VERIFY="every")
    try:
        # Two attempts in vain (5 s apart): the worker waited through a retry, it did not crash.
        await ps.until(
            lambda: asyncio.sleep(0, cannot_connect(svc) >= 2),
            timeout_s=60,
            what="two attempts to reach the key registry",
        )
        assert svc.metric("nev_ingest_worker_restarts_total") == 0, svc.tail()
        waiting = svc.worker_pids()
        assert len(waiting) == 1, svc.tail()
        # The frames come while the database is away; none may be judged before the registry
        # is loaded (an empty cache would reject the registered vehicle as unknown_key).
        await ps.produce(env.kafka, env.topic, [*map(msg, good), msg(stranger)])

        await asyncio.to_thread(cluster.start)
        await ps.until(lambda: ps.caught_up(env), timeout_s=90, what="every offset stored")
        stored = await ps.stored_rows(env.dsn)
        assert stored == Counter({(SIGNED, now + i * 1000): 1 for i in range(5)})
        (dead,) = await ps.read_topic(env.kafka, env.dlq, expect=1)
        assert dead.value == stranger
        assert ps.header(dead.headers, "error.reason") == b"bad_signature"
        assert b"unknown_key" in (ps.header(dead.headers, "error.detail") or b"")
        assert svc.metric("nev_ingest_signature_checks_total", status="valid") == len(good)
        # The same worker, never restarted: it waited, then worked.
        assert svc.worker_pids() == waiting
        assert svc.metric("nev_ingest_worker_restarts_total") == 0
    finally:
        code = svc.stop()
    assert code == 0, svc.tail()


async def test_kafka_not_tried_while_the_database_is_awaited(
    env: PipelineEnv, cluster: PrivateCluster
) -> None:
    await asyncio.to_thread(cluster.stop)
    # The service reaches the real broker through a tap that counts connections: the gauge
    # below only changes on a failed attempt, so it cannot tell "not tried" from "tried and
    # reached"; the tap can (every Kafka client opens a bootstrap connection first).
    with TcpTap(env.kafka) as tap:
        svc = away(env, "db-away", NEV_KAFKA_BOOTSTRAP_SERVERS=tap.address)
        try:
            seen: list[Any] = []

            async def starting() -> bool:
                seen[:] = svc.readyz_body().get("workers", [])
                return any(w["problems"] == STARTING for w in seen)

            try:
                await ps.until(starting, timeout_s=60, what="/readyz to say the worker is starting")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; /readyz said {seen}") from None
            # Two attempts at the key registry (5 s apart): time enough for a worker that
            # would try Kafka meanwhile to have done it.
            await ps.until(
                lambda: asyncio.sleep(0, cannot_connect(svc) >= 2),
                timeout_s=60,
                what="two attempts to reach the key registry",
            )
            assert tap.connections == 0, "Kafka was tried while the database was away"
            assert svc.readyz() == 503
            # Neither reached nor unreachable: NevIngestKafkaUnreachable must stay quiet.
            assert math.isnan(svc.metric("nev_ingest_worker_kafka_connected"))
            assert svc.metric("nev_ingest_worker_db_connected") == 0

            await asyncio.to_thread(cluster.start)
            await ps.until(
                lambda: ps.ready(svc), timeout_s=90, what="ready once the database is back"
            )
            assert tap.connections > 0  # the tap is the service's way to Kafka: the check holds
            assert svc.metric("nev_ingest_worker_kafka_connected") == 1
            assert svc.metric("nev_ingest_worker_db_connected") == 1
            assert svc.metric("nev_ingest_worker_restarts_total") == 0
        finally:
            code = svc.stop()
    assert code == 0, svc.tail()


async def test_a_stop_while_the_database_is_awaited_exits_cleanly(
    env: PipelineEnv, cluster: PrivateCluster
) -> None:
    await asyncio.to_thread(cluster.stop)
    svc = away(env, "stop-away")
    try:
        await ps.until(
            lambda: asyncio.sleep(0, cannot_connect(svc) >= 1),
            timeout_s=60,
            what="the worker to wait for the key registry",
        )
    finally:
        code = svc.stop()
    # Nothing was fetched, so there is nothing to flush: exit 0, as a stop while Kafka is
    # awaited does, and no "worker failed" traceback.
    assert code == 0, svc.tail()
    assert not [r for r in svc.logs() if r.get("msg") == "worker failed"], svc.tail()
