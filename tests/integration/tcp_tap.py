"""A TCP forwarder in front of the real broker that counts the connections made through it.

A service given the tap's address as ``kafka.bootstrap_servers`` reaches the real Kafka as
before, but every Kafka client it starts (consumer, producer, admin) first opens a bootstrap
connection, which goes through the tap: ``connections == 0`` proves that the service has not
tried Kafka at all, whichever client would have done it. Threads, not the test's event loop:
the tests block that loop in places (urllib, ``Service.stop``) and the forwarding must go on.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from types import TracebackType


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass  # the other side closed: the connection is over either way
    finally:
        for sock in (src, dst):
            with contextlib.suppress(OSError):  # already shut down by the other direction
                sock.shutdown(socket.SHUT_RDWR)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.target = target
        self.lock = threading.Lock()
        self.connections = 0


class _Forward(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        with self.server.lock:
            self.server.connections += 1
        with socket.create_connection(self.server.target, timeout=10) as upstream:
            upstream.settimeout(None)
            back = threading.Thread(target=_pipe, args=(upstream, self.request), daemon=True)
            back.start()
            _pipe(self.request, upstream)
            back.join()


class TcpTap:
    """``with TcpTap(kafka_bootstrap) as tap:`` give ``tap.address`` to the service."""

    def __init__(self, bootstrap: str) -> None:
        host, port = bootstrap.split(",")[0].strip().rsplit(":", 1)
        self._server = _Server((host, int(port)))
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="tcp-tap", daemon=True
        )

    @property
    def address(self) -> str:
        port: int = self._server.server_address[1]
        return f"127.0.0.1:{port}"  # where _Server listens

    @property
    def connections(self) -> int:
        """Connections accepted so far (opened by the client, whether or not still open)."""
        with self._server.lock:
            return self._server.connections

    def __enter__(self) -> TcpTap:
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
