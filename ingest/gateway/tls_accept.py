"""TLS listeners: a connection is admitted at accept, before its TLS handshake.

With ``create_server(ssl=...)`` the event loop runs the handshake before the protocol sees the
connection: a client that opened TCP and never started TLS held a descriptor for the loop's
handshake timeout (60 s) uncounted, unlogged, and past ``max_connections_per_peer``, so one
address could take every descriptor. A TLS listener therefore listens in plain TCP, and
``TlsAccept`` (the accepted socket's first protocol) admits the connection as a plain one is
admitted (``Connection.connection_made``: the process's and the peer's share, counted and
logged when refused), then runs the handshake with ``loop.start_tls``. The handshake's time
counts in ``gateway.login_timeout_s`` (the sweeper closes a connection still in it then, as
``login_timeout``). Once secured, the ``Connection`` reads and writes through the TLS
transport. Plain TCP listeners do not go
through here: their path is unchanged.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import cast

from ingest.gateway.connection import Connection

__all__ = ["TlsAccept"]

# Handshakes under way; a task only weakly referenced by the loop could be collected.
_HANDSHAKES: set[asyncio.Task[None]] = set()


class TlsAccept(asyncio.Protocol):
    """The protocol of one accepted TLS-listener socket: admits its ``Connection`` at accept,
    runs the handshake, then hands the connection over to the TLS transport.

    Two windows need care. Before ``start_tls`` runs, uvloop already reads the socket (it
    starts reading after ``connection_made`` whatever the protocol asked): those bytes are the
    start of the handshake and go to the TLS layer first. Between the handshake's end and
    ``start_tls`` returning, the TLS layer delivers what the client sent after its Finished
    (its login, often): kept here and passed on in order once handed over."""

    __slots__ = (
        "_conn",
        "_ctx",
        "_early",
        "_eof",
        "_handed",
        "_hello",
        "_lost",
        "_raw",
        "_started",
        "_timeout_s",
    )

    def __init__(self, conn: Connection, ctx: ssl.SSLContext, timeout_s: float) -> None:
        self._conn = conn
        self._ctx = ctx
        self._timeout_s = timeout_s
        self._raw: asyncio.Transport | None = None
        self._hello: list[bytes] = []  # read before start_tls: the handshake's first bytes
        self._started = False  # start_tls called: what arrives now comes from the TLS layer
        self._handed = False  # the Connection is the TLS transport's protocol
        self._early: list[bytes] = []
        self._eof = False
        self._lost: tuple[Exception | None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        conn = self._conn
        conn.connection_made(transport)  # admitted, or refused and aborted
        if conn.closed:
            return
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._raw = raw = cast(asyncio.Transport, transport)
        raw.pause_reading()  # asyncio honours it; uvloop starts reading anyway (data_received)
        task = asyncio.get_running_loop().create_task(self._handshake(raw))
        _HANDSHAKES.add(task)
        task.add_done_callback(_HANDSHAKES.discard)

    async def _handshake(self, raw: asyncio.Transport) -> None:
        conn = self._conn
        if conn.closed or raw.is_closing():  # closed already (by the peer, the sweeper, stop())
            conn.connection_lost(None)
            return
        loop = asyncio.get_running_loop()
        self._started = True
        if self._hello:
            # Runs after start_tls made the TLS layer the socket's protocol and before reading
            # resumes (start_tls schedules both): the handshake's bytes stay in order.
            loop.call_soon(self._replay_hello, raw)
        try:
            secured = await loop.start_tls(
                raw, self, self._ctx, server_side=True, ssl_handshake_timeout=self._timeout_s
            )
        except Exception as exc:  # any failed handshake ends the connection
            # Not TLS, a bad client certificate, timed out, reset: counted and logged like
            # the other closes; its slot (and its peer's share) is given back.
            conn.close("tls_handshake", f"TLS handshake failed: {str(exc) or type(exc).__name__}")
            conn.connection_lost(exc)
            return
        if secured is None or conn.closed or secured.is_closing():
            # Closed during the handshake (login timeout, stop): the TLS layer reports no loss.
            conn.connection_lost(None)
            return
        secured.set_protocol(conn)
        conn.transport = secured
        if conn.paused:  # paused meanwhile (stop())
            secured.pause_reading()
        self._handed = True
        early, self._early = self._early, []
        for data in early:
            conn.data_received(data)
        if self._eof:
            conn.eof_received()
        if self._lost is not None:
            conn.connection_lost(self._lost[0])

    def _replay_hello(self, raw: asyncio.Transport) -> None:
        hello, self._hello = b"".join(self._hello), []
        tls = raw.get_protocol()
        if tls is self or raw.is_closing():
            return  # start_tls failed before it took the socket over, or it is closed
        # The TLS layer is a buffered protocol in asyncio and uvloop (uvloop's does not
        # subclass asyncio.BufferedProtocol): fed the way the transport feeds it.
        layer = cast(asyncio.BufferedProtocol, tls)
        view = memoryview(hello)
        while view:
            buf = memoryview(layer.get_buffer(len(view)))
            n = min(len(buf), len(view))
            buf[:n] = view[:n]
            layer.buffer_updated(n)
            view = view[n:]

    # Callbacks of the socket before start_tls, then of the TLS layer: kept until handed
    # over, passed on after (callbacks it scheduled before the hand-over still come here).

    def data_received(self, data: bytes) -> None:
        if self._handed:
            self._conn.data_received(data)
        elif self._started:
            self._early.append(data)
        else:
            self._hello.append(data)
            if self._raw is not None:
                self._raw.pause_reading()  # reading now started, so this one holds

    def eof_received(self) -> bool:
        if self._handed:
            return self._conn.eof_received()
        self._eof = self._started
        return False  # TLS has no half-close: the connection closes

    def connection_lost(self, exc: Exception | None) -> None:
        if self._handed:
            self._conn.connection_lost(exc)
        elif self._started:
            self._lost = (exc,)
        # Before start_tls: the handshake task finds the transport closed.

    def pause_writing(self) -> None:
        if self._handed:
            self._conn.pause_writing()

    def resume_writing(self) -> None:
        if self._handed:
            self._conn.resume_writing()
