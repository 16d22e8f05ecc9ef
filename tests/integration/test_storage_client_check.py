"""The writer's connections carry ``client_connection_check_interval`` (PostgreSQL 14+): the
server looks every second whether a running statement's client is still there, so a
statement waiting on a lock whose client went away (a batch given up at the write timeout, a
worker killed) ends with its backend at once, not when ``statement_timeout`` fires (never,
here: 0), holding the locks it took meanwhile."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from storage import PoolParams, StorageWriter, WriterParams
from storage.connect import CLIENT_CHECK_MS
from tests.integration import pipeline_support as ps

pytestmark = pytest.mark.integration


async def test_a_writer_connection_checks_its_client(migrated_database: str) -> None:
    params = PoolParams(dsn=migrated_database, statement_timeout_ms=0, application_name="cc")
    writer = await StorageWriter.open(params, WriterParams(consumer_group="cc"))
    holder = await asyncpg.connect(migrated_database)
    try:
        async with writer.pool.acquire() as conn:
            shown = await conn.fetchval("SHOW client_connection_check_interval")
            assert shown == f"{CLIENT_CHECK_MS // 1000}s"
        # The pool's reset on release (RESET ALL) keeps it: it came in the startup packet.
        async with writer.pool.acquire() as conn:
            assert await conn.fetchval("SHOW client_connection_check_interval") == shown
        # A writer connection waiting on a lock, then dropped by its client.
        tx = holder.transaction()
        await tx.start()
        await holder.execute("LOCK TABLE nev.consumer_offsets IN ACCESS EXCLUSIVE MODE")
        conn = await writer.pool.acquire()
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        waiting = asyncio.ensure_future(conn.execute("SELECT count(*) FROM nev.consumer_offsets"))

        async def wait_event() -> str | None:
            # Not on ``holder``: in its transaction pg_stat_activity is a snapshot.
            watcher = await asyncpg.connect(migrated_database)
            try:
                event: str | None = await watcher.fetchval(
                    "SELECT coalesce(wait_event_type, 'none') FROM pg_stat_activity WHERE pid = $1",
                    pid,
                )
                return event
            finally:
                await watcher.close()

        async def on_lock() -> bool:
            return await wait_event() == "Lock"

        async def backend_gone() -> bool:
            return await wait_event() is None

        await ps.until(on_lock, timeout_s=30, what="the writer connection to wait on the lock")
        conn.terminate()
        await asyncio.gather(waiting, return_exceptions=True)
        # Held by the open transaction, the lock stays: only the client check ends the wait.
        await ps.until(backend_gone, timeout_s=30, what="the dropped client's backend to end")
        await tx.rollback()
    finally:
        await holder.close()
        await writer.close()
