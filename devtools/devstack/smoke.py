"""``nev-ingest devstack smoke``: prove the running stack works end to end, in a few seconds.

Produces a message to a fresh topic and reads it back in a consumer group with a commit, and
writes a row to PostgreSQL and reads it back (plus a hypertable on TimescaleDB when it runs).
It deletes its topic at the end and leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from devtools.devstack import postgres as pgdev
from devtools.devstack.kafka import admin_options, delete_topics, ensure_topics
from devtools.devstack.stack import DEFAULT_SERVICES, Paths, not_running
from devtools.devstack.state import StackState
from devtools.settings import DevSettings
from ingest.errors import UserError

TIMEOUT_S = 60.0


def run_smoke(settings: DevSettings) -> list[str]:
    state = StackState.load(Paths.from_settings(settings).state_dir)
    missing = [name for name in DEFAULT_SERVICES if state.running(name) is None]
    if missing:
        raise not_running(missing, state)
    kafka_svc, pg_svc = state.services["kafka"], state.services["postgres"]
    # A --secure stack: Kafka as its admin (the smoke topic is no role's), PostgreSQL as the
    # service role over TLS (verify-full), as `devstack env` points the service.
    options = admin_options(kafka_svc)
    files = pgdev.secure_files(pg_svc)
    pg_kwargs: dict[str, Any] = {}
    if files is not None:
        pg_kwargs = {"password": files.password("postgres-service"), "ssl": _verify_full(files)}
    timescale = state.running("timescale")
    return asyncio.run(
        _smoke(
            kafka_svc.url,
            options,
            pg_svc.url,
            pg_kwargs,
            timescale.url if timescale is not None else None,
        )
    )


def _verify_full(files: Any) -> Any:
    import ssl

    return ssl.create_default_context(cafile=str(files.ca))


async def _smoke(
    bootstrap: str,
    options: dict[str, Any],
    dsn: str,
    pg_kwargs: dict[str, Any],
    timescale_dsn: str | None,
) -> list[str]:
    lines = [await _kafka(bootstrap, options), await _postgres(dsn, pg_kwargs)]
    if timescale_dsn is not None:
        lines.append(await _timescale(timescale_dsn))
    return lines


async def _kafka(bootstrap: str, options: dict[str, Any]) -> str:
    began = time.monotonic()
    # prune-topics also takes this name (nev.smoke.<8 hex>), for a smoke killed half-way.
    topic = f"nev.smoke.{uuid.uuid4().hex[:8]}"
    try:
        await ensure_topics(bootstrap, {topic: 1}, 1, options)
        await _round_trip(bootstrap, options, topic)
    except BaseException:
        # The smoke's own error is the one to show; a delete that fails too is for prune-topics.
        with contextlib.suppress(Exception):
            await delete_topics(bootstrap, {topic}.__contains__, options)
        raise
    # Every run made a topic and left it: the broker's partitions only grew.
    await delete_topics(bootstrap, {topic}.__contains__, options)
    took = (time.monotonic() - began) * 1000
    return (
        f"kafka {bootstrap}: produced, consumed in a group and committed 1 message on {topic}, "
        f"then deleted it ({took:.0f} ms)"
    )


async def _round_trip(bootstrap: str, options: dict[str, Any], topic: str) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    payload = f"smoke {datetime.now(UTC).isoformat()}".encode()
    async with AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **options) as producer:
        await producer.send_and_wait(topic, payload, key=b"smoke")
    consumer = AIOKafkaConsumer(
        topic,
        **options,
        bootstrap_servers=bootstrap,
        group_id=f"{topic}.group",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        async with asyncio.timeout(TIMEOUT_S):
            record = await consumer.getone()
        await consumer.commit()
    except TimeoutError:
        raise UserError(
            f"kafka: produced to {topic} but read nothing back in {TIMEOUT_S:g}s"
        ) from None
    finally:
        await consumer.stop()
    if record.value != payload:
        raise UserError(f"kafka: read back {record.value!r}, expected {payload!r}")


async def _postgres(dsn: str, kwargs: dict[str, Any]) -> str:
    import asyncpg

    began = time.monotonic()
    conn = await asyncpg.connect(dsn, **kwargs)
    try:
        async with conn.transaction():
            await conn.execute("CREATE TEMP TABLE smoke (vin text, ts timestamptz) ON COMMIT DROP")
            now = datetime.now(UTC)
            await conn.copy_records_to_table("smoke", records=[("LSMOKE00000000001", now)])
            row = await conn.fetchrow("SELECT vin, ts FROM smoke")
        version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    if row is None or row["ts"] != now:
        raise UserError(f"postgres: wrote a row but read back {row!r}")
    took = (time.monotonic() - began) * 1000
    return f"postgres {version}: wrote (binary COPY) and read back 1 row ({took:.0f} ms)"


# Same steps as _postgres (connect, write, read back, time it) with TimescaleDB's own statements.
async def _timescale(dsn: str) -> str:
    import asyncpg

    began = time.monotonic()
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute("CREATE TABLE smoke_ht (ts timestamptz NOT NULL, v int)")
            await conn.execute("SELECT create_hypertable('smoke_ht', by_range('ts'))")
            await conn.execute("INSERT INTO smoke_ht VALUES (now(), 1)")
            count = await conn.fetchval("SELECT count(*) FROM smoke_ht")
            await conn.execute("DROP TABLE smoke_ht")
        version = await conn.fetchval(
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
        )
    finally:
        await conn.close()
    if count != 1:
        raise UserError(f"timescale: inserted 1 row into a hypertable, counted {count}")
    took = (time.monotonic() - began) * 1000
    return f"timescaledb {version} (PGlite): hypertable created, 1 row in and out ({took:.0f} ms)"
