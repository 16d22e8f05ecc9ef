"""Connections: what the server is and supports, and an asyncpg pool set up for the writer.

The TimescaleDB test engine (PGlite over pglite-socket) differs from a PostgreSQL server in
five ways that matter here: it has no COPY FROM STDIN (the attempt breaks the engine); it
serves one connection at a time; all connections share one backend, so session state leaks
from one connection to the next and the startup packet's settings are not applied (asyncpg's
named prepared statements collide, search_path is whatever the last client left); and it
never closes the socket after a Terminate message, so a graceful ``close()`` waits forever.
``detect`` recognises it from ``version()`` (compiled by emscripten) and this module adapts:
one connection, no statement cache, the session settings SET on every connect and pool
acquire, the unnest loader, and ``PGliteConnection`` whose ``close()`` drops the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg

from storage.errors import refused
from storage.params import LoaderKind, check_identifier

__all__ = [
    "PGliteConnection",
    "PoolParams",
    "ServerInfo",
    "apply_session",
    "connect",
    "create_pool",
    "detect",
    "probe",
]

# PGlite serves one connection at a time and frees the slot only after the previous client's
# socket closed; a reconnect right after a close can be refused. Retry that briefly.
_PGLITE_CONNECT_TRIES = 50
_PGLITE_CONNECT_PAUSE_S = 0.05
# Keepalive probes on an idle connection: the first after this idle time (or the user
# timeout, if shorter), then every interval; a peer silent to COUNT of them is gone.
_KEEPALIVE_IDLE_S = 10
_KEEPALIVE_INTERVAL_S = 5
_KEEPALIVE_COUNT = 3
# How often the server looks whether the client of a running statement is still connected
# (``client_connection_check_interval``, PostgreSQL 14+): a client gone (a batch given up at the
# write timeout, a worker killed) ends its backend within this, instead of the backend waiting
# on a lock until ``statement_timeout``, holding the locks it already took meanwhile.
CLIENT_CHECK_MS = 1000


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What the server at a DSN is and supports."""

    version: str
    pglite: bool
    timescaledb: bool  # the extension is available (installed or installable)
    # ``client_connection_check_interval`` can be set: PostgreSQL 14+ on a platform that can
    # watch a socket (Linux; not PGlite's WebAssembly build)
    client_check: bool = False

    @property
    def copy_from_stdin(self) -> bool:
        return not self.pglite

    @property
    def max_connections(self) -> int | None:
        return 1 if self.pglite else None

    def loader(self, wanted: LoaderKind) -> LoaderKind:
        """``wanted`` resolved: auto -> copy where COPY FROM STDIN works, else unnest."""
        if wanted is LoaderKind.AUTO:
            return LoaderKind.COPY if self.copy_from_stdin else LoaderKind.UNNEST
        if wanted is LoaderKind.COPY and not self.copy_from_stdin:
            raise ValueError("this engine (PGlite) has no COPY FROM STDIN: use loader = unnest")
        return wanted


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolParams:
    """Where and how to connect (the CLI builds this from postgres.* settings)."""

    dsn: str
    password: str | None = None
    schema: str = "nev"
    min_size: int = 1
    max_size: int = 4
    statement_timeout_ms: int = 60_000
    connect_timeout_s: float = 10.0
    # TCP user timeout (and keepalives) of every connection: sent data unacknowledged this
    # long, or an idle peer silent, drops the connection (an error) instead of the kernel's
    # ~15 min of retransmissions. None: the OS defaults.
    tcp_user_timeout_s: float | None = 30.0
    application_name: str = "nev-ingest"

    def __post_init__(self) -> None:
        check_identifier(self.schema)

    def server_settings(self, server: ServerInfo | None = None) -> dict[str, str]:
        # search_path: the schema's tables unqualified, for our SQL and for code sharing the
        # writer's transaction (the alerts store); public for the timescaledb functions.
        # DateStyle/TimeZone: whatever the database or role defaults to (ALTER DATABASE ... SET
        # DateStyle = 'SQL, DMY'), the service's SQL prints and reads times as ISO in UTC; a
        # "CST" printed for Asia/Shanghai would read back as US Central.
        settings = {
            "application_name": self.application_name,
            "statement_timeout": str(self.statement_timeout_ms),
            "search_path": f"{self.schema}, public",
            "DateStyle": "ISO, YMD",
            "TimeZone": "UTC",
        }
        if server is not None and server.client_check:
            # In the startup packet, so the pool's RESET ALL keeps it (``server``: only where
            # the server takes it; an unknown or refused setting there fails the connection).
            settings["client_connection_check_interval"] = str(CLIENT_CHECK_MS)
        return settings


async def detect(conn: Any) -> ServerInfo:
    """The ``ServerInfo`` behind an open connection."""
    version = str(await conn.fetchval("SELECT version()"))
    available = await conn.fetchval(
        "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
    )
    pglite = "emscripten" in version.lower()
    return ServerInfo(
        version=version,
        pglite=pglite,
        timescaledb=bool(available),
        client_check=not pglite and await _client_check(conn),
    )


async def _client_check(conn: Any) -> bool:
    """Whether ``client_connection_check_interval`` can be set on this server: unknown before
    PostgreSQL 14, refused where the platform cannot watch a socket. Tried on this (probe)
    connection, outside any transaction, and put back."""
    if int(await conn.fetchval("SELECT current_setting('server_version_num')")) < 140000:
        return False
    try:
        await conn.execute(f"SET client_connection_check_interval = {CLIENT_CHECK_MS}")
    except asyncpg.PostgresError:
        return False
    await conn.execute("RESET client_connection_check_interval")
    return True


class PGliteConnection(asyncpg.Connection):  # type: ignore[misc]
    """A connection to PGlite: ``close()`` drops the socket (a graceful close never returns).

    asyncpg pools close their connections through ``close()`` too, so a pool of these shuts
    down cleanly.
    """

    __slots__ = ()

    async def close(self, *, timeout: float | None = None) -> None:  # noqa: ASYNC109 (asyncpg's)
        self.terminate()


def _tune_socket(conn: Any, params: PoolParams) -> None:
    """Keepalives and the TCP user timeout on ``conn``'s socket (TCP on Linux; asyncpg has no
    option for them): a peer gone silent (a network black hole, a host powered off) then ends
    the connection with an error within ``tcp_user_timeout_s``, where the kernel would retry
    for ~15 min and every query on it, the pool's pings too, would wait as long."""
    limit = params.tcp_user_timeout_s
    transport = getattr(conn, "_transport", None)
    sock = None if transport is None else transport.get_extra_info("socket")
    if limit is None or sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    idle = max(1, min(_KEEPALIVE_IDLE_S, int(limit)))
    options = [
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPIDLE", None), idle),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPINTVL", None), _KEEPALIVE_INTERVAL_S),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPCNT", None), _KEEPALIVE_COUNT),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_USER_TIMEOUT", None), int(limit * 1000)),
    ]
    for level, name, value in options:
        if name is not None:  # not every OS has each (macOS: no TCP_USER_TIMEOUT)
            sock.setsockopt(level, name, value)


async def _raw_connect(params: PoolParams, **kwargs: Any) -> Any:
    for attempt in range(_PGLITE_CONNECT_TRIES):
        try:
            conn = await asyncpg.connect(
                params.dsn, password=params.password, timeout=params.connect_timeout_s, **kwargs
            )
            _tune_socket(conn, params)
            return conn
        except (asyncpg.exceptions.ConnectionDoesNotExistError, ConnectionResetError):
            # What PGlite does to a second connection; a server would not drop a new one.
            if attempt == _PGLITE_CONNECT_TRIES - 1:
                raise
            await asyncio.sleep(_PGLITE_CONNECT_PAUSE_S)
    raise AssertionError("unreachable")


async def probe(params: PoolParams) -> ServerInfo:
    """Connect once and tell what the engine is."""
    # No statement cache and no graceful close: safe whatever the engine turns out to be.
    conn = await _raw_connect(params, statement_cache_size=0, connection_class=PGliteConnection)
    try:
        return await detect(conn)
    finally:
        conn.terminate()


def _server_kwargs(server: ServerInfo) -> dict[str, Any]:
    if server.pglite:
        return {"statement_cache_size": 0, "connection_class": PGliteConnection}
    return {}


async def apply_session(conn: Any, params: PoolParams) -> None:
    """SET the session settings (what the startup packet carries; PGlite ignores it)."""
    settings = params.server_settings()
    await conn.execute(
        "SELECT set_config('search_path', $1, false), set_config('statement_timeout', $2, false),"
        " set_config('application_name', $3, false), set_config('DateStyle', $4, false),"
        " set_config('TimeZone', $5, false)",
        settings["search_path"],
        settings["statement_timeout"] + "ms",
        settings["application_name"],
        settings["DateStyle"],
        settings["TimeZone"],
    )


async def connect(params: PoolParams, *, server: ServerInfo | None = None) -> Any:
    """One asyncpg connection with the pool's session settings (for migrate, maintenance)."""
    if server is None:
        server = await probe(params)
    conn = await _raw_connect(
        params, server_settings=params.server_settings(server), **_server_kwargs(server)
    )
    if server.pglite:
        try:
            await apply_session(conn, params)
        except BaseException:
            conn.terminate()
            raise
    return conn


@contextlib.contextmanager
def _refusals() -> Iterator[None]:
    """The server's refusal of a connection raised as ``ServerRefused``: the writer's pool
    then sees its database down (retried), not a fatal error."""
    try:
        yield
    except asyncpg.PostgresError as exc:
        error = refused(exc)
        if error is None:
            raise
        raise error from exc


async def create_pool(params: PoolParams) -> tuple[Any, ServerInfo]:
    """An asyncpg pool for the writer, and the engine it talks to. A server refusing the
    connection raises ``ServerRefused``, at the start and for every connection after."""
    with _refusals():
        server = await probe(params)
    max_size = params.max_size if server.max_connections is None else server.max_connections

    async def connect_one(*args: Any, **kwargs: Any) -> Any:
        # the pool passes its own dsn/password/timeout again; ours are the same
        kwargs.pop("password", None)
        kwargs.pop("timeout", None)
        with _refusals():
            return await _raw_connect(params, **kwargs)

    async def setup(conn: Any) -> None:
        await apply_session(conn, params)

    pool = await asyncpg.create_pool(
        params.dsn,
        connect=connect_one,
        setup=setup if server.pglite else None,
        min_size=min(params.min_size, max_size),
        max_size=max_size,
        server_settings=params.server_settings(server),
        **_server_kwargs(server),
    )
    return pool, server
