"""The GB/T 32960 gateway, measured: a real ``nev-ingest gateway`` process on loopback in front
of the dev stack's Kafka.

    .venv/bin/python -m loadtest.bench_gateway [--connections N] [--frames N] [--platforms P]

(a) idle connections held after login by one gateway process (goal 100,000) and its RSS per
    connection (goal <= 10 KB): RSS before and after N vehicle connections logged in;
(b) frames/s from TCP to Kafka acknowledgement (goal 50,000): P enterprise-platform
    connections forward pre-built real-time frames as fast as the gateway reads them; done
    when the topic's end offsets hold them all; beside it, the raw aiokafka produce ceiling of
    the same frames (acks=all) in the same run;
(c) frame-in -> Kafka-ack latency: a second gateway with ``gateway.answer_realtime`` answers
    every real-time frame once Kafka acknowledged it; frames paced at ``--latency-rate``,
    each answer timed against its frame's write; plus the gateway's own histogram.

Stops by itself; the last line is one JSON object. A process's descriptors are capped by the
hard ``ulimit -n``: if N does not fit, it measures what fits and says why.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition

from devtools.devstack.kafka import ensure_topics
from devtools.devstack.process import free_port
from devtools.loadgen_net import Conn, NetStats, open_socket
from devtools.sim import gbt_session, identities
from devtools.sim.bench_frames import realtime_frames
from devtools.sim.promtext import fetch, histogram_quantile, parse_histogram
from loadtest.bench_support import BenchEnv, print_result
from loadtest.clients import bench_producer

__all__ = ["GatewayProc", "main", "topic_total"]

USER: Final = "bench"
PASSWORD: Final = secrets.token_urlsafe(12)  # per run; the accounts file is temporary
# Descriptors the gateway keeps for itself (listeners, Kafka, metrics, logs).
GATEWAY_SPARE_FDS: Final = 200
LATENCY: Final = "nev_gateway_produce_latency_seconds"


class GatewayProc:
    """A ``nev-ingest gateway`` subprocess producing to ``topic``."""

    def __init__(self, kafka: str, topic: str, **settings: str) -> None:
        self.port, self.metrics_port = free_port(), free_port()
        self.dir = tempfile.TemporaryDirectory(prefix="bench-gw-")
        accounts = Path(self.dir.name) / "accounts.toml"
        subprocess.run(
            [sys.executable, "-m", "ingest", "gateway", "passwd", USER, "--accounts", accounts],
            input=PASSWORD + "\n",
            text=True,
            check=True,
            capture_output=True,
        )
        env = dict(os.environ)
        env.update(
            NEV_KAFKA_BOOTSTRAP_SERVERS=kafka,
            NEV_KAFKA_TOPIC_VEHICLE=topic,
            NEV_LOG_LEVEL="WARNING",
            # Loopback load from few sources: per-connection throttles off, the budget on.
            NEV_GATEWAY_MAX_FRAMES_PER_S="1000000",
            NEV_GATEWAY_PLATFORM_FRAMES_PER_S="10000000",
            NEV_GATEWAY_PLATFORM_BYTES_PER_S=str(2**34),
        )
        env.update({f"NEV_GATEWAY_{k.upper()}": v for k, v in settings.items()})
        self.log = Path(self.dir.name) / "gateway.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "ingest", "gateway", "run"),
                    *("--listen", f"127.0.0.1:{self.port}"),
                    *("--metrics-port", str(self.metrics_port), "--accounts", str(accounts)),
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    async def ready(self, timeout_s: float = 60.0) -> None:
        """Wait for /readyz (producer connected) and the listener, or exit with its log."""
        deadline = time.monotonic() + timeout_s
        delay = 0.05
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"bench: the gateway exited: {self.log.read_text()[-2000:]}")
            if await asyncio.to_thread(self._ready):
                return
            await asyncio.sleep(delay)  # polling a starting process, backing off
            delay = min(delay * 2, 1.0)
        raise SystemExit(f"bench: the gateway was not ready in {timeout_s:.0f} s")

    def _ready(self) -> bool:
        url = f"http://127.0.0.1:{self.metrics_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def scrape(self) -> str:
        return fetch(self.metrics_port)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.dir.cleanup()


async def topic_total(kafka: str, topic: str) -> int:
    """The sum of ``topic``'s end offsets."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic) or set()
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        return sum(ends.values())
    finally:
        await consumer.stop()


async def _connect_all(conns: list[Conn], target: tuple[str, int], sources: list[str]) -> None:
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(256)

    async def one(i: int, conn: Conn) -> None:
        async with slots:
            try:
                sock = await open_socket(sources[i % len(sources)] if sources else None, target)
                await loop.create_connection(lambda: conn, sock=sock)
            except OSError as exc:
                conn.failed(type(exc).__name__)

    async with asyncio.TaskGroup() as tg:
        for i, conn in enumerate(conns):
            tg.create_task(one(i, conn))


async def _settled(stats: NetStats, timeout_s: float) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while stats.awaiting:
                await stats.settled.wait()
    except TimeoutError:
        pass


async def idle_connections(
    env: BenchEnv, topic: str, wanted: int, sources: list[str]
) -> dict[str, Any]:
    """(a): N vehicle connections logged in and left idle; the gateway's RSS per connection."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    fits = min(wanted, hard - GATEWAY_SPARE_FDS)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    gw = GatewayProc(env.kafka, topic, max_connections=str(wanted + 10))
    try:
        await gw.ready()
        rss_before = gw.rss_kb()
        stats = NetStats()
        now_ms = time.time_ns() // 1_000_000
        conns = []
        for i in range(fits):
            vin = identities.vin(7, i)
            conn = Conn(stats, vin, 2016)
            conn.send(gbt_session.vehicle_login(vin, 2016, now_ms))
            conns.append(conn)
        started = time.monotonic()
        await _connect_all(conns, gw.address, sources)
        await _settled(stats, 120)
        took = time.monotonic() - started
        samples = await asyncio.to_thread(gw.scrape)
        rss_after = gw.rss_kb()
        held = stats.open
        for conn in conns:
            conn.close()
    finally:
        gw.stop()
    per_conn = (rss_after - rss_before) * 1024 / held if held else None
    return {
        "connections_wanted": wanted,
        "connections_held": held,
        "logins": stats.logins,
        "connect_failed": stats.connect_failed,
        "login_seconds": round(took, 1),
        "why_not_more": None
        if fits >= wanted
        else f"hard RLIMIT_NOFILE {hard:,} per process (ulimit -Hn; not raisable here)",
        "gateway_rss_mb_before": round(rss_before / 1024, 1),
        "gateway_rss_mb_after": round(rss_after / 1024, 1),
        "rss_bytes_per_connection": round(per_conn) if per_conn else None,
        "gateway_connections_gauge": _sample(samples, "nev_gateway_connections"),
    }


def _sample(text: str, name: str) -> float | None:
    total = None
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total = (total or 0.0) + float(line.rsplit(" ", 1)[1])
    return total


async def _platforms(gw: GatewayProc, n: int, stats: NetStats) -> list[Conn]:
    now_ms = time.time_ns() // 1_000_000
    conns = []
    for i in range(n):
        code = f"BENCHPLATFORM{i:04d}"
        conn = Conn(stats, code, 2016)
        conn.send(gbt_session.platform_login(code, 2016, now_ms, USER, PASSWORD))
        conns.append(conn)
    await _connect_all(conns, gw.address, [])
    await _settled(stats, 60)
    if stats.logins < n:
        raise SystemExit(f"bench: {n - stats.logins} platform logins failed: {stats.bad_answers}")
    return conns


def _chunks(frames: list[bytes], size: int = 64 * 1024) -> list[bytes]:
    out, buf, n = [], [], 0
    for f in frames:
        buf.append(f)
        n += len(f)
        if n >= size:
            out.append(b"".join(buf))
            buf, n = [], 0
    if buf:
        out.append(b"".join(buf))
    return out


async def throughput(
    env: BenchEnv, topic: str, frames: list[bytes], platforms: int
) -> dict[str, Any]:
    """(b): frames/s from TCP to Kafka ack through one gateway process."""
    gw = GatewayProc(env.kafka, topic)
    try:
        await gw.ready()
        stats = NetStats()
        conns = await _platforms(gw, platforms, stats)
        base = await topic_total(env.kafka, topic)
        per_conn = [_chunks(frames[i::platforms]) for i in range(platforms)]
        cpu0 = gw.cpu_s()
        started = time.monotonic()

        async def blast(conn: Conn, chunks: list[bytes]) -> None:
            assert conn.transport is not None
            for chunk in chunks:
                conn.transport.write(chunk)
                await conn.drain()

        async with asyncio.TaskGroup() as tg:
            for conn, chunks in zip(conns, per_conn, strict=True):
                tg.create_task(blast(conn, chunks))
        sent_at = time.monotonic() - started
        while (done := await topic_total(env.kafka, topic) - base) < len(frames):
            if time.monotonic() - started > 600:
                raise SystemExit(f"bench: only {done} of {len(frames)} frames reached Kafka")
            await asyncio.sleep(0.1)  # polling the broker's end offsets
        took = time.monotonic() - started
        cpu = gw.cpu_s() - cpu0
        hist = parse_histogram(await asyncio.to_thread(gw.scrape), LATENCY)
        for conn in conns:
            conn.close()
    finally:
        gw.stop()
    return {
        "frames": len(frames),
        "platform_connections": platforms,
        "written_in_s": round(sent_at, 2),
        "seconds": round(took, 2),
        "frames_per_s": round(len(frames) / took),
        "gateway_cpu_s": round(cpu, 1),
        "frames_per_cpu_s": round(len(frames) / cpu) if cpu else None,
        "gateway_produce_latency_p50_s": histogram_quantile(hist, 0.5),
        "gateway_produce_latency_p99_s": histogram_quantile(hist, 0.99),
        "data_refused": dict(stats.data_refused),
    }


async def produce_ceiling(env: BenchEnv, topic: str, frames: list[bytes]) -> float:
    """The same frames straight to Kafka with aiokafka (acks=all): frames/s."""
    producer = bench_producer(env.kafka)
    await producer.start()
    try:
        started = time.monotonic()
        pending = []
        for f in frames:
            pending.append(await producer.send(topic, f, key=f[4:21]))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        return len(frames) / (time.monotonic() - started)
    finally:
        await producer.stop()


async def latency(
    env: BenchEnv, topic: str, frames: list[bytes], platforms: int, rate: float
) -> dict[str, Any]:
    """(c): frame written -> its answer (sent by the gateway after Kafka's ack), paced."""
    gw = GatewayProc(env.kafka, topic, answer_realtime="true")
    samples: list[float] = []
    try:
        await gw.ready()
        stats = NetStats()
        conns = await _platforms(gw, platforms, stats)
        written: dict[bytes, float] = {}
        all_answered = asyncio.Event()

        def answered(raw: bytes) -> None:
            t = written.pop(raw[4:21] + raw[24:30], None)
            if t is not None:
                samples.append(time.monotonic() - t)
            if not written:
                all_answered.set()

        for conn in conns:
            conn.on_data = answered
        started = time.monotonic()
        for i, f in enumerate(frames):
            ahead = i / rate - (time.monotonic() - started)
            if ahead > 0.002:
                await asyncio.sleep(ahead)
            conn = conns[i % platforms]
            assert conn.transport is not None
            written[f[4:21] + f[24:30]] = time.monotonic()
            conn.transport.write(f)
        if written:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(60):
                    await all_answered.wait()
        hist = parse_histogram(await asyncio.to_thread(gw.scrape), LATENCY)
        for conn in conns:
            conn.close()
    finally:
        gw.stop()
    samples.sort()

    def q(p: float) -> float | None:
        return (
            round(samples[min(len(samples) - 1, int(p * len(samples)))] * 1000, 2)
            if samples
            else None
        )

    return {
        "rate": rate,
        "frames": len(frames),
        "answered": len(samples),
        "p50_ms": q(0.5),
        "p99_ms": q(0.99),
        "max_ms": round(samples[-1] * 1000, 2) if samples else None,
        "gateway_histogram_p99_s": histogram_quantile(hist, 0.99),
    }


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    env = await BenchEnv.create(partitions=12)
    run = f"{int(time.time())}"
    topics = {k: f"bench.gateway.{k}.{run}" for k in ("idle", "tput", "ceiling", "latency")}
    await ensure_topics(env.kafka, {t: 12 for t in topics.values()}, replication_factor=1)
    from devtools.loadgen_net import parse_source_addrs

    sources = parse_source_addrs(args.source_addrs)
    out: dict[str, Any] = {"machine": f"{os.cpu_count()} cores, loopback, dev-stack Kafka"}
    if args.connections:
        out["idle"] = await idle_connections(env, topics["idle"], args.connections, sources)
        print(f"bench: idle {out['idle']}", file=sys.stderr, flush=True)
    start_ms = time.time_ns() // 1_000_000 - 3_600_000
    per_vehicle = max(1, args.frames // args.vehicles)
    frames = [f for _, f in realtime_frames(args.vehicles, per_vehicle, start_ms=start_ms)]
    out["throughput"] = await throughput(env, topics["tput"], frames, args.platforms)
    print(f"bench: throughput {out['throughput']}", file=sys.stderr, flush=True)
    out["produce_ceiling_frames_per_s"] = round(
        await produce_ceiling(env, topics["ceiling"], frames)
    )
    n = int(args.latency_rate * args.latency_seconds)
    out["latency"] = await latency(
        env, topics["latency"], frames[:n], args.platforms, args.latency_rate
    )
    out["frame_bytes"] = round(sum(map(len, frames)) / len(frames))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument(
        "--connections", type=int, default=100_000, help="idle connections wanted (0: skip)"
    )
    p.add_argument("--source-addrs", default="127.0.0.2-127.0.0.9")
    p.add_argument("--frames", type=int, default=300_000)
    p.add_argument("--vehicles", type=int, default=10_000)
    p.add_argument("--platforms", type=int, default=4)
    p.add_argument("--latency-rate", type=float, default=5_000.0)
    p.add_argument("--latency-seconds", type=float, default=10.0)
    return print_result(_bench(p.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
