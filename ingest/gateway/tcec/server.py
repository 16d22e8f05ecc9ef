"""The T/CEC 102 HTTP receiver: aiohttp routes, token issue, checks, produce, answer.

Each request runs the same checks in the same order, each with the standard's Ret
(docs/gateway.md, "T/CEC 102 receiver"): the bearer token of notification_* (4002, from its
header, before the body is read), the envelope's five fields (4003, the body read within
``read_timeout_s``), the token's OperatorID (4002), the operator (4003), Sig (4001),
TimeStamp within the clock skew (4003), Data decrypted to a JSON object (4003), (TimeStamp,
Seq) not seen before (4003), the record as the pipeline reads it and its time within the
pipeline's frame-time window (4004);
then the push is produced with acks=all and answered 0 only once Kafka acknowledged it, else
-1 (busy) after a bounded wait.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CollectorRegistry

from contract.clock import EARLIEST_MS
from ingest.decoders.charger import parse_tcec_timestamp
from ingest.decoders.errors import BAD_TIME, FrameError
from ingest.errors import UserError
from ingest.gateway.log_budget import BudgetedLog
from ingest.gateway.renewal import NOT_WRITTEN
from ingest.gateway.tcec.envelope import (
    Envelope,
    EnvelopeError,
    OperatorSecrets,
    Ret,
    answer,
    open_data,
    parse_envelope,
    verify,
)
from ingest.gateway.tcec.metrics import TcecMetrics
from ingest.gateway.tcec.peer_limits import PeerLog, TokenSlots
from ingest.gateway.tcec.site import LOG_INTERVAL_S, LOG_LINES, ConnectionGate, GatedSite
from ingest.gateway.tcec.tokens import ReplayWindow, TokenIssuer
from ingest.pipeline import wire
from ingest.pipeline.adapters import decode_tcec_record
from ingest.pipeline.logs import RateLimiter
from ingest.pipeline.publish import TRANSIENT_KAFKA, Sender, retriable
from ingest.pipeline.timewindow import TimeWindow, iso_ms

__all__ = ["NOTIFICATIONS", "QUERY_TOKEN", "TcecParams", "TcecServer", "make_app", "start_tcec"]

log = logging.getLogger(__name__)

QUERY_TOKEN: Final = "query_token"  # noqa: S105 - an interface name, not a password
# The push interfaces: the pipeline's decoder reads exactly these (ingest.decoders.charger).
NOTIFICATIONS: Final = frozenset(
    {
        "notification_stationStatus",
        "notification_equip_charge_status",
        "notification_charge_order_info",
        "notification_stationInfo",
    }
)
_BEARER: Final = "Bearer "


# query_token requests handled at once (besides max_in_flight's pushes): anyone may send them,
# and an operator needs one per token lifetime (2 h). Their bodies are small (< 1 KB: the
# operator's id and secret, encrypted) and must come quickly. Per peer (an IPv6 host: its /64):
# tcec.token_requests_per_peer.
_TOKEN_REQUESTS: Final = 32
_TOKEN_BODY_BYTES: Final = 4096
_TOKEN_READ_TIMEOUT_S: Final = 2.0

# Refused requests' WARNING lines: one per peer and Ret per 10 s, at most site.LOG_LINES per
# site.LOG_INTERVAL_S of all peers together; past them, one line says how many were held back.


@dataclass(frozen=True, slots=True, kw_only=True)
class TcecParams:
    """What the receiver needs; ``ingest.gateway.tcec.params_from_settings`` builds it."""

    host: str
    port: int
    path_prefix: str
    topic: str
    operators: Mapping[str, OperatorSecrets] = field(repr=False)
    token_key: bytes | None = field(default=None, repr=False)
    token_lifetime_s: int = 7200
    clock_skew_s: int = 300
    replay_window: int = 10_000
    max_body_bytes: int = 262_144
    max_in_flight: int = 1024
    token_requests_per_peer: int = 0  # 0: no per-address limit (behind a proxy)
    max_connections: int = 4096
    max_connections_per_peer: int = 1024
    header_timeout_s: float = 10.0
    read_timeout_s: float = 10.0
    produce_timeout_s: float = 10.0
    gateway_id: str = ""
    # The pipeline's frame-time window (``time_window(settings)``: storage.retention_days back,
    # never before 2000; pipeline.frame_max_future_s ahead): a push dated outside it would be
    # dead-lettered there, so it is refused here. The default is the settings' defaults.
    window: TimeWindow = field(default_factory=lambda: TimeWindow(1095 * 86_400_000, 600_000))
    # gateway.nat64_prefixes: peers in them count as the IPv4 address they embed
    nat64: tuple[ipaddress.IPv6Network, ...] = ()
    clock: Callable[[], float] = time.time  # wall clock, epoch s (tests move it)


class _Receiver:
    def __init__(self, params: TcecParams, producer: Sender, metrics: TcecMetrics) -> None:
        self._p = params
        self._producer = producer
        self._m = metrics
        self._tokens = TokenIssuer(params.token_key, params.token_lifetime_s)
        # One window per configured operator: bounded by the operators file, never by input.
        self._windows = {op: ReplayWindow(params.replay_window) for op in params.operators}
        self._limiter = RateLimiter(10.0)  # unexpected errors, by interface
        self._peer_log = PeerLog(10.0, nat64=params.nat64)  # refusals, by peer and Ret
        # ... and their lines of all peers together: one host owns many peers' worth of
        # addresses (the /64s of its /48). Closed with the app (on_cleanup): no timer outlives it.
        self._warnings = BudgetedLog(log, "T/CEC 102 requests", LOG_LINES, LOG_INTERVAL_S)
        self._in_flight = 0  # pushes being handled
        # query_token requests being handled: slots of their own, in all and per peer.
        self._token_slots = TokenSlots(
            _TOKEN_REQUESTS, params.token_requests_per_peer, params.nat64
        )

    async def handle(self, request: web.Request) -> web.Response:
        interface = request.match_info["interface"]
        if interface == QUERY_TOKEN:
            return await self._token_request(request)
        if interface not in NOTIFICATIONS:
            raise web.HTTPNotFound(text=f"no T/CEC 102 interface {interface!r} here\n")
        # The token first, from its header alone: a client without one is answered before its
        # body is read, so it cannot hold a slot of the operators' pushes.
        try:
            holder, why = self._token_holder(request)
        except Exception:
            # A header value no check foresaw: Ret 500 counted and logged rate-limited, as in
            # _handle, not aiohttp's bare HTTP 500 with a traceback per request.
            self._unexpected(interface)
            self._m.requests.labels(interface, str(int(Ret.SYSTEM_ERROR))).inc()
            return _json(answer(None, Ret.SYSTEM_ERROR, "system error", None))
        if why is not None:
            self._m.requests.labels(interface, str(int(Ret.BAD_TOKEN))).inc()
            self._log(interface, Ret.BAD_TOKEN, why, request.remote)
            return _json(answer(None, Ret.BAD_TOKEN, why, None))
        if self._in_flight >= self._p.max_in_flight:
            # Kafka is slow and requests pile up: refuse before reading the body, so memory
            # stays bounded; the operator retries later, as -1 asks.
            return self._busy(interface, request, "too many requests in flight")
        self._in_flight += 1
        self._m.in_flight.inc()
        try:
            return await self._handle(interface, request, holder, self._p.read_timeout_s)
        finally:
            self._in_flight -= 1
            self._m.in_flight.dec()

    async def _token_request(self, request: web.Request) -> web.Response:
        """query_token, open to anyone: slots of its own, never the pushes' (a token lasts
        hours: an operator asks rarely), at most ``tcec.token_requests_per_peer`` per peer
        (when set: behind a proxy every request has the proxy's), a small body that must come
        within ``_TOKEN_READ_TIMEOUT_S``. A few sockets sending headers and nothing else could
        otherwise keep every operator from its token."""
        remote = request.remote
        if not self._token_slots.take(remote):
            return self._busy(QUERY_TOKEN, request, "too many token requests in flight")
        try:
            size = request.content_length
            if size is not None and size > _TOKEN_BODY_BYTES:
                msg = f"a query_token body is at most {_TOKEN_BODY_BYTES} bytes"
                self._m.requests.labels(QUERY_TOKEN, str(int(Ret.BAD_PARAMETER))).inc()
                self._log(QUERY_TOKEN, Ret.BAD_PARAMETER, msg, remote)
                return _json(answer(None, Ret.BAD_PARAMETER, msg, None))
            timeout = min(self._p.read_timeout_s, _TOKEN_READ_TIMEOUT_S)
            return await self._handle(QUERY_TOKEN, request, None, timeout, _TOKEN_BODY_BYTES)
        finally:
            self._token_slots.give_back(remote)

    def _busy(self, interface: str, request: web.Request, why: str) -> web.Response:
        self._m.requests.labels(interface, str(int(Ret.BUSY))).inc()
        self._log(interface, Ret.BUSY, why, request.remote)
        return _json(answer(None, Ret.BUSY, "system busy: retry later", None))

    async def _handle(
        self,
        interface: str,
        request: web.Request,
        holder: str | None,
        read_timeout_s: float,
        max_body: int | None = None,
    ) -> web.Response:
        received_ms = int(self._p.clock() * 1000)
        secrets: OperatorSecrets | None = None
        data: dict[str, Any] | None = None
        try:
            env = parse_envelope(await self._read(request, read_timeout_s, max_body))
            if holder is not None and holder != env.operator_id:
                raise EnvelopeError(Ret.BAD_TOKEN, "token belongs to another OperatorID")
            secrets = self._p.operators.get(env.operator_id)
            if secrets is None:
                raise EnvelopeError(
                    Ret.BAD_PARAMETER,
                    f"unknown OperatorID {env.operator_id}: ask the platform to register it",
                )
            verify(secrets, env)
            self._check_time(env)
            plain, doc = open_data(secrets, env)
            window = self._windows[env.operator_id]
            if not window.reserve(env.timestamp, env.seq):
                raise EnvelopeError(
                    Ret.BAD_PARAMETER, "TimeStamp and Seq were already received: send a new Seq"
                )
            try:
                if interface == QUERY_TOKEN:
                    data = self._token(secrets, doc)
                else:
                    peer = (
                        request.transport.get_extra_info("peername") if request.transport else None
                    )
                    data = await self._push(interface, env, plain, doc, received_ms, peer)
            except BaseException:
                window.release(env.timestamp, env.seq)  # not taken: a retry is no replay
                raise
            ret, msg = Ret.OK, "ok"
        except EnvelopeError as exc:
            ret, msg, data = exc.ret, str(exc), None
            self._log(interface, ret, msg, request.remote)
        except Exception:
            self._unexpected(interface)
            ret, msg, data = Ret.SYSTEM_ERROR, "system error", None
        self._m.requests.labels(interface, str(int(ret))).inc()
        return _json(answer(secrets, ret, msg, data))

    async def _read(
        self, request: web.Request, timeout_s: float, max_body: int | None = None
    ) -> bytes:
        """The body, within ``timeout_s``: a client that sends headers and then its body
        slowly, or never, holds a slot only that long. ``max_body``: a smaller limit than
        ``tcec.max_body_bytes``, whatever the Content-Length says (a chunked body has none)."""
        try:
            async with asyncio.timeout(timeout_s):
                if max_body is None:
                    return await request.read()
                body = bytearray()
                while chunk := await request.content.read(max_body + 1 - len(body)):
                    body += chunk
                    if len(body) > max_body:
                        raise EnvelopeError(
                            Ret.BAD_PARAMETER, f"a {QUERY_TOKEN} body is at most {max_body} bytes"
                        )
                return bytes(body)
        except web.HTTPRequestEntityTooLarge:
            raise EnvelopeError(
                Ret.BAD_PARAMETER, f"the body is over {self._p.max_body_bytes} bytes"
            ) from None
        except TimeoutError:
            raise EnvelopeError(
                Ret.BAD_PARAMETER, f"the body did not arrive within {timeout_s:g} s"
            ) from None
        except (ConnectionError, HttpProcessingError) as exc:
            # The client went away mid-body (a reset, a short body): nobody reads the answer.
            raise EnvelopeError(Ret.BAD_PARAMETER, f"the body was cut off ({exc!r})") from None

    def _token_holder(self, request: web.Request) -> tuple[str | None, str | None]:
        """(the OperatorID of the request's valid bearer token, None), else (None, why)."""
        auth = request.headers.get("Authorization", "")
        if not auth.startswith(_BEARER):
            return None, "Authorization: Bearer <token> is required"
        return self._tokens.holder(auth[len(_BEARER) :].strip(), self._p.clock())

    def _check_time(self, env: Envelope) -> None:
        try:
            sent = parse_tcec_timestamp(env.timestamp).timestamp()
        except FrameError:
            raise EnvelopeError(
                Ret.BAD_PARAMETER, "TimeStamp is not a real date and time"
            ) from None
        off = sent - self._p.clock()
        if abs(off) > self._p.clock_skew_s:
            raise EnvelopeError(
                Ret.BAD_PARAMETER,
                f"TimeStamp is {off:+.0f} s from the platform's clock (China time, at most "
                f"{self._p.clock_skew_s} s): set the sender's clock (NTP)",
            )

    def _check_window(self, ts_ms: int | None, received_ms: int) -> None:
        """4004 ``bad_time`` for a push dated outside the pipeline's frame-time window (it
        would dead-letter it as time_out_of_window): EndTime 1999 or 2099, say."""
        w = self._p.window
        if ts_ms is None or w.contains(ts_ms, received_ms, received_ms):
            return
        start, end = w.start(received_ms), w.end(received_ms)
        why = "ahead of the platform's clock" if ts_ms > end else "older than the platform keeps"
        if ts_ms < start and start == EARLIEST_MS:
            why = "before 2000"
        raise EnvelopeError(
            Ret.BAD_BUSINESS,
            f"{BAD_TIME}: the push's time {iso_ms(ts_ms)} is {why} (stored: {iso_ms(start)} to "
            f"{iso_ms(end)}): send the real time (China time)",
        )

    def _token(self, secrets: OperatorSecrets, doc: dict[str, Any]) -> dict[str, Any]:
        given = doc.get("OperatorSecret")
        ok = (
            doc.get("OperatorID") == secrets.operator_id
            and type(given) is str
            and hmac.compare_digest(given.encode(), secrets.operator_secret.encode())
        )
        if not ok:
            # The standard answers Ret 0 with SuccStat 1; FailReason 2: wrong secret.
            return {
                "OperatorID": secrets.operator_id,
                "SuccStat": 1,
                "AccessToken": "",
                "TokenAvailableTime": 0,
                "FailReason": 2,
            }
        token, lifetime = self._tokens.issue(secrets.operator_id, self._p.clock())
        self._m.tokens_issued.inc()
        return {
            "OperatorID": secrets.operator_id,
            "SuccStat": 0,
            "AccessToken": token,
            "TokenAvailableTime": lifetime,
            "FailReason": 0,
        }

    async def _push(
        self,
        interface: str,
        env: Envelope,
        plain: bytes,
        doc: dict[str, Any],
        received_ms: int,
        peer: Any,
    ) -> dict[str, Any]:
        headers = wire.tcec_headers(
            interface, env.operator_id, env.timestamp, seq=env.seq, received_ms=received_ms
        )
        if self._p.gateway_id:
            headers.append((wire.GATEWAY, self._p.gateway_id.encode()))
        if isinstance(peer, tuple) and len(peer) >= 2:
            headers.append((wire.PEER, f"{peer[0]}:{peer[1]}".encode()))
        # The pipeline's own decoding of this very record (headers, JSON, the rows' time) and
        # its time window: what it would dead-letter is refused here, with its reason, while
        # the operator can still fix and resend it, and never reaches the topic.
        try:
            rows = decode_tcec_record(plain, received_ms, headers)
        except FrameError as exc:
            raise EnvelopeError(Ret.BAD_BUSINESS, f"{exc.reason}: {exc.detail}") from None
        self._check_window(rows.ts_ms, received_ms)
        key = kafka_key(env.operator_id, doc)
        start = time.perf_counter()
        try:
            async with asyncio.timeout(self._p.produce_timeout_s):
                ack = await self._producer.send(self._p.topic, plain, key=key, headers=headers)
                await ack
        except TRANSIENT_KAFKA as exc:
            # Never written: behind another push's gap (the producer is being replaced,
            # ingest.gateway.renewal) or caught by a producer's stop: the operator sends it again.
            if isinstance(exc, (TimeoutError, *NOT_WRITTEN)) or retriable(exc):
                raise EnvelopeError(
                    Ret.BUSY, "Kafka did not acknowledge the push in time: retry later"
                ) from None
            log.error(
                "T/CEC 102: producing to %s failed (%s: %s); fix the topic or permissions",
                self._p.topic,
                type(exc).__name__,
                exc,
            )
            raise EnvelopeError(Ret.SYSTEM_ERROR, "the platform cannot store pushes now") from None
        self._m.produce_latency.observe(time.perf_counter() - start)
        return _push_answer(interface, doc)

    def _unexpected(self, interface: str) -> None:
        """Log the exception being handled: rate-limited like the refusals, since whatever
        input reaches this, anyone may repeat it."""
        held = self._limiter.allow(f"500:{interface}")
        if held is not None:
            log.exception(
                "T/CEC 102 %s: unexpected error (a bug); answered Ret 500 (suppressed %d)",
                interface,
                held,
            )

    def _log(self, interface: str, ret: Ret, msg: str, remote: str | None) -> None:
        held = self._peer_log.allow(remote, f"Ret {int(ret)}")
        if held is not None:
            self._warnings.warning(
                self._peer_log.key(remote),
                "T/CEC 102 %s from %s: Ret %d, %s (suppressed %d)",
                interface,
                remote,
                int(ret),
                msg,
                held,
                held_back=held,
            )

    async def close(self, _app: web.Application) -> None:
        """The app is cleaned up (its requests done): the lines held back are logged now."""
        self._warnings.close()


def _json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


def kafka_key(operator_id: str, doc: Mapping[str, Any]) -> bytes:
    """``OperatorID:ConnectorID`` when the push is about one connector, else the OperatorID
    (docs/kafka.md): one connector's pushes stay in order on one partition."""
    cid = doc.get("ConnectorID")
    if cid is None:
        info = doc.get("ConnectorStatusInfo")
        items = info if isinstance(info, list) else [info]
        # Strings only: a list there (a push this interface does not decode) is unhashable.
        ids = {
            c for i in items if isinstance(i, dict) and isinstance(c := i.get("ConnectorID"), str)
        }
        cid = ids.pop() if len(ids) == 1 else None
    if isinstance(cid, str) and cid:
        return f"{operator_id}:{cid}".encode()
    return operator_id.encode()


def _push_answer(interface: str, doc: Mapping[str, Any]) -> dict[str, Any]:
    """The answer's Data of each push (T/CEC 102.4: a status, or the order it confirms)."""
    if interface == "notification_equip_charge_status":
        return {"StartChargeSeq": doc.get("StartChargeSeq"), "SuccStat": 0}
    if interface == "notification_charge_order_info":
        return {
            "StartChargeSeq": doc.get("StartChargeSeq"),
            "ConnectorID": doc.get("ConnectorID"),
            "ConfirmResult": 0,
        }
    return {"Status": 0}


def make_app(params: TcecParams, producer: Sender, metrics: TcecMetrics) -> web.Application:
    """The aiohttp application of the receiver (routes under ``params.path_prefix``)."""
    app = web.Application(client_max_size=params.max_body_bytes)
    receiver = _Receiver(params, producer, metrics)
    prefix = params.path_prefix.rstrip("/")
    app.router.add_post(prefix + r"/v{version:[0-9][0-9.]*}/{interface}", receiver.handle)
    app.on_cleanup.append(receiver.close)
    return app


class TcecServer:
    """A running receiver; ``close()`` (or leaving ``async with``) stops it."""

    def __init__(
        self,
        runner: web.AppRunner,
        host: str,
        port: int,
        prefix: str,
        gate: ConnectionGate | None = None,
    ) -> None:
        self._runner = runner
        self._gate = gate
        self.host = host
        self.port = port
        self.prefix = prefix.rstrip("/")

    def url(self, version: str = "1.0") -> str:
        """The base URL of the interfaces, e.g. ``http://127.0.0.1:8090/evcs/v1.0``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.prefix}/v{version}"

    async def close(self) -> None:
        await self._runner.cleanup()
        if self._gate is not None:  # after the connections' last refusals
            self._gate.close()

    async def __aenter__(self) -> TcecServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def start_tcec(
    params: TcecParams, producer: Sender, registry: CollectorRegistry
) -> TcecServer:
    """Start the receiver on ``params.host:port`` beside the gateway's TCP listeners.

    ``producer`` is a started aiokafka producer with ``acks="all"`` (the gateway's own); the
    receiver never stops it. Metrics ``nev_gateway_tcec_*`` are registered on ``registry``.
    """
    if not params.token_key:
        log.warning(
            "tcec.token_key is empty: tokens are valid on this gateway process only; set it "
            "(the same on every process) when operators are balanced across several"
        )
    metrics = TcecMetrics(registry)
    app = make_app(params, producer, metrics)
    # keepalive_timeout is aiohttp's only bound on a connection that has not sent a whole
    # request line and headers (a timer from the connection's start, and from each answer):
    # its default (3630 s) let connections that sent half a request, or nothing, hold a
    # descriptor for an hour.
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=params.header_timeout_s)
    await runner.setup()
    gate = ConnectionGate(
        params.max_connections, params.max_connections_per_peer, metrics, params.nat64
    )
    site = GatedSite(runner, params.host, params.port, gate)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise UserError(
            f"tcec.listen: cannot listen on {params.host}:{params.port} ({exc.strerror}); "
            "choose a free port or stop what holds it"
        ) from None
    port = runner.addresses[0][1] if runner.addresses else params.port  # port 0: the real one
    log.info("T/CEC 102 receiver on %s:%d%s", params.host, port, params.path_prefix)
    return TcecServer(runner, params.host, port, params.path_prefix, gate)
