"""A secure dev stack of one test module's own (``devstack up --secure``'s code: Kafka on
SASL_SSL with SCRAM users and ACLs, PostgreSQL with TLS and scram-sha-256), and the TLS/SASL
versions of the pipeline helpers (pipeline_support's talk plaintext to the shared stack)."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from devtools.devstack import Paths, ServiceState
from devtools.devstack import kafka as kafkadev
from devtools.devstack import kafka_secure as ks
from devtools.devstack import postgres as pgdev
from devtools.devstack import postgres_secure as pgsec
from devtools.loadgen import LoadResult, produce_messages
from devtools.settings import load_dev_settings
from devtools.sim.fleet import Message
from ingest.errors import UserError
from storage.migrate import migrate
from storage.params import StorageParams
from tests.integration.pipeline_support import SCHEMA, PipelineEnv
from tests.integration.pipeline_support import read_topic as pipeline_read_topic

__all__ = ["SecureStack"]

# The default topic names (a broker of the module's own: nothing to share them with), so the
# stack's ACLs, made from the defaults, are the ones under test.
TOPICS = {
    "nev.vehicle.raw": 2,
    "nev.charger.raw": 1,
    "nev.charger.tcec": 1,
    "nev.battery.raw": 1,
    "nev.dlq": 1,
    "nev.alerts": 1,
}
GROUP_PREFIX = "nev-ingest"  # the service's ACLs allow groups with this prefix


class SecureStack:
    """Secure Kafka + PostgreSQL under ``home`` (its own CA, users and passwords)."""

    def __init__(self, home: Path) -> None:
        settings = load_dev_settings()
        self.home = home
        try:
            self.pg: ServiceState = pgdev.up(home, None, "", 120, secure=True)
        except BaseException:
            with contextlib.suppress(UserError):  # a server still starting: keep the error
                pgdev.remove_home(home, pgdev.NAME)  # a cluster made before the start failed
            raise
        try:
            self.kafka: ServiceState = kafkadev.up(
                home,
                None,
                cache_dir=Paths.from_settings(settings).cache_dir,
                version=settings.devstack.kafka_version,
                heap="512m",
                topics=TOPICS,
                replication_factor=1,
                timeout_s=180.0,
                secure=True,
                acl_group=GROUP_PREFIX,
            )
        except BaseException:
            self._stop_postgres()
            raise
        self.files = ks.SecureFiles(home / "tls")

    def stop(self) -> None:
        try:
            kafkadev.down(self.kafka, 60)
        finally:
            self._stop_postgres()

    def _stop_postgres(self) -> None:
        pgdev.down(self.pg, 60)
        pgdev.remove_home(self.home, self.pg.name, self.pg.extra.get("data_dir"))  # if in /tmp

    @property
    def bootstrap(self) -> str:
        return self.kafka.url

    def kafka_options(self, user: str) -> dict[str, Any]:
        return {"bootstrap_servers": self.bootstrap, **ks.client_options(self.files, user)}

    def pg_ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.files.ca))  # = verify-full

    def service_dsn(self, database: str) -> str:
        return pgdev.dsn(self.pg.port, database).replace(
            f"{pgdev.SUPERUSER}@", f"{pgsec.SERVICE_ROLE}@"
        )

    async def connect_service(self, database: str) -> Any:
        return await asyncpg.connect(
            self.service_dsn(database),
            password=self.files.password("postgres-service"),
            ssl=self.pg_ssl(),
        )

    async def new_database(self, name: str) -> str:
        """A database owned by the service role, migrated by it over TLS; its DSN."""
        admin = await asyncpg.connect(
            pgdev.dsn(self.pg.port, "postgres"),
            password=self.files.password("postgres-superuser"),
            ssl=self.pg_ssl(),
        )
        try:
            await admin.execute(f'CREATE DATABASE "{name}" OWNER {pgsec.SERVICE_ROLE}')
        finally:
            await admin.close()
        conn = await self.connect_service(name)
        try:
            await migrate(conn, StorageParams())
        finally:
            await conn.close()
        return self.service_dsn(name)

    def env(self, database: str, tmp: Path, group: str) -> PipelineEnv:
        """A ``PipelineEnv`` for ``nev-ingest run`` as the service user over TLS: the NEV_*
        settings ``devstack env`` prints for a secure stack."""
        extra = {
            **ks.settings_env(self.files, ks.SERVICE),
            **pgsec.settings_env(self.files),
        }
        return PipelineEnv(
            kafka=self.bootstrap,
            dsn=self.service_dsn(database),
            topic="nev.vehicle.raw",
            dlq="nev.dlq",
            alerts="nev.alerts",
            group=group,
            tmp=tmp,
            extra=extra,
            charger="nev.charger.raw",
            tcec="nev.charger.tcec",
            battery="nev.battery.raw",
            raw_partitions=5,
        )


async def produce(
    stack: SecureStack, user: str, topic: str, messages: Iterable[Message]
) -> LoadResult:
    producer = AIOKafkaProducer(**stack.kafka_options(user), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        return await produce_messages(producer, topic, messages, rate=0.0)
    finally:
        await producer.stop()


async def read_topic(
    stack: SecureStack, user: str, topic: str, *, expect: int, timeout_s: float = 30
) -> list[Any]:
    """Every record of ``topic`` as ``user`` (no group: only the topic's READ is needed)."""
    return await pipeline_read_topic(
        stack.bootstrap, topic, expect=expect, timeout_s=timeout_s, **stack.kafka_options(user)
    )


async def caught_up(stack: SecureStack, database: str, group: str, topic: str) -> bool:
    """The database holds the end offset of every non-empty partition of ``topic``."""
    consumer = AIOKafkaConsumer(**stack.kafka_options(ks.TOOLS))
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(TOPICS[topic])]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    conn = await stack.connect_service(database)
    try:
        rows = await conn.fetch(
            f"SELECT partition, next_offset FROM {SCHEMA}.consumer_offsets "
            "WHERE consumer_group = $1 AND topic = $2",
            group,
            topic,
        )
    finally:
        await conn.close()
    stored = {r["partition"]: r["next_offset"] for r in rows}
    return all(stored.get(tp.partition, 0) >= end for tp, end in ends.items() if end > 0)
