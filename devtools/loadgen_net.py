"""The network side of ``loadgen --via-gateway``: where to connect (gateways, source
addresses), the descriptor limit, and one client connection (an asyncio ``Protocol``) that
sends frames, reads the gateway's answers and checks each against its request."""

from __future__ import annotations

import asyncio
import ipaddress
import resource
import socket
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, cast

from devtools.sim.gbt_session import ANSWERED, check_answer, parse_answer
from ingest.decoders.framer import RawFrame, StreamFramer

__all__ = [
    "Conn",
    "NetStats",
    "nofile_for",
    "open_socket",
    "parse_source_addrs",
    "parse_targets",
]

# Linux: bind() to an address without choosing the port until connect(), so one source
# address serves ~28k connections to each gateway address, not ~28k in all.
IP_BIND_ADDRESS_NO_PORT: Final = 24
# Descriptors beyond the connections: the event loop, the broker check, stdio, files.
NOFILE_SPARE: Final = 64
MAX_SOURCES: Final = 256


def parse_targets(text: str) -> list[tuple[str, int]]:
    """``HOST:PORT[,HOST:PORT...]`` -> [(host, port)]; ValueError says the form."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        host, _, port = part.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{part!r}: a gateway is HOST:PORT, e.g. 127.0.0.1:32960")
        out.append((host.strip("[]"), int(port)))
    if not out:
        raise ValueError("--via-gateway needs at least one HOST:PORT")
    return out


def parse_source_addrs(text: str) -> list[str]:
    """``127.0.0.2-127.0.0.9`` or ``A,B,...`` -> the addresses; ValueError says the form."""
    out: list[str] = []
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            first, _, last = part.partition("-")
            lo = ipaddress.IPv4Address(first)
            hi = ipaddress.IPv4Address(last) if last else lo
            if hi < lo or int(hi) - int(lo) >= MAX_SOURCES:
                raise ValueError(part)
            out += [str(ipaddress.IPv4Address(n)) for n in range(int(lo), int(hi) + 1)]
    except ValueError:
        raise ValueError(
            f"--source-addrs {text!r}: give IPv4 addresses A-B or A,B,... "
            f"(at most {MAX_SOURCES}), e.g. 127.0.0.2-127.0.0.9"
        ) from None
    return out


def nofile_for(connections: int) -> int:
    """Raise the soft descriptor limit to what ``connections`` need; the limit now.
    ValueError (one line, naming ``ulimit -n``) when the hard limit is too low."""
    need = connections + NOFILE_SPARE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return soft
    if hard != resource.RLIM_INFINITY and hard < need:
        raise ValueError(
            f"{connections:,} connections need {need:,} descriptors but the hard limit is "
            f"{hard:,}: raise it (ulimit -n {need}, or LimitNOFILE=) or split the devices over "
            "processes (--device-share K/M)"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    return need


async def open_socket(source: str | None, target: tuple[str, int]) -> socket.socket:
    """A connected non-blocking TCP socket from ``source`` (any port) to ``target``."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if source is not None:
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((source, 0))
        await loop.sock_connect(sock, target)
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass(slots=True)
class NetStats:
    """Totals over every connection of a run (the progress line and the result)."""

    connecting: int = 0
    open: int = 0
    opened: int = 0
    connect_failed: int = 0
    closed_by_peer: int = 0
    logins: int = 0  # vehicle or platform logins answered with success
    logins_made: int = 0  # minimal logins sent for a device whose records did not open with one
    login_refused: int = 0
    sent: int = 0  # frames written to sockets
    bytes_sent: int = 0
    unsent: int = 0  # frames for a connection that failed or was closed
    awaiting: int = 0  # answers due and not yet received
    answers: int = 0  # answers matching their request, success
    # Answers to real-time/reissue frames: success only with gateway.answer_realtime (the
    # standard answers data only on error); a refusal means the frame was not put on Kafka.
    data_answers: int = 0
    data_refused: Counter[str] = field(default_factory=Counter)
    data_sent: int = 0  # real-time and reissue frames among them
    acked: int = 0  # data frames sent before an answered request on their connection
    bad_answers: Counter[str] = field(default_factory=Counter)
    garbage_bytes: int = 0  # bytes from the gateway that were not a whole frame
    connect_errors: Counter[str] = field(default_factory=Counter)
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    started: float = field(default_factory=time.monotonic)  # the run's start (monotonic)
    last_login_at: float = 0.0  # when the last successful login answer came

    def as_dict(self) -> dict[str, Any]:
        return {
            "connections_opened": self.opened,
            "connect_failed": self.connect_failed,
            "connect_errors": dict(self.connect_errors),
            "closed_by_peer": self.closed_by_peer,
            "logins": self.logins,
            "login_refused": self.login_refused,
            "logins_made": self.logins_made,
            "last_login_after_s": round(self.last_login_at - self.started, 1)
            if self.last_login_at
            else None,
            "frames_sent": self.sent,
            "bytes_sent": self.bytes_sent,
            "unsent": self.unsent,
            "answers": self.answers,
            "answers_missing": self.awaiting,
            "bad_answers": dict(self.bad_answers),
            "data_answers": self.data_answers,
            "data_refused": dict(self.data_refused),
            "data_frames_sent": self.data_sent,
            # A refused data frame is answered at once, so by the end every refusal is known.
            "acked_data_frames": self.acked - sum(self.data_refused.values()),
            "garbage_bytes_received": self.garbage_bytes,
        }

    def line(self) -> str:
        """The progress line's connection part."""
        bad = sum(self.bad_answers.values()) + sum(self.data_refused.values())
        return (
            f", {self.open:,} open, {self.logins:,} logins, {self.answers:,} answers"
            f"{f', {bad:,} bad answers' if bad else ''}"
            f"{f', {self.connect_failed:,} connect failed' if self.connect_failed else ''}"
        )


class Conn(asyncio.Protocol):
    """One client connection: frames written before it is up are held (bounded by what the
    sender paces), answers are matched to their request by (command, identity) in order."""

    __slots__ = (
        "_acked",
        "_data",
        "_drained",
        "_framer",
        "_held",
        "_pending",
        "dead",
        "edition",
        "identity",
        "last_sent",
        "login_seq",
        "on_data",
        "stats",
        "transport",
    )

    def __init__(self, stats: NetStats, identity: str, edition: int) -> None:
        self.stats = stats
        self.identity = identity  # the VIN, or the platform's code
        self.edition = edition
        self.login_seq = 1
        self.transport: asyncio.Transport | None = None
        self.dead = False
        self.last_sent = time.monotonic()
        self._framer = StreamFramer()
        self._held: list[bytes] | None = []
        self._pending: dict[tuple[int, bytes], deque[tuple[bytes, int]]] = {}
        self._data = 0  # data frames given to send()
        self._acked = 0  # of which acknowledged
        self._drained: asyncio.Future[None] | None = None
        # Called with each answer to a data frame (the benchmark's latency probe).
        self.on_data: Callable[[bytes], None] | None = None

    # -- sending --------------------------------------------------------------------------

    def send(self, raw: bytes, *, data: bool = False) -> None:
        """Write one frame (or hold it until the connection is up); ``data``: a good
        real-time or reissue frame, counted as acknowledged once a later request is."""
        if self.dead:
            self.stats.unsent += 1
            return
        if data:
            self._data += 1
            self.stats.data_sent += 1
        if raw[3] == 0xFE and raw[2] in ANSWERED:
            key = (raw[2], raw[4:21])
            self._pending.setdefault(key, deque()).append((raw, self._data))
            self.stats.awaiting += 1
            self.stats.settled.clear()
        self.last_sent = time.monotonic()
        if self._held is not None:
            self._held.append(raw)
            return
        assert self.transport is not None
        self.transport.write(raw)
        self.stats.sent += 1
        self.stats.bytes_sent += len(raw)

    async def drain(self) -> None:
        """Wait while the gateway does not read (TCP pushes back on this sender)."""
        if self._drained is not None:
            await self._drained

    def pause_writing(self) -> None:
        self._drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._drained = None

    # -- the connection -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast("asyncio.Transport", transport)
        self.stats.open += 1
        self.stats.opened += 1
        held, self._held = self._held or [], None
        for raw in held:
            self.transport.write(raw)
            self.stats.sent += 1
            self.stats.bytes_sent += len(raw)

    def failed(self, reason: str) -> None:
        """The connection could not be opened: what was held and is still due is lost."""
        self.stats.connect_failed += 1
        self.stats.connect_errors[reason] += 1
        self.stats.unsent += len(self._held or [])
        self._held = None
        self._give_up()

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.open -= 1
        if not self.dead:
            self.stats.closed_by_peer += 1
        self._give_up()
        self.resume_writing()

    def close(self) -> None:
        """Close by our side (the run is over)."""
        self.dead = True
        if self.transport is not None:
            self.transport.close()

    def _give_up(self) -> None:
        self.dead = True
        missing = sum(len(q) for q in self._pending.values())
        self._pending.clear()
        self.stats.awaiting -= missing
        if missing:
            self.stats.bad_answers["missing"] += missing
        self._settle()

    # -- answers --------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        for item in self._framer.feed(data):
            if isinstance(item, RawFrame):
                self._answer(item.data)
            else:
                self.stats.garbage_bytes += len(item.data)

    def _answer(self, raw: bytes) -> None:
        stats = self.stats
        answer = parse_answer(raw)
        if answer.command in (0x02, 0x03):
            if answer.response == 0x01:
                stats.data_answers += 1
            else:
                stats.data_refused[f"0x{answer.response:02x}"] += 1
            if self.on_data is not None:
                self.on_data(raw)
            return
        queue = self._pending.get((answer.command, answer.identity))
        if not queue:
            stats.bad_answers["unexpected"] += 1
            return
        request, position = queue.popleft()
        if not queue:
            del self._pending[(answer.command, answer.identity)]
        stats.awaiting -= 1
        why = check_answer(request, answer, time.time_ns() // 1_000_000)
        if why is None:
            stats.answers += 1
            if answer.command in (0x01, 0x05):
                stats.logins += 1
                stats.last_login_at = time.monotonic()
            # The gateway answers only after Kafka acknowledged the frame, in the order the
            # connection sent them: everything up to the answered request is durable.
            if position > self._acked:
                stats.acked += position - self._acked
                self._acked = position
        else:
            stats.bad_answers[why] += 1
            if answer.command in (0x01, 0x05):
                stats.login_refused += 1
        self._settle()

    def _settle(self) -> None:
        if self.stats.awaiting == 0:
            self.stats.settled.set()
