"""Fixtures shared by the pipeline's integration tests.

``env``, ``cluster_env`` and ``make_env`` take the same five ingredients (``duplicates`` pairs
their signatures): pytest injects fixtures by parameter name, so each fixture names them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from storage import LoaderKind, PoolParams, RetryParams, StorageWriter, WriterParams
from storage.connect import connect
from tests.integration.pipeline_support import PipelineEnv, make_env, migrate_database
from tests.integration.private_services import PrivateCluster, PrivateKafka


@pytest.fixture
async def migrated_database(fresh_database: str) -> str:
    """A fresh database with the current schema (plain mode: the dev cluster has no
    timescaledb)."""
    await migrate_database(fresh_database)
    return fresh_database


@pytest.fixture
async def migrated_conn(migrated_database: str) -> AsyncIterator[Any]:
    """A connection to ``migrated_database``, closed afterwards."""
    c = await connect(PoolParams(dsn=migrated_database))
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def env(
    kafka_bootstrap: str,
    fresh_database: str,
    unique_topic: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> PipelineEnv:
    """A private topic, group and database for one run of the service (the shared dev stack's
    Kafka and PostgreSQL). A test module that needs another database overrides ``env``."""
    return await make_env(kafka_bootstrap, fresh_database, unique_topic, unique_name, tmp_path)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[PrivateCluster]:
    """A PostgreSQL cluster of this test's own, which the test may stop and start."""
    pg = PrivateCluster(tmp_path / "pg")
    try:
        yield pg
    finally:
        pg.stop()  # a no-op when the test left it stopped
        pg.remove()


@pytest.fixture
async def cluster_env(
    kafka_bootstrap: str,
    cluster: PrivateCluster,
    unique_topic: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> PipelineEnv:
    """``env`` on the test's own PostgreSQL cluster (``cluster``) instead of the shared one."""
    return await make_env(kafka_bootstrap, cluster.dsn, unique_topic, unique_name, tmp_path)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateKafka]:
    """A Kafka broker of this test's own (topics veh, chg, tcec, bat, dlq, alerts), to stop
    and start."""
    kafka = PrivateKafka(tmp_path / "kafka")
    try:
        yield kafka
    finally:
        kafka.stop()


@pytest.fixture
async def broker_env(
    broker: PrivateKafka,
    fresh_database: str,
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> PipelineEnv:
    """``env`` on the test's own broker (``broker``) and a fresh, migrated database."""
    await migrate_database(fresh_database)
    return PipelineEnv(
        kafka=broker.bootstrap,
        dsn=fresh_database,
        topic="veh",
        dlq="dlq",
        alerts="alerts",
        group=unique_name("group"),
        tmp=tmp_path,
    )


OpenWriter: TypeAlias = Callable[..., Coroutine[Any, Any, StorageWriter]]


@pytest.fixture
async def open_writers(
    migrated_database: str, request: pytest.FixtureRequest
) -> AsyncIterator[OpenWriter]:
    """Opens writers on ``migrated_database``: WriterParams' fields as keywords (consumer group
    "g" and a quick retry unless given); every one is closed after the test."""
    name = f"nev-test-{request.module.__name__.rsplit('.', 1)[-1]}"[:63]
    opened: list[StorageWriter] = []

    async def open_writer(**fields: Any) -> StorageWriter:
        fields.setdefault("consumer_group", "g")
        fields.setdefault("retry", RetryParams(attempts=3, initial=0.01, maximum=0.05))
        pool = PoolParams(dsn=migrated_database, application_name=name)
        w = await StorageWriter.open(pool, WriterParams(**fields))
        opened.append(w)
        return w

    yield open_writer
    for w in opened:
        await w.close()


@pytest.fixture(params=[LoaderKind.COPY, LoaderKind.UNNEST], ids=["copy", "unnest"])
async def loader_writer(open_writers: OpenWriter, request: pytest.FixtureRequest) -> StorageWriter:
    """A writer on ``migrated_database``, once with each loader (COPY and unnest)."""
    return await open_writers(loader=request.param)


@pytest.fixture
def second_database(
    postgres_dsn: str, unique_name: Callable[[str], str]
) -> Iterator[tuple[str, str]]:
    """(name, DSN) of a second database on the dev cluster (a second shard), dropped
    afterwards (let in again first: a test may have set ALLOW_CONNECTIONS false)."""
    name = unique_name("shard1")
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = urlunsplit(urlsplit(postgres_dsn)._replace(path=f"/{name}"))
    try:
        yield name, dsn
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
