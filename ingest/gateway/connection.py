"""One device or platform connection: bytes in, frames to Kafka, answers out, limits enforced.

The protocol object does the I/O around two sans-I/O parts: ``NativeStreamFramer`` (frames out
of the byte stream, the reference ``StreamFramer``'s semantics in native code) and ``Session``
(what each frame means). Reading stops (``transport.pause_reading``, so TCP pushes back on the
sender) for any of these reasons, and resumes when all of them are gone:

- ``budget``: the process's in-flight budget is full (Kafka slow or away);
- ``rate``: the connection is over its frame or byte rate, until its bucket refills;
- ``write``: the peer does not read its answers (the transport's write buffer is full);
- ``login``: a platform login's password is being checked (frames behind it wait).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from datetime import UTC, datetime
from typing import Any, Final, Protocol, cast

from ingest.config.gateway_settings import GatewaySettings
from ingest.decoders.framer import NativeStreamFramer, RawFrame
from ingest.gateway.answers import ERROR, SUCCESS, answer
from ingest.gateway.kinds import GatewayKind
from ingest.gateway.limits import LogGate, TokenBucket
from ingest.gateway.log_budget import BudgetedLog
from ingest.gateway.metrics import GatewayMetrics
from ingest.gateway.peers import peer_key
from ingest.gateway.producer import Dispatcher, Pending
from ingest.gateway.session import ANSWER, PRODUCE, REFUSE, VERIFY, Decision, Session

__all__ = ["Connection", "Host"]

log = logging.getLogger(__name__)

_RESULT: Final = {SUCCESS: "success", ERROR: "error"}
_LOGIN_COMMANDS: Final = frozenset({"login", "platform_login"})


def _ignore(exc: BaseException | None) -> None:
    """A dead letter answers nobody (its frame's error answer went out at once)."""


class Host(Protocol):
    """What a connection needs of its gateway (``ingest.gateway.server.Gateway``)."""

    config: GatewaySettings
    metrics: GatewayMetrics
    dispatcher: Dispatcher
    topics: dict[GatewayKind, str]
    dlq_topic: str
    gateway_id: str
    log_gate: LogGate
    refusal_log: BudgetedLog
    nat64: tuple[ipaddress.IPv6Network, ...]

    def admit(self, conn: Connection) -> bool: ...

    def forget(self, conn: Connection) -> None: ...

    def next_connection_id(self) -> str: ...

    async def check_password(self, user: str, password: str, host: str = "") -> bool: ...

    def budget_full(self, conn: Connection) -> None: ...

    def bind(self, conn: Connection, identity: str) -> None: ...


class Connection(asyncio.Protocol):
    """asyncio protocol of one accepted connection."""

    # No __dict__: a gateway holds 100,000s of these (docs/gateway.md, memory per connection).
    __slots__ = (
        "_bytes",
        "_frames",
        "_headers",
        "bound",
        "closed",
        "connected_at",
        "eof",
        "framer",
        "garbage",
        "gw",
        "held",
        "host",
        "host_key",
        "id",
        "in_flight",
        "kind",
        "last_rx",
        "paused",
        "peer",
        "platform_rates",
        "session",
        "transport",
    )

    def __init__(self, gateway: Host, kind: GatewayKind) -> None:
        self.gw = gateway
        self.kind = kind
        cfg = gateway.config
        self.session = Session(
            kind, max_frame_bytes=cfg.max_frame_bytes, answer_realtime=cfg.answer_realtime
        )
        self.framer = NativeStreamFramer()
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.host = ""
        self.host_key = ""  # peer_key(host): what the per-peer limit and the log gate count
        self.id = ""
        self.closed = False
        self.connected_at = self.last_rx = time.monotonic()
        self.garbage = 0  # bytes outside good frames since the last good frame
        self.in_flight = 0  # this connection's frames waiting for Kafka
        self.eof = False  # the peer half-closed: close once in_flight is answered
        self.paused: set[str] = set()
        self.held: list[bytes] = []  # frames read behind a platform login being checked
        self.bound = ""  # the identity the gateway bound to this connection (Host.bind)
        self.platform_rates = False  # the buckets are a platform's (its login checked)
        self._headers: list[tuple[str, bytes]] = []
        self._device_rates(0.0)

    # -- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # At accept, so the limits hold before anything else: on a TLS listener too, with the
        # socket's plain transport, replaced by the TLS one after the handshake (tls_accept.py).
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.host = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        # Parsed once: ipaddress costs 2-14 µs, and a refusal per frame logs through it.
        self.host_key = peer_key(self.host, self.gw.nat64)
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        now = time.monotonic()
        self._frames.stamp = self._bytes.stamp = now
        if not self.gw.admit(self):
            self.closed = True
            self.transport.abort()
            return
        self.id = self.gw.next_connection_id()
        self._set_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed and self.id == "":
            return  # refused at accept
        if not self.closed:
            self.closed = True
            self.gw.metrics.closed.labels(self.kind, "peer").inc()
        for item in self.framer.close():
            if not isinstance(item, RawFrame):
                self.gw.metrics.skipped_bytes.labels(self.kind, item.reason).inc(len(item.data))
        self.gw.forget(self)

    def eof_received(self) -> bool:
        """The peer sent everything (half-close): keep the connection open for the answers
        of what is still in flight, then close it. Not over TLS: asyncio's TLS transport has
        no half-close, it closes whatever this returns (and warns when asked to stay open);
        what was in flight is still produced, its answers have nowhere to go."""
        self.eof = True
        if self.transport is not None and self.transport.get_extra_info("sslcontext"):
            return False
        return self.in_flight > 0  # False: nothing to answer, the transport closes itself

    def pause_writing(self) -> None:
        self.pause("write")

    def resume_writing(self) -> None:
        self.resume("write")

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        now = time.monotonic()
        self.last_rx = now
        m = self.gw.metrics
        m.child(m.received_bytes, self.kind).inc(len(data))
        frames = 0
        # Per read, not per frame: the frames of one read were received at the same moment,
        # and they share one header list (rebuilt if a frame changes the session's headers).
        base = self._headers
        headers = self._stamped()
        counts: dict[str, int] = {}  # frames by command, counted once per read
        try:
            for item in self.framer.feed_frames(data):
                if isinstance(item, bytes):
                    frames += 1
                    self.garbage = 0
                    if self.held or "login" in self.paused:
                        self.held.append(item)
                        continue
                    if self._headers is not base:
                        base = self._headers
                        headers = [headers[0], *base]
                    command = self._on_frame(item, now, headers)
                    counts[command] = counts.get(command, 0) + 1
                    continue
                self.garbage += len(item.data)
                m.skipped_bytes.labels(self.kind, item.reason).inc(len(item.data))
                if self.garbage > self.gw.config.max_garbage_bytes:
                    self.close("garbage", f"{self.garbage} bytes outside any good frame")
                    return
                if self.closed:
                    return
        finally:
            for command, n in counts.items():
                m.child(m.frames, self.kind, command).inc(n)
        if self.closed:
            return
        wait = max(self._frames.take(frames, now), self._bytes.take(len(data), now))
        self._device_rates_again(now)
        if wait > 0 and "rate" not in self.paused:
            m.refused.labels(self.kind, "rate_limited").inc()
            self.note("rate_limited", f"throttled for {wait:.2f}s")
            self.pause("rate")
            asyncio.get_running_loop().call_later(wait, self.resume, "rate")
        if self.gw.dispatcher.budget.full:
            self.gw.budget_full(self)

    def _device_rates(self, now: float) -> None:
        cfg = self.gw.config
        self._frames = TokenBucket(cfg.max_frames_per_s, max(cfg.max_frames_per_s, 1.0), now)
        self._bytes = TokenBucket(cfg.max_bytes_per_s, cfg.max_bytes_per_s, now)
        self.platform_rates = False

    def _device_rates_again(self, now: float) -> None:
        """After a platform's logout, a device's rates again (the platform's were granted to
        its login only); called once a read is charged, so the logout's read is the platform's."""
        if self.platform_rates and not self.session.platform:
            self._device_rates(now)

    # -- reading on and off ------------------------------------------------------------------

    def pause(self, reason: str) -> None:
        if not self.paused and self.transport is not None and not self.closed:
            self.transport.pause_reading()
        self.paused.add(reason)

    def resume(self, reason: str) -> None:
        if reason not in self.paused:
            return
        self.paused.discard(reason)
        if not self.paused and self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def close(self, why: str, detail: str = "") -> None:
        """Close with a reason (counted, logged once per peer and interval)."""
        if self.closed:
            return
        self.closed = True
        self.gw.metrics.closed.labels(self.kind, why).inc()
        if why not in ("shutdown",):
            self.gw.metrics.refused.labels(self.kind, why).inc()
            self.note(why, detail or "connection closed")
        if self.transport is not None:
            self.transport.close()  # answers already written still go out

    def note(self, reason: str, detail: str) -> None:
        """Log a refusal, once per peer and reason per interval. A peer as the limits count
        it (``peer_key``): an IPv6 one by its /64, whose addresses one host may all use, so
        that 1,000 connections refused from one /64 were not 1,000 lines. The lines of all
        peers together are bounded too (``gateway.log_lines``): one host may own many /64s."""
        held = self.gw.log_gate.allow(self.host_key, reason)
        if held is not None:
            self.gw.refusal_log.warning(
                self.host_key,
                "%s: %s",
                reason,
                detail,
                extra={
                    "peer": self.peer,
                    "kind": self.kind,
                    "connection": self.id,
                    "reason": reason,
                    "held_back": held,
                },
                held_back=held,
            )

    # -- frames ------------------------------------------------------------------------------

    def _stamped(self) -> list[tuple[str, bytes]]:
        """The record headers of frames received now."""
        return [("received_at", str(time.time_ns() // 1_000_000).encode()), *self._headers]

    def _on_frame(self, frame: bytes, read_at: float, headers: list[tuple[str, bytes]]) -> str:
        """Act on one frame; its metric label (the caller counts frames by command)."""
        was_in = self.session.logged_in
        d = self.session.on_frame(frame)
        if was_in and not self.session.logged_in:
            self.connected_at = read_at  # logged out: the login timeout starts again
        m = self.gw.metrics
        if d.action == PRODUCE:
            self.in_flight += 1
            if d.command == "login" and not self.session.platform:
                m.logins.labels(self.kind, "login", "ok").inc()
                if self.session.vin:
                    self.gw.bind(self, self.session.vin)
            self.gw.dispatcher.submit(
                Pending(
                    self.gw.topics[self.kind],
                    frame,
                    d.key,
                    headers,
                    lambda exc: self._acked(frame, d, exc),
                    read_at,
                )
            )
        elif d.action == ANSWER:
            self._send(frame, d, d.flag)
            if d.command == "platform_logout":
                self._set_headers()
        elif d.action == VERIFY:
            self.pause("login")
            asyncio.get_running_loop().create_task(self._verify(frame, d))
        elif d.action == REFUSE:
            m.refused.labels(self.kind, d.reason).inc()
            self.note(d.reason, d.detail)
            if d.command in _LOGIN_COMMANDS:
                m.logins.labels(self.kind, d.command, "failed").inc()
            self._send(frame, d, d.flag)
            # Only a logged-in session's refusals: the unknown-command, size and identity
            # checks come before the login check, and a stranger's frames must not fill a
            # topic whatever they are refused for (a refused login is counted and logged).
            # Never a platform login (its password is in clear) nor a not_logged_in frame
            # (a stray platform logout of a vehicle session: its sender is told to log in).
            if (
                self.session.logged_in
                and d.reason != "not_logged_in"
                and d.command != "platform_login"
            ):
                self._dead_letter(frame, d, read_at, headers[0][1])
        return d.command

    def _dead_letter(self, frame: bytes, d: Decision, read_at: float, received_at: bytes) -> None:
        """A refused frame goes to the dead-letter topic with its reason (docs/kafka.md), as
        the pipeline's dead letters do: counted, never silently lost. Only for a logged-in
        session: a sender not logged in is told so (or that its login is refused), and an
        unauthenticated stranger's bytes must not fill a topic."""
        ident = frame[4:21].rstrip(b"\0 ")
        headers = [
            ("received_at", received_at),
            *self._headers,
            ("error.reason", d.reason.encode()),
            ("error.detail", d.detail.encode(errors="replace")[:1000]),
            ("error.stage", b"gateway"),
            ("source.topic", self.gw.topics[self.kind].encode()),
        ]
        self.gw.metrics.dead_letters.labels(self.kind, d.reason).inc()
        self.gw.dispatcher.submit(
            Pending(self.gw.dlq_topic, frame, ident or None, headers, _ignore, read_at)
        )

    def _acked(self, frame: bytes, d: Decision, exc: BaseException | None) -> None:
        self.in_flight -= 1
        self._answer_acked(frame, d, exc)
        if self.eof and self.in_flight == 0 and not self.closed:
            self.closed = True
            self.gw.metrics.closed.labels(self.kind, "peer").inc()
            if self.transport is not None:
                self.transport.close()

    def _answer_acked(self, frame: bytes, d: Decision, exc: BaseException | None) -> None:
        if exc is None:
            m = self.gw.metrics
            m.child(m.produced, self.kind).inc()
            self._send(frame, d, d.flag)
        else:
            self.gw.metrics.refused.labels(self.kind, "kafka_refused").inc()
            # Real-time and reissue frames too, though unanswered when stored: silence means
            # accepted (B.2.1), and the terminal would discard data that is not stored.
            self._send(frame, d, d.refused_flag)

    async def _verify(self, frame: bytes, d: Decision) -> None:
        ok = await self.gw.check_password(d.user, d.password, self.host_key)
        flag = self.session.platform_login_done(d.user, ok)
        m = self.gw.metrics
        m.logins.labels(self.kind, "platform_login", "ok" if ok else "failed").inc()
        if ok:
            self._set_headers()
            # A platform forwards many vehicles: its own, larger rates.
            cfg, now = self.gw.config, time.monotonic()
            self._frames = TokenBucket(cfg.platform_frames_per_s, cfg.platform_frames_per_s, now)
            self._bytes = TokenBucket(cfg.platform_bytes_per_s, cfg.platform_bytes_per_s, now)
            self.platform_rates = True
        else:
            m.refused.labels(self.kind, "bad_credentials").inc()
            self.note("bad_credentials", f"platform login of {d.user!r} refused")
        self._send(frame, d, flag)
        if not ok and self.session.login_failures >= self.gw.config.max_login_failures:
            self.close("login_failures", f"{self.session.login_failures} failed platform logins")
            return
        held, self.held = self.held, []
        self.paused.discard("login")
        counts: dict[str, int] = {}
        for item in held:
            if self.closed:
                break
            if "login" in self.paused:
                self.held.append(item)
                continue
            command = self._on_frame(item, time.monotonic(), self._stamped())
            counts[command] = counts.get(command, 0) + 1
        for command, n in counts.items():
            m.child(m.frames, self.kind, command).inc(n)
        if self.closed:
            return
        self._device_rates_again(time.monotonic())  # a logout among the held frames
        if self.gw.dispatcher.budget.full and not self.closed:
            self.gw.budget_full(self)
        if not self.paused and self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def _send(self, frame: bytes, d: Decision, flag: int | None) -> None:
        if flag is None or self.transport is None or self.transport.is_closing():
            return
        self.transport.write(answer(frame, flag, datetime.now(UTC)))
        m = self.gw.metrics
        m.child(m.answers, self.kind, d.command, _RESULT.get(flag, "other")).inc()

    def _set_headers(self) -> None:
        h: list[tuple[str, bytes]] = [
            ("gateway", self.gw.gateway_id.encode()),
            ("peer", self.peer.encode()),
            ("connection", self.id.encode()),
        ]
        if self.session.platform:
            h.append(("platform", self.session.platform.encode("utf-8")))
        self._headers = h

    def info(self) -> dict[str, Any]:
        """For logs: who this is."""
        return {"peer": self.peer, "kind": self.kind, "connection": self.id}
