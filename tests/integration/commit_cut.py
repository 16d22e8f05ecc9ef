"""A TCP proxy in front of PostgreSQL that loses the answer to one batch write's COMMIT.

Armed (``arm``), it lets the next COMMIT of a transaction that sent COPY data (a batch write:
its rows go by COPY) through to the server, waits for the server's answer - the transaction
has committed then - and drops both connections instead of passing the answer on: the client
sees its connection lost in the middle of COMMIT, the outcome unknown to it (what the write
timeout's cut or a reset right then does). Once: later writes go through. Armed with
``drop=True`` it loses the COMMIT itself instead: both connections close before it is passed
on, and the server rolls the transaction back - the client sees the same thing, and must not
take the batch for committed. Armed with ``copied=False`` it takes the next COMMIT of any
transaction that sent a statement (a changes-only write: alert rows and outbox rows, no COPY).

Threads, not the test's event loop: the service tests block that loop (``Service.stop``)
while the service still talks to its database through here. The client side must not use
TLS (``sslmode=disable``): the proxy reads the protocol's messages.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import struct
import threading
from types import TracebackType
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["CommitCut"]

_SSL_REQUEST = 80877103
_GSS_REQUEST = 80877104


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.target = target
        self.lock = threading.Lock()
        self.armed = False
        self.drop = False  # the armed cut loses the COMMIT itself, not its answer
        self.copied = True  # the armed cut waits for a transaction that sent COPY data
        self.cut = 0  # COMMIT answers lost so far
        self.fired = threading.Event()


class _Reader:
    """The client's side of the protocol, message by message (only types are looked at)."""

    def __init__(self) -> None:
        self.buf = b""
        self.started = False  # past the startup message: typed messages from here on
        self.copied = False  # the transaction in progress sent COPY data
        self.sent = False  # the transaction in progress sent a statement

    def feed(self, data: bytes) -> bool | None:
        """Take ``data``; whether it ends with a COMMIT of a transaction that sent COPY data
        (None: no COMMIT of a transaction that sent a statement)."""
        self.buf += data
        commit: bool | None = None
        while True:
            if not self.started:
                if len(self.buf) < 8:
                    return commit
                (length,) = struct.unpack("!I", self.buf[:4])
                if len(self.buf) < length:
                    return commit
                (code,) = struct.unpack("!I", self.buf[4:8])
                self.buf = self.buf[length:]
                if code not in (_SSL_REQUEST, _GSS_REQUEST):
                    self.started = True
                continue
            if len(self.buf) < 5:
                return commit
            kind = self.buf[:1]
            (length,) = struct.unpack("!I", self.buf[1:5])
            if len(self.buf) < 1 + length:
                return commit
            body = self.buf[5 : 1 + length]
            self.buf = self.buf[1 + length :]
            if kind == b"d":
                self.copied = True
            elif kind in (b"P", b"E"):  # a statement parsed, or a prepared one run
                self.sent = True
            elif kind == b"Q":
                text = body.strip(b"\0; \n").upper()
                if text.startswith(b"COMMIT") and self.sent:
                    commit = bool(commit) or self.copied
                if text.startswith((b"BEGIN", b"COMMIT", b"ROLLBACK")):
                    self.copied = self.sent = False
                else:
                    self.sent = True


class _Forward(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        client: socket.socket = self.request
        with socket.create_connection(self.server.target, timeout=10) as upstream:
            upstream.settimeout(None)
            swallow = threading.Event()
            back = threading.Thread(
                target=self._back, args=(upstream, client, swallow), daemon=True
            )
            back.start()
            reader = _Reader()
            try:
                while data := client.recv(65536):
                    seen = reader.feed(data)
                    if seen is not None and (drop := self._take(seen)) is not None:
                        if drop:  # never sent: the server sees the connection end, rolls back
                            with self.server.lock:
                                self.server.cut += 1
                            self.server.fired.set()
                            break
                        swallow.set()  # before the COMMIT goes: its answer is not passed on
                    upstream.sendall(data)
            except OSError:
                pass
            finally:
                _close(client, upstream)
            back.join()

    def _take(self, copied: bool) -> bool | None:
        """None when not armed (or armed for a COMMIT after COPY data, and ``copied`` is not
        one); else disarmed, and whether to drop the COMMIT itself."""
        with self.server.lock:
            if not self.server.armed or (self.server.copied and not copied):
                return None
            self.server.armed = False
            return self.server.drop

    def _back(
        self, upstream: socket.socket, client: socket.socket, swallow: threading.Event
    ) -> None:
        try:
            while data := upstream.recv(65536):
                if swallow.is_set():
                    # The server answered the COMMIT: it is done, and the client never hears.
                    with self.server.lock:
                        self.server.cut += 1
                    self.server.fired.set()
                    break
                client.sendall(data)
        except OSError:
            pass
        finally:
            _close(client, upstream)


def _close(*socks: socket.socket) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class CommitCut:
    """``with CommitCut(dsn) as cut:`` connect to ``cut.dsn``; ``cut.arm()`` before the write
    whose COMMIT answer is to be lost (``arm(drop=True)``: the COMMIT itself;
    ``copied=False``: of a write without COPY data too); ``cut.cut`` counts the cuts."""

    def __init__(self, dsn: str) -> None:
        self._url = urlsplit(dsn)
        host, port = self._url.hostname or "127.0.0.1", self._url.port or 5432
        self._server = _Server((host, port))
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="commit-cut", daemon=True
        )

    @property
    def dsn(self) -> str:
        """The DSN through the proxy, without TLS."""
        url = self._url
        port = self._server.server_address[1]
        auth = url.netloc.rsplit("@", 1)[0] + "@" if "@" in url.netloc else ""
        query = dict(parse_qsl(url.query))
        query["sslmode"] = "disable"
        return urlunsplit(url._replace(netloc=f"{auth}127.0.0.1:{port}", query=urlencode(query)))

    def arm(self, drop: bool = False, *, copied: bool = True) -> None:
        with self._server.lock:
            self._server.armed = True
            self._server.drop = drop
            self._server.copied = copied
            self._server.fired.clear()

    @property
    def cut(self) -> int:
        with self._server.lock:
            return self._server.cut

    def __enter__(self) -> CommitCut:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
