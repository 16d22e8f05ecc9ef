"""The receiver's listening site: aiohttp's TCP site with connection limits at accept.

aiohttp's server takes every connection it is offered, and a connection that never completes
its request line and headers holds a descriptor until ``keepalive_timeout`` (set from
``tcec.header_timeout_s``). The receiver shares its process's descriptors with the TCP
listeners' devices, so the number it holds is bounded (``tcec.max_connections``) and so is
one address's share of them (``tcec.max_connections_per_peer``, ``ingest.gateway.peers``):
each connection's protocol is wrapped, and one over a limit is closed before aiohttp sees it.
An admitted connection's malformed requests, which aiohttp refuses itself, are counted and
logged here too (``http_errors``). The gate's WARNING lines are bounded per peer (10 s) and,
since one host owns many peers' worth of addresses (the /64s of its /48), in all as well.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable, Sequence
from typing import Final, cast

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ingest.gateway.log_budget import BudgetedLog
from ingest.gateway.peers import PeerCounts, peer_key
from ingest.gateway.tcec.http_errors import ConnectionLog, describe
from ingest.gateway.tcec.metrics import TcecMetrics
from ingest.gateway.tcec.peer_limits import PeerLog

__all__ = ["LOG_INTERVAL_S", "LOG_LINES", "ConnectionGate", "GatedSite"]

log = logging.getLogger(__name__)

_BACKLOG: Final = 1024

# The receiver's WARNING lines per LOG_INTERVAL_S, all peers together (the gate's here, the
# refused requests' in server.py, each its own budget); past them, one line says how many were
# held back from how many peers (the metrics count every refusal).
LOG_LINES: Final = 20
LOG_INTERVAL_S: Final = 10.0


class ConnectionGate:
    """The receiver's open connections, in all and per peer (``nev_gateway_tcec_connections``);
    refusals (at accept, and malformed requests) counted and logged (once per peer and reason
    per 10 s, at most ``LOG_LINES`` lines per 10 s in all; ``close`` logs what was held back
    since)."""

    def __init__(
        self,
        max_connections: int,
        per_peer: int,
        metrics: TcecMetrics,
        nat64: Sequence[ipaddress.IPv6Network] = (),
        clock: Callable[[], float] = time.monotonic,  # of the log gates (tests: a fake one)
    ) -> None:
        self.max_connections = max_connections
        self.per_peer = per_peer
        self.open = 0
        self.peers = PeerCounts()
        self._refused = metrics.connections_refused
        self._open = metrics.connections
        self._log = PeerLog(LOG_INTERVAL_S, clock)
        # The gate's WARNING lines, all peers together (held back: one line when 10 s end).
        self._warnings = BudgetedLog(log, "T/CEC 102 connections", LOG_LINES, LOG_INTERVAL_S, clock)
        self.nat64 = tuple(nat64)  # gateway.nat64_prefixes, for peer_key

    def take(self, key: str) -> bool:
        why = ""
        if self.open >= self.max_connections:
            why, detail = "max_connections", f"{self.open} connections open"
        elif not self.peers.take(key, self.per_peer):
            why, detail = "max_connections_per_peer", f"{self.peers[key]} open from {key}"
        if why:
            self._refused.labels(why).inc()
            held = self._log.allow(key, why)
            if held is not None:
                self._warnings.warning(
                    key,
                    "T/CEC 102 connection from %s closed at accept: %s (%s; suppressed %d)",
                    key,
                    why,
                    detail,
                    held,
                    held_back=held,
                )
            return False
        self.open += 1
        self._open.inc()
        return True

    def bad_request(self, key: str, exc: HttpProcessingError, not_http: bool = False) -> None:
        """A request of ``key``'s that aiohttp's parser refused (answered 400, the connection
        closed): counted and logged as the refusals at accept are, without a traceback.
        ``not_http``: the connection's first bytes are not HTTP at all (``http_errors``);
        counted apart and logged at DEBUG, as aiohttp does: on a port open to the internet
        that is every scanner passing by, nothing for an operator to act on, while a client
        that speaks HTTP badly (``bad_request``) may be an operator's platform to look into."""
        if not_http:
            self._refused.labels("not_http").inc()
            log.debug(
                "T/CEC 102 connection from %s closed: not HTTP, answered 400 (%s)",
                key,
                describe(exc),
            )
            return
        self._refused.labels("bad_request").inc()
        held = self._log.allow(key, "bad_request")
        if held is not None:
            self._warnings.warning(
                key,
                "T/CEC 102 connection from %s closed: malformed HTTP request, answered 400 "
                "(%s; suppressed %d)",
                key,
                describe(exc),
                held,
                held_back=held,
            )

    def close(self) -> None:
        """The receiver stopped: what the budget held back is logged now, not by a timer
        that would outlive the receiver."""
        self._warnings.close()

    def give_back(self, key: str) -> None:
        self.open -= 1
        self._open.dec()
        self.peers.give_back(key)


class _Gated(asyncio.Protocol):
    """aiohttp's protocol of one connection, behind the gate: every callback forwarded once
    the connection was admitted, none for one that was not."""

    __slots__ = ("_gate", "_inner", "_key", "_peer")

    def __init__(self, gate: ConnectionGate, inner: web.RequestHandler) -> None:
        self._gate = gate
        # Malformed requests aiohttp refuses are the gate's to count and log (http_errors).
        inner.logger = ConnectionLog(self._bad_request)
        self._inner: asyncio.Protocol = inner
        self._key: str | None = None  # while admitted and open: the gate counts it
        self._peer = ""  # kept after the close: aiohttp may log the request's refusal then

    def _bad_request(self, exc: HttpProcessingError, not_http: bool) -> None:
        self._gate.bad_request(self._peer, exc, not_http)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        key = peer_key(str(peer[0]) if isinstance(peer, tuple) else str(peer), self._gate.nat64)
        if not self._gate.take(key):
            cast(asyncio.Transport, transport).abort()  # a reset: nothing to answer
            return
        self._key = self._peer = key
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._key is None:
            return  # refused at accept: aiohttp never saw it
        self._gate.give_back(self._key)
        self._key = None
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class GatedSite(web.BaseSite):
    """``web.TCPSite`` whose connections pass ``gate`` first."""

    __slots__ = ("_gate", "_host", "_port")

    def __init__(self, runner: web.BaseRunner, host: str, port: int, gate: ConnectionGate) -> None:
        super().__init__(runner, backlog=_BACKLOG)
        self._host = host
        self._port = port
        self._gate = gate

    @property
    def name(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None  # the runner was set up
        gate = self._gate
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Gated(gate, server()),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=True,
        )
