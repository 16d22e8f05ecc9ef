"""A shard that hangs is a failing shard: the write transaction has a time limit
(``WriterParams.write_timeout_s``, storage.write_timeout_s) and every connection a TCP user
timeout and keepalives, so neither a lock wait nor a peer gone silent holds a write for the
server's statement timeout or the kernel's ~15 min of retransmissions.

The tests' own deadline (``asyncio.wait_for``) only keeps a hang from hanging the suite: it is
what fails without the limit."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from contract.clock import CHINA_TZ
from devtools.sim.synthetic import frame_rows, vin
from storage import (
    OffsetRange,
    PoolParams,
    RetryParams,
    StorageUnavailable,
    StorageWriter,
    WriterParams,
)
from storage.batch import WriterHooks

pytestmark = pytest.mark.integration

TP = ("nev.vehicle.raw", 0)
T0 = datetime.now(CHINA_TZ).replace(microsecond=0) - timedelta(hours=1)
RETRY = RetryParams(attempts=2, initial=0.01, maximum=0.01)
DEADLINE_S = 90  # far above the 1 s limit: reached only when nothing cuts the hang


class _Seen(WriterHooks):
    def __init__(self) -> None:
        self.errors: list[BaseException] = []

    def on_retry(self, attempt: int, delay_s: float, error: BaseException) -> None:
        self.errors.append(error)


def _frames(n: int, minute: int = 0) -> list[Any]:
    return [frame_rows(vin(i), T0 + timedelta(minutes=minute), seq=i) for i in range(n)]


async def _writer(dsn: str, hooks: WriterHooks) -> StorageWriter:
    # No server-side statement timeout: only the writer's own limit can end a lock wait.
    pool = PoolParams(dsn=dsn, statement_timeout_ms=0, application_name="nev-test-timeout")
    params = WriterParams(consumer_group="g", retry=RETRY, write_timeout_s=1.0)
    return await StorageWriter.open(pool, params, hooks=hooks)


async def test_a_lock_wait_past_the_write_timeout_fails_the_write(migrated_database: str) -> None:
    seen = _Seen()
    writer = await _writer(migrated_database, seen)
    holder = await asyncpg.connect(migrated_database)
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute("LOCK TABLE nev.consumer_offsets IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(StorageUnavailable, match="write_timeout_s"):
            await asyncio.wait_for(
                writer.write_batch(_frames(5), {TP: OffsetRange(None, 5)}), DEADLINE_S
            )
        assert seen.errors and all(isinstance(e, TimeoutError) for e in seen.errors)
        await tx.rollback()
        # The dropped connections were replaced: the next write goes through.
        done = await asyncio.wait_for(
            writer.write_batch(_frames(5, 1), {TP: OffsetRange(None, 5)}), DEADLINE_S
        )
        assert done.committed == {TP: 5}
    finally:
        await holder.close()
        await writer.close()


@contextlib.asynccontextmanager
async def _proxy(dsn: str) -> AsyncIterator[tuple[str, asyncio.Event]]:
    """``dsn`` through a TCP proxy, and the event that freezes it: it then reads on but sends
    nothing either way (a hung server, or a link that swallows everything)."""
    url = urlsplit(dsn)
    host, port = url.hostname or "127.0.0.1", url.port or 5432
    frozen = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()
    streams: list[asyncio.StreamWriter] = []

    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await src.read(65536):
                if not frozen.is_set():
                    dst.write(data)
                    await dst.drain()
        dst.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection(host, port)
        streams.extend((writer, up_w))
        for task in (pipe(reader, up_w), pipe(up_r, writer)):
            t = asyncio.create_task(task)
            tasks.add(t)
            t.add_done_callback(tasks.discard)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    proxied = urlunsplit(url._replace(netloc=f"{url.username}@127.0.0.1:{_port(server)}"))
    try:
        yield proxied, frozen
    finally:
        server.close()
        for t in list(tasks):
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for stream in streams:
            stream.close()
        await server.wait_closed()


def _port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


async def test_a_server_gone_silent_fails_the_write(migrated_database: str) -> None:
    seen = _Seen()
    async with _proxy(migrated_database) as (dsn, frozen):
        writer = await _writer(dsn, seen)
        try:
            frozen.set()
            with pytest.raises(StorageUnavailable):
                await asyncio.wait_for(
                    writer.write_batch(_frames(5), {TP: OffsetRange(None, 5)}), DEADLINE_S
                )
            # The transaction cut; the retry's new connection then times out connecting.
            assert isinstance(seen.errors[0], TimeoutError)
            assert "write_timeout_s" in str(seen.errors[0])
        finally:
            # Its connections are dead or wait on the frozen proxy: dropped, not closed.
            writer.pool.terminate()


async def test_connections_have_keepalives_and_a_tcp_user_timeout(
    migrated_database: str,
) -> None:
    params = PoolParams(dsn=migrated_database, tcp_user_timeout_s=7.0)
    writer = await StorageWriter.open(params, WriterParams(consumer_group="g"))
    try:
        async with writer.pool.acquire() as conn:
            sock = conn._con._transport.get_extra_info("socket")
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 7000
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 7
    finally:
        await writer.close()
