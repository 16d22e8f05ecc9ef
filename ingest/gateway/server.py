"""``Gateway``: the listeners, the producer, the limits' clock and the graceful stop.

Lifecycle: ``start`` starts the Kafka producer (acks=all, idempotent), then opens one TCP
listener per configured kind (TLS when a certificate is set) and the ``extra_servers`` (e.g.
the T/CEC 102 HTTP receiver: anything with ``start``/``stop`` coroutines), and a sweeper that
closes connections past their login or idle timeout. ``stop`` (SIGTERM): stop accepting,
stop reading every connection, wait up to ``shutdown_timeout_s`` for every in-flight frame to
be acknowledged and answered (the extra servers stop meanwhile), close the connections and
the listeners, stop the producer; every step bounded, ``stop_s`` in all.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, Protocol

from ingest.config import Settings
from ingest.config.gateway_settings import GatewaySettings
from ingest.config.nat64 import nat64_networks
from ingest.errors import UserError
from ingest.gateway.accounts import Accounts, hash_password, verify_password
from ingest.gateway.connection import Connection
from ingest.gateway.fds import connection_cap, peer_cap
from ingest.gateway.kinds import KINDS, GatewayKind
from ingest.gateway.limits import Budget, LogGate
from ingest.gateway.log_budget import BudgetedLog
from ingest.gateway.login_guard import HostTurns, PeerLoginGuard
from ingest.gateway.metrics import GatewayMetrics
from ingest.gateway.peers import PeerCounts
from ingest.gateway.producer import Dispatcher, batch_bytes
from ingest.gateway.renewal import ProducerPool
from ingest.gateway.tls_accept import TlsAccept
from ingest.pipeline.closing import CLIENTS_S, LOOP_END_S, close_within, end_within
from ingest.wiring import kafka_client_options

__all__ = ["ExtraServer", "Gateway", "extra_stop_s", "parse_listen", "stop_s", "tls_context"]

log = logging.getLogger(__name__)

# An unknown user is checked against this hash too, so that a refusal takes as long whether
# or not the account exists (no user enumeration by timing).
_DUMMY_HASH: Final = hash_password("not a password")
# Frames waiting this long without any acknowledgement: Kafka is away (readiness, gauge).
KAFKA_STALL_S: Final = 5.0
# The gateway's way out, every step bounded (ingest.pipeline.closing): its worst case
# (``stop_s``) must stay below the orchestrator's grace (docs/gateway.md "Stop", deploy/),
# or a stalled part gets the gateway killed mid-stop. The listeners' close on the way out,
# all of them together (their accepts ended): one bound however many listeners there are.
LISTENER_CLOSE_S: Final = 5.0
# The dispatcher's and the sweeper's end once cancelled, together: one that swallowed its
# cancellation held the stop for ever.
TASKS_S: Final = 1.0
# An extra server's stop, beside the frames' drain, gets the frames' deadline
# (gateway.shutdown_timeout_s: the T/CEC receiver's requests in flight, ingest.gateway.tcec.
# extra) plus its producers' stop (a replacement still starting, then the stops: 2 x
# CLIENTS_S) plus this margin: past it the stop is left behind, the gateway goes on.
EXTRA_MARGIN_S: Final = 1.0
# Who goes on without a part left behind.
_GOES_ON: Final = "the gateway does not wait for it"


def extra_stop_s(shutdown_timeout_s: float) -> float:
    """The bound of each extra server's stop (all of them together, beside the drain)."""
    return shutdown_timeout_s + 2 * CLIENTS_S + EXTRA_MARGIN_S


def stop_s(shutdown_timeout_s: float) -> float:
    """The gateway's worst-case stop, SIGTERM to exit: the drain (or the extra servers' stops
    beside it, the longer), the listeners' close, the tasks' end, the producers' close (a
    replacement still starting, then the stops), the event loop's end (``run_gateway``)."""
    return (
        max(shutdown_timeout_s, extra_stop_s(shutdown_timeout_s))
        + LISTENER_CLOSE_S
        + TASKS_S
        + 2 * CLIENTS_S
        + LOOP_END_S
    )


# Pauses that are not the peer's doing: Kafka is behind (the in-flight budget), or its
# platform login is being checked.
_NOT_ITS_DOING: Final = frozenset({"budget", "login"})


class ExtraServer(Protocol):
    """A server started and stopped beside the TCP listeners (the T/CEC 102 receiver)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def parse_listen(key: str, value: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``; empty host = every interface), or a one-line UserError."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UserError(f"gateway.{key} = {value!r}: expected host:port, e.g. 0.0.0.0:32960")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - listening is the point


def tls_context(cfg: GatewaySettings) -> ssl.SSLContext | None:
    """The listeners' TLS context, or None when no certificate is configured."""
    if not cfg.tls_certfile and not cfg.tls_keyfile and not cfg.tls_cafile:
        return None
    if not (cfg.tls_certfile and cfg.tls_keyfile):
        # A CA bundle alone would otherwise leave the listeners plaintext without a word.
        raise UserError(
            "gateway.tls_certfile and gateway.tls_keyfile go together (set both for TLS); "
            "gateway.tls_cafile (mutual TLS) needs them too"
        )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cfg.tls_certfile, cfg.tls_keyfile)
        if cfg.tls_cafile:
            ctx.load_verify_locations(cfg.tls_cafile)
            ctx.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise UserError(f"gateway TLS files cannot be loaded ({exc}); fix gateway.tls_*") from None
    return ctx


class Gateway:
    """One gateway process's servers and their shared state."""

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: GatewayMetrics | None = None,
        producer: Any = None,
        extra_servers: Sequence[ExtraServer] = (),
    ) -> None:
        self.settings = settings
        self.config = settings.gateway
        self.metrics = metrics if metrics is not None else GatewayMetrics()
        self.gateway_id = self.config.gateway_id or socket.gethostname()
        kafka = settings.kafka
        # Each kind's raw topic as the start check reads it (checks.produced_topics).
        self.topics: dict[GatewayKind, str] = {kind: kafka.raw_topic(kind) for kind in KINDS}
        self.dlq_topic = kafka.topic_dlq
        path = self.config.accounts_file
        self.accounts = Accounts(Path(path) if path else None)
        self.login_guard = PeerLoginGuard(
            self.config.peer_login_failures, self.config.peer_login_window_s
        )
        self._login_turns = HostTurns()
        self.log_gate = LogGate(self.config.log_interval_s)
        # The refusal lines the gate lets through, of all peers together; closed by stop().
        self.refusal_log = BudgetedLog(
            logging.getLogger(Connection.__module__),  # the lines' logger, as before
            "TCP listeners",
            self.config.log_lines,
            self.config.log_interval_s,
        )
        self.extra_servers = list(extra_servers)
        self._producer = producer
        self.dispatcher = Dispatcher(
            ProducerPool(  # set by start
                producer,
                self._new_producer,
                owns_first=False,
                on_replaced=self.metrics.producer_replacements.inc,
            ),
            self.metrics,
            Budget(self.config.max_in_flight_frames, self.config.max_in_flight_bytes),
            self._budget_free,
        )
        self.connections: set[Connection] = set()
        self.peers = PeerCounts()  # connections open per peer address (max_connections_per_peer)
        # The operator's NAT64 translators: their clients count by the IPv4 address they embed.
        self.nat64: tuple[ipaddress.IPv6Network, ...] = nat64_networks(
            "gateway.nat64_prefixes", self.config.nat64_prefixes
        )
        # max_connections, or fewer when the open-file limit is short (set by start()).
        self.max_connections = self.config.max_connections
        # max_connections_per_peer, or a share of max_connections when that is cut (start()).
        self.max_connections_per_peer = self.config.max_connections_per_peer
        self._bound: dict[tuple[GatewayKind, str], Connection] = {}
        self.ports: dict[GatewayKind, int] = {}
        self._servers: list[asyncio.Server] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._ids = itertools.count(1)
        self._boot = f"{os.getpid():x}{int(time.time()) & 0xFFFFFF:06x}"
        self._paused: set[Connection] = set()
        self._pressure_since: float | None = None
        self.ready = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the producer, the listeners and the extra servers."""
        # Before any socket: a descriptor short of max_connections was a silent TCP reset.
        tcec = self.settings.tcec
        self.max_connections = connection_cap(
            self.config.max_connections, tcec.max_connections if tcec.listen else 0
        )
        self.max_connections_per_peer = peer_cap(
            self.config.max_connections_per_peer, self.config.max_connections, self.max_connections
        )
        if self._producer is None:
            self._producer = self._new_producer()
            await self._producer.start()
            self.dispatcher.producers = ProducerPool(
                self._producer,
                self._new_producer,
                on_replaced=self.metrics.producer_replacements.inc,
            )
        self.metrics.kafka_connected.set(1)
        self._tasks.append(asyncio.create_task(self.dispatcher.run(), name="gateway-kafka"))
        self._tasks.append(asyncio.create_task(self._sweep(), name="gateway-sweep"))
        ctx = tls_context(self.config)
        for kind in KINDS:
            listen = getattr(self.config, f"listen_{kind}")
            if not listen:
                continue
            host, port = parse_listen(f"listen_{kind}", listen)
            try:
                server = await asyncio.get_running_loop().create_server(
                    self._protocols(kind, ctx),
                    host,
                    port,
                    backlog=4096,
                    reuse_address=True,
                )
            except OSError as exc:
                raise UserError(
                    f"gateway.listen_{kind} = {listen}: cannot listen ({exc.strerror}); "
                    "choose a free port or stop what holds it"
                ) from None
            self._servers.append(server)
            self.ports[kind] = server.sockets[0].getsockname()[1]
            log.info(
                "gateway listening",
                extra={
                    "kind": kind,
                    "listen": f"{host}:{self.ports[kind]}",
                    "tls": ctx is not None,
                },
            )
        for extra in self.extra_servers:
            await extra.start()
        self.ready = True

    def _protocols(
        self, kind: GatewayKind, ctx: ssl.SSLContext | None
    ) -> Callable[[], asyncio.Protocol]:
        """A listener's protocol factory. With TLS the listener is plain TCP and each
        connection is admitted before its handshake (ingest/gateway/tls_accept.py): with
        create_server(ssl=...) a client that never started TLS held a descriptor uncounted."""
        if ctx is None:
            return lambda: Connection(self, kind)
        # The sweeper closes a connection still in its handshake at login_timeout_s (its time
        # counts there, from accept); the handshake's own timeout is a backstop behind it.
        timeout_s = 2 * self.config.login_timeout_s
        return lambda: TlsAccept(Connection(self, kind), ctx, timeout_s)

    async def stop(self) -> None:
        """Graceful stop: no new connections, in-flight frames acknowledged and answered.
        Within ``stop_s(gateway.shutdown_timeout_s)`` (less the loop's end) whatever stalls:
        a part that does not end in its bound is left behind with one WARNING."""
        self.ready = False
        for server in self._servers:
            server.close()
        for conn in list(self.connections):
            conn.pause("shutdown")
        # Beside the drain, not before it: one after another, an extra server's stop (its own
        # requests' answers, its producer) came on top of the frames' deadline, unbounded.
        extras = asyncio.gather(*(self._stop_extra(extra) for extra in self.extra_servers))
        try:
            await asyncio.wait_for(self.dispatcher.drained(), self.config.shutdown_timeout_s)
        except TimeoutError:
            log.error(
                "shutdown: %d frames not acknowledged by Kafka within %.0fs; their senders got "
                "no answer and will send them again",
                self.dispatcher.budget.frames,
                self.config.shutdown_timeout_s,
            )
        await extras
        for conn in list(self.connections):
            conn.close("shutdown")
        if self._servers:
            # Together under one bound: in turn, 5 s each added up past the grace with every
            # kind listening.
            await close_within(
                "the TCP listeners",
                lambda: asyncio.gather(*(s.wait_closed() for s in self._servers)),
                LISTENER_CLOSE_S,
                goes_on=_GOES_ON,
                undone="their connections were closed already",
            )
        await asyncio.gather(
            *(
                end_within(task, f"the {task.get_name()} task", TASKS_S, goes_on=_GOES_ON)
                for task in self._tasks
            )
        )
        # Every connection closed, the sweeper gone: the refusal lines held back are logged
        # now, not by a timer that would outlive the gateway.
        self.refusal_log.close()
        # The producer (and any replaced one still delivering), unless handed in by the caller.
        await self.dispatcher.producers.close()
        self.metrics.kafka_connected.set(0)

    async def _stop_extra(self, extra: ExtraServer) -> None:
        await close_within(
            f"the extra server {type(extra).__name__}",
            extra.stop,
            extra_stop_s(self.config.shutdown_timeout_s),
            verb="stop",
            goes_on=_GOES_ON,
            undone="what it had not got acknowledged was not answered: its senders send it again",
        )

    def _new_producer(self) -> Any:
        """A new (not started) producer; another replaces it when Kafka failed a batch it had
        numbered (ingest.gateway.renewal)."""
        from aiokafka import AIOKafkaProducer

        kafka = self.settings.kafka
        return AIOKafkaProducer(
            **kafka_client_options(kafka),
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_request_size=kafka.max_request_size,
            # One sender keeps the read order, so a partition whose batch is full (aiokafka
            # then waits for it to drain) holds every frame behind it: batches far larger
            # than the 16 KiB default make that wait rare (an ad-hoc run on the shared dev
            # box: 3,100 -> 5,000 frames/s acknowledged; a benchmark should settle it).
            max_batch_size=batch_bytes(kafka.max_request_size),
        )

    def readiness(self) -> tuple[bool, dict[str, object]]:
        """/readyz: listening, and Kafka takes frames (not ``KAFKA_STALL_S`` without an
        acknowledgement while frames wait): a load balancer then sends new devices elsewhere."""
        kafka = not self.dispatcher.stalled(KAFKA_STALL_S)
        # The sweep refreshes the gauge once a tick; refreshed here too so /readyz and
        # nev_gateway_kafka_connected never disagree when read together.
        self.metrics.kafka_connected.set(1 if kafka else 0)
        detail = {"connections": len(self.connections), "listeners": dict(self.ports)}
        return self.ready and kafka, {**detail, "kafka": kafka}

    # -- connections -------------------------------------------------------------------------

    def admit(self, conn: Connection) -> bool:
        """Register a new connection, or refuse it (max_connections, max_connections_per_peer,
        or stopping)."""
        key = conn.host_key
        why = detail = ""
        if not self.ready:
            why, detail = "shutdown", "the gateway is stopping"
        elif len(self.connections) >= self.max_connections:
            why, detail = "max_connections", f"{len(self.connections)} connections open"
        elif not self.peers.take(key, self.max_connections_per_peer):
            # One address must not hold every slot (nor every descriptor): genuine devices
            # would be refused while it does.
            why = "max_connections_per_peer"
            detail = f"{self.peers[key]} connections open from {key}"
        if why:
            self.metrics.refused.labels(conn.kind, why).inc()
            conn.note(why, detail)
            return False
        self.connections.add(conn)
        self.metrics.accepted.labels(conn.kind).inc()
        self.metrics.connections.labels(conn.kind).inc()
        return True

    def bind(self, conn: Connection, identity: str) -> None:
        """A device logged in on ``conn``: an older connection of the same identity is closed
        (Annex B: "a new connection with the same identity replaces the old one")."""
        # One binding per connection: a connection that logs in again under another identity
        # gives up the first (kept, it held the closed connection for ever and let a later
        # login of that identity close this one as "replaced").
        self._unbind(conn)
        old = self._bound.get((conn.kind, identity))
        self._bound[(conn.kind, identity)] = conn
        conn.bound = identity
        if old is not None and old is not conn:
            old.close("replaced", f"{identity} logged in again from {conn.peer}")

    def _unbind(self, conn: Connection) -> None:
        ident, conn.bound = conn.bound, ""
        if ident and self._bound.get((conn.kind, ident)) is conn:
            del self._bound[(conn.kind, ident)]

    def forget(self, conn: Connection) -> None:
        self._unbind(conn)
        if conn in self.connections:
            self.connections.discard(conn)
            self.peers.give_back(conn.host_key)
            self._paused.discard(conn)
            self.metrics.connections.labels(conn.kind).dec()

    def next_connection_id(self) -> str:
        return f"{self._boot}-{next(self._ids)}"

    async def check_password(self, user: str, password: str, host: str = "") -> bool:
        """The platform account's password check, off the event loop (scrypt is slow by design);
        refused unchecked while ``host`` is over its failed-login limit (login_guard); one
        check at a time per host, so that each sees the failures of those before it."""
        async with self._login_turns.turn(host):
            if self.login_guard.blocked(host, time.monotonic()):
                return False
            stored = self.accounts.lookup(user)
            ok = await asyncio.to_thread(verify_password, password, stored or _DUMMY_HASH)
            if not (ok and stored is not None):
                self.login_guard.failed(host, time.monotonic())
                return False
            return True

    # -- backpressure ------------------------------------------------------------------------

    def budget_full(self, conn: Connection) -> None:
        """Kafka is behind: this connection stops being read until the budget frees."""
        if self._pressure_since is None:
            self._pressure_since = time.monotonic()
            self.metrics.refused.labels(conn.kind, "backpressure").inc()
            log.warning(
                "in-flight budget full (%d frames, %d bytes): not reading sockets until Kafka "
                "acknowledges",
                self.dispatcher.budget.frames,
                self.dispatcher.budget.bytes,
            )
        conn.pause("budget")
        self._paused.add(conn)

    def _budget_free(self) -> None:
        if self._pressure_since is not None:
            self.metrics.backpressure.inc(time.monotonic() - self._pressure_since)
            self._pressure_since = None
        paused, self._paused = self._paused, set()
        for conn in paused:
            conn.resume("budget")

    async def _sweep(self) -> None:
        """Close connections past their login or idle timeout; refresh the in-flight gauges."""
        cfg = self.config
        tick = max(0.05, min(1.0, cfg.login_timeout_s / 4, cfg.idle_timeout_s / 4))
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            budget = self.dispatcher.budget
            self.metrics.in_flight_frames.set(budget.frames)
            self.metrics.in_flight_bytes.set(budget.bytes)
            self.metrics.kafka_connected.set(0 if self.dispatcher.stalled(KAFKA_STALL_S) else 1)
            if self._pressure_since is not None:
                self.metrics.backpressure.inc(now - self._pressure_since)
                self._pressure_since = now
            for conn in list(self.connections):
                if conn.closed or not conn.paused.isdisjoint(_NOT_ITS_DOING):
                    continue  # not read because of Kafka or its own login check: not idle
                # Paused by its own doing (over its rate, not reading its answers) it is still
                # timed: a stranger kept rate-paused by its bursts stayed connected unlogged.
                if not conn.session.logged_in and now - conn.connected_at > cfg.login_timeout_s:
                    conn.close("login_timeout", f"no login within {cfg.login_timeout_s:g}s")
                elif now - conn.last_rx > cfg.idle_timeout_s:
                    conn.close("idle_timeout", f"nothing received for {cfg.idle_timeout_s:g}s")
