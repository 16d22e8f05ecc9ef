"""``nev-ingest loadgen --via-gateway HOST:PORT[,...]``: the generated vehicle traffic sent over
TCP through the GB/T 32960 gateway instead of straight to Kafka.

Per device (the default): one connection per vehicle, opened when its first record is due;
vehicle login first (the simulator's own, or a minimal one if the stream opens otherwise),
then its records at the run's pace, a heartbeat (0x07) after ``--heartbeat-s`` of silence,
and at the end a logout (0x04). ``--platforms N``: N enterprise-platform connections that log
in (0x05, ``--platform-user``/``--platform-password`` or ``--platform-credentials FILE``)
before anything else, each forwarding the records of the vehicles hashed to it, and log out
(0x06) at the end. Connections go round-robin over the gateways and the ``--source-addrs``
(each 127.x address gives ~28k ports per gateway); the descriptor limit is raised to what
they need. Every answer is checked against its request (command, identity, success flag,
time kept); frames sent before an answered request count as acknowledged (the gateway
answers only after Kafka acknowledged, in order per connection).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from devtools.loadgen_net import Conn, NetStats, nofile_for, open_socket
from devtools.loadgen_send import LoadResult, Progress
from devtools.sim import gbt_session
from devtools.sim.fleet import GOOD_KINDS, Message

__all__ = ["GatewayPlan", "add_arguments", "plan_from_args", "run_via_gateway"]

# Connects in flight at once: a storm is many logins within a minute, not one SYN flood that
# overflows the gateway's accept backlog (the kernel would retry each after 1 s, 3 s, ...).
CONNECTS_IN_FLIGHT: Final = 256
MAX_PLATFORMS: Final = 10_000


@dataclass(frozen=True, slots=True)
class GatewayPlan:
    """Where and how a run connects."""

    targets: tuple[tuple[str, int], ...]
    sources: tuple[str, ...] = ()  # empty: the kernel's choice
    platforms: int = 0  # 0: one connection per device
    credentials: tuple[tuple[str, str], ...] = ()  # (user, password) per platform, cycled
    heartbeat_s: float = 30.0  # 0: none
    answer_timeout_s: float = 30.0
    share: tuple[int, int] = (0, 1)  # this process sends the devices with hash % M == K
    edition: int = 2016  # of platform frames and of logins made up for a device


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``--via-gateway`` flags."""
    from ingest.cli.args import float_range, int_range

    p.add_argument(
        "--via-gateway",
        default=None,
        metavar="HOST:PORT[,HOST:PORT...]",
        help="send the vehicle frames over TCP through these GB/T 32960 gateways, not to "
        "Kafka; one connection per vehicle (or per --platforms), and a gateway holds at most "
        "gateway.max_connections_per_peer (1,000 by default) from one address: raise it there "
        "or spread the connections with --source-addrs",
    )
    p.add_argument(
        "--platforms",
        type=int_range(0, MAX_PLATFORMS),
        default=0,
        help="with --via-gateway: this many enterprise-platform connections (platform login "
        "0x05) forwarding the vehicles' frames; 0 = one connection per vehicle",
    )
    p.add_argument("--platform-user", default=None, help="platform login user name (12 bytes)")
    p.add_argument(
        "--platform-password",
        default=None,
        help="platform login password (20 bytes); visible in ps, prefer --platform-credentials",
    )
    p.add_argument(
        "--platform-credentials",
        type=Path,
        default=None,
        metavar="FILE",
        help="lines USER:PASSWORD, one per platform account, used round-robin",
    )
    p.add_argument(
        "--source-addrs",
        default=None,
        metavar="A-B|A,B",
        help="local addresses to connect from, e.g. 127.0.0.2-127.0.0.9 (~28k ports each; "
        "each address counts against the gateway's gateway.max_connections_per_peer)",
    )
    p.add_argument(
        "--heartbeat-s",
        type=float_range(0, 3600),
        default=30.0,
        help="with --via-gateway: a heartbeat after this many seconds without a frame; 0 = none",
    )
    p.add_argument(
        "--answer-timeout-s",
        type=float_range(0, 3600, low_open=True),
        default=30.0,
        help="with --via-gateway: how long to wait at the end for answers still due",
    )
    p.add_argument(
        "--device-share",
        type=_share,
        default=(0, 1),
        metavar="K/M",
        help="with --via-gateway: send only the devices whose VIN hashes to K of M (run M "
        "processes K=0..M-1 when one process's descriptor limit is too low)",
    )


def _share(text: str) -> tuple[int, int]:
    k, _, m = text.partition("/")
    if not (k.isdigit() and m.isdigit() and 0 <= int(k) < int(m) <= 1024):
        raise argparse.ArgumentTypeError(f"{text!r}: give K/M with 0 <= K < M <= 1024, e.g. 0/4")
    return int(k), int(m)


def plan_from_args(args: argparse.Namespace) -> GatewayPlan:
    """The plan from the flags; ValueError (one line) names the flag to fix."""
    from devtools.loadgen_net import parse_source_addrs, parse_targets

    creds: list[tuple[str, str]] = []
    if args.platform_credentials is not None:
        creds = read_credentials(args.platform_credentials)
    elif args.platform_user is not None:
        creds = [(args.platform_user, args.platform_password or "")]
    if args.platforms and not creds:
        raise ValueError(
            "--platforms needs an account: --platform-user and --platform-password, or "
            "--platform-credentials FILE"
        )
    return GatewayPlan(
        targets=tuple(parse_targets(args.via_gateway)),
        sources=tuple(parse_source_addrs(args.source_addrs)) if args.source_addrs else (),
        platforms=args.platforms,
        credentials=tuple(creds),
        heartbeat_s=args.heartbeat_s,
        answer_timeout_s=args.answer_timeout_s,
        share=args.device_share,
    )


def read_credentials(path: Path) -> list[tuple[str, str]]:
    """``USER:PASSWORD`` lines (blank lines and ``#`` comments skipped); ValueError if none."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ValueError(f"cannot read --platform-credentials {path}: {exc.strerror}") from None
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user.strip():
            raise ValueError(f"{path}:{n}: a line is USER:PASSWORD")
        out.append((user.strip(), password.strip()))
    if not out:
        raise ValueError(f"{path}: no USER:PASSWORD line")
    return out


def platform_code(i: int) -> str:
    """Platform ``i``'s unique code in the header's 17-byte ID field."""
    return f"LOADGENPLAT{i:06d}"


class _Run:
    """The connections of one run and how records reach them."""

    def __init__(self, plan: GatewayPlan, stats: NetStats) -> None:
        self.plan = plan
        self.stats = stats
        self.conns: dict[bytes, Conn] = {}  # device key (or platform index) -> connection
        self.platforms: list[Conn] = []
        self._slots = asyncio.Semaphore(CONNECTS_IN_FLIGHT)
        self._opened = 0
        self.tasks: set[asyncio.Task[None]] = set()

    def open(self, identity: str, edition: int) -> Conn:
        """A connection whose socket opens in the background; frames sent meanwhile wait."""
        conn = Conn(self.stats, identity, edition)
        i = self._opened
        self._opened += 1
        target = self.plan.targets[i % len(self.plan.targets)]
        sources = self.plan.sources
        source = sources[(i // len(self.plan.targets)) % len(sources)] if sources else None
        task = asyncio.get_running_loop().create_task(self._connect(conn, source, target))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return conn

    async def _connect(self, conn: Conn, source: str | None, target: tuple[str, int]) -> None:
        stats = self.stats
        async with self._slots:
            stats.connecting += 1
            try:
                sock = await open_socket(source, target)
                await asyncio.get_running_loop().create_connection(lambda: conn, sock=sock)
            except OSError as exc:
                conn.failed(type(exc).__name__)
            finally:
                stats.connecting -= 1

    def device_conn(self, msg: Message, now_ms: int) -> Conn | None:
        """The connection for ``msg``'s device, opened (with a login first) on its first."""
        if self.plan.platforms:
            h = zlib.crc32(msg.key)
            return self.platforms[h % len(self.platforms)]
        conn = self.conns.get(msg.key)
        if conn is None:
            edition = gbt_session.edition_of(msg.value)
            conn = self.conns[msg.key] = self.open(msg.key.decode("latin-1"), edition)
            if msg.kind != "login":
                conn.send(gbt_session.vehicle_login(conn.identity, edition, now_ms))
                self.stats.logins_made += 1
        return conn

    def heartbeats(self, *, every: bool = False) -> None:
        """A heartbeat on every connection silent for ``heartbeat_s`` (``every``: on all)."""
        due = math.inf if every else time.monotonic() - self.plan.heartbeat_s
        for conn in self.platforms or self.conns.values():
            if not conn.dead and conn.last_sent <= due:
                conn.send(gbt_session.heartbeat(conn.identity, conn.edition))

    def logouts(self, now_ms: int) -> None:
        """Vehicle logout on every device connection, or platform logout on every platform."""
        for conn in self.platforms or self.conns.values():
            if conn.dead:
                continue
            if self.plan.platforms:
                frame = gbt_session.platform_logout(
                    conn.identity, conn.edition, now_ms, conn.login_seq
                )
            else:
                frame = gbt_session.vehicle_logout(
                    conn.identity, conn.edition, now_ms, conn.login_seq
                )
            conn.send(frame)

    def close(self) -> None:
        for conn in self.platforms or self.conns.values():
            conn.close()


async def _answers(stats: NetStats, timeout_s: float, tick: Callable[[], None]) -> None:
    """Wait until every answer due came (or ``timeout_s``)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            while stats.awaiting:
                await stats.settled.wait()
                tick()


def _wanted(msg: Message, share: tuple[int, int]) -> bool:
    k, m = share
    return m == 1 or zlib.crc32(msg.key) % m == k


async def run_via_gateway(
    plan: GatewayPlan,
    messages: Iterable[Message],
    *,
    devices: int | None,
    rate: float,
    max_frames: int | None,
    max_seconds: float | None,
    progress: Progress,
    by_time: bool = False,
) -> tuple[LoadResult, NetStats]:
    """Send the vehicle records of ``messages`` through the gateways; returns what was sent
    and the connections' totals. ``devices`` (if known) sizes the descriptor limit. Paced at
    ``rate`` records/s, or with ``by_time`` each record when its frame time comes (a device
    sends when its report is due: the scale generator's round 0 - login and first report of
    every device - spans one interval)."""
    stats = NetStats()
    # A hash share is uneven by a few percent.
    conns_needed = plan.platforms or int((devices or 0) / plan.share[1] * 1.05) + 16
    nofile_for(conns_needed)
    run = _Run(plan, stats)
    result = LoadResult(topic="gateway")
    started = stats.started = time.monotonic()
    if plan.platforms:
        await _platform_logins(run)
    generated = 0
    first_t: int | None = None
    next_beat = started + plan.heartbeat_s
    try:
        for msg in messages:
            if max_frames is not None and result.frames >= max_frames:
                result.stopped_by = "max_frames"
                break
            now = time.monotonic()
            if max_seconds is not None and now - started >= max_seconds:
                result.stopped_by = "max_seconds"
                break
            generated += 1
            if by_time:
                first_t = msg.t_ms if first_t is None else first_t
                ahead = (msg.t_ms - first_t) / 1000 - (now - started)
            else:
                ahead = generated / rate - (now - started) if rate > 0 else 0.0
            if ahead > 0.005:
                await asyncio.sleep(ahead)
            if plan.heartbeat_s and now >= next_beat:
                run.heartbeats()
                next_beat = now + plan.heartbeat_s / 4
            if msg.topic != "vehicle" or not _wanted(msg, plan.share):
                continue
            conn = run.device_conn(msg, time.time_ns() // 1_000_000)
            if conn is None:
                continue
            if msg.kind == "login":
                conn.login_seq = gbt_session.login_seq_of(msg.value)
            conn.send(msg.value, data=msg.kind in ("realtime", "reissue"))
            await conn.drain()
            result.count(msg, "gateway")
            progress.update(result.frames, started, stats.line)
            if generated % 4096 == 0:
                await asyncio.sleep(0)  # let connects and answers run between bursts
        # Every connection's opening must be over before the logouts, or they are held.
        while run.tasks:
            await asyncio.gather(*list(run.tasks))
        # A heartbeat on every connection, answered, before the logouts: its answer says that
        # everything sent before it is on Kafka while the session is still logged in (after a
        # logout a gateway may close the connection before the logout's own answer).
        run.heartbeats(every=True)
        await _answers(stats, plan.answer_timeout_s, lambda: progress.update(
            result.frames, started, stats.line
        ))  # fmt: skip
        run.logouts(time.time_ns() // 1_000_000)
        await _answers(stats, plan.answer_timeout_s, lambda: None)
    finally:
        run.close()
        for task in list(run.tasks):
            task.cancel()
    result.seconds = time.monotonic() - started
    progress.update(result.frames, started, stats.line, force=True)
    return result, stats


async def _platform_logins(run: _Run) -> None:
    """Open every platform connection and log in; ValueError if the gateway refuses."""
    plan, stats = run.plan, run.stats
    now_ms = time.time_ns() // 1_000_000
    for i in range(plan.platforms):
        user, password = plan.credentials[i % len(plan.credentials)]
        conn = run.open(platform_code(i), plan.edition)
        conn.send(gbt_session.platform_login(conn.identity, plan.edition, now_ms, user, password))
        run.platforms.append(conn)
    try:
        async with asyncio.timeout(plan.answer_timeout_s):
            while stats.awaiting:
                await stats.settled.wait()
    except TimeoutError:
        pass
    if stats.login_refused or stats.logins < plan.platforms:
        reasons = ", ".join(f"{k} {n}" for k, n in stats.bad_answers.items()) or "no answer"
        run.close()
        raise ValueError(
            f"{plan.platforms - stats.logins} of {plan.platforms} platform logins failed "
            f"({reasons}); check the account against the gateway's accounts file"
        )


def unsupported_roles(names: Sequence[str]) -> list[str]:
    """The record roles a gateway run cannot send (the TCP gateway takes vehicle frames)."""
    return [r for r in names if r != "vehicle"]


def result_dict(result: LoadResult, stats: NetStats, plan: GatewayPlan) -> dict[str, Any]:
    """The run's JSON line: the records and the connections."""
    out = result.as_dict()
    out["via_gateway"] = [f"{h}:{p}" for h, p in plan.targets]
    out["platforms"] = plan.platforms
    out.update(stats.as_dict())
    out["bad_frames_sent"] = sum(n for k, n in result.by_kind.items() if k not in GOOD_KINDS)
    return out
