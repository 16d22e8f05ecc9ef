"""The GB/T 32960 gateway, measured: a real ``nev-ingest gateway`` process on loopback in front
of the dev stack's Kafka.

    .venv/bin/python -m loadtest.bench_gateway [--connections N] [--frames N] [--platforms P]
        [--phases idle,throughput,ceiling,latency] [--profile FILE]

(a) idle connections held after login by one gateway process (goal 100,000) and its RSS per
    connection (goal <= 10 KB): RSS before and after N vehicle connections logged in;
(b) frames/s from TCP to Kafka acknowledgement (goal 50,000): P enterprise-platform
    connections forward pre-built real-time frames as fast as the gateway reads them; done
    when the topic's end offsets hold them all; beside it, the raw aiokafka produce ceiling of
    the same frames (acks=all) in the same run;
(c) frame-in -> Kafka-ack latency: a second gateway with ``gateway.answer_realtime`` answers
    every real-time frame once Kafka acknowledged it; frames paced at ``--latency-rate``,
    each answer timed against its frame's write; plus the gateway's own histogram.

(b) and (c) also report the gateway's RSS at the end and its peak (``gateway_rss_mb``,
``gateway_peak_rss_mb``): (c)'s steady pace is where memory kept per acknowledged frame
shows (the flood of (b) pauses on the in-flight budget, which bounds it differently).

Stops by itself; the last line is one JSON object. A process's descriptors are capped by the
hard ``ulimit -n``: if N does not fit, it measures what fits and says why.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Final

from aiokafka import AIOKafkaProducer

from devtools.loadgen_net import Conn, NetStats
from devtools.sim import gbt_session, identities
from devtools.sim.bench_frames import realtime_frames
from devtools.sim.promtext import histogram_quantile, parse_histogram
from loadtest.bench_support import BenchEnv, print_result
from loadtest.clients import bench_producer
from loadtest.gateway_support import (
    GATEWAY_SPARE_FDS,
    GatewayProc,
    connect_all,
    platform_connections,
    settled,
    topic_total,
)

__all__ = ["main"]

LATENCY: Final = "nev_gateway_produce_latency_seconds"


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
        await connect_all(conns, gw.address, sources)
        await settled(stats, 120)
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
    env: BenchEnv, topic: str, frames: list[bytes], platforms: int, profile: Path | None = None
) -> dict[str, Any]:
    """(b): frames/s from TCP to Kafka ack through one gateway process (under cProfile, written
    to ``profile``, when given)."""
    gw = GatewayProc(env.kafka, topic, profile=profile)
    try:
        await gw.ready()
        stats = NetStats()
        conns = await platform_connections(gw, platforms, stats)
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
        memory = gw.memory()
        for conn in conns:
            conn.close()
    finally:
        gw.stop()
    return {
        **memory,
        "frames": len(frames),
        "platform_connections": platforms,
        "written_in_s": round(sent_at, 2),
        "seconds": round(took, 2),
        "frames_per_s": round(len(frames) / took),
        "gateway_cpu_s": round(cpu, 1),
        "frames_per_cpu_s": round(len(frames) / cpu) if cpu else None,
        # The figure that carries over to another machine: the gateway's CPU per frame.
        "gateway_cpu_us_per_frame": round(cpu * 1e6 / len(frames), 1),
        "gateway_produce_latency_p50_s": histogram_quantile(hist, 0.5),
        "gateway_produce_latency_p99_s": histogram_quantile(hist, 0.99),
        "data_refused": dict(stats.data_refused),
    }


async def produce_ceiling(
    env: BenchEnv, topic: str, frames: list[bytes], *, like_gateway: bool
) -> float:
    """The same frames straight to Kafka with aiokafka (acks=all): frames/s; with the
    gateway's producer options (idempotent, linger 5 ms, aiokafka's default 16 KB batches), or
    the benchmarks' (1 MB batches, linger 20 ms)."""
    if like_gateway:
        producer = AIOKafkaProducer(
            bootstrap_servers=env.kafka, acks="all", enable_idempotence=True, linger_ms=5
        )
    else:
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
        conns = await platform_connections(gw, platforms, stats)
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
            all_answered.clear()  # it may have been set while the answers kept up
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(60):
                    await all_answered.wait()
        hist = parse_histogram(await asyncio.to_thread(gw.scrape), LATENCY)
        memory = gw.memory()
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
        **memory,
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
    try:
        return await _measure(env, args)
    finally:
        await env.close()  # the run's topics and databases, after a failure too


async def _measure(env: BenchEnv, args: argparse.Namespace) -> dict[str, Any]:
    # Random, as the other benchmarks' names: by the second, two runs started within one shared
    # their topics, and the first to close deleted the other's.
    run = uuid.uuid4().hex[:8]
    topics = {k: f"bench.gateway.{k}.{run}" for k in ("idle", "tput", "ceiling", "latency")}
    await env.make_topics({t: 12 for t in topics.values()})
    from devtools.loadgen_net import parse_source_addrs

    sources = parse_source_addrs(args.source_addrs)
    out: dict[str, Any] = {"machine": f"{os.cpu_count()} cores, loopback, dev-stack Kafka"}
    phases = set(args.phases.split(","))
    if "idle" in phases and args.connections:
        out["idle"] = await idle_connections(env, topics["idle"], args.connections, sources)
        print(f"bench: idle {out['idle']}", file=sys.stderr, flush=True)
    start_ms = time.time_ns() // 1_000_000 - 3_600_000
    per_vehicle = max(1, args.frames // args.vehicles)
    frames = [f for _, f in realtime_frames(args.vehicles, per_vehicle, start_ms=start_ms)]
    if "throughput" in phases:
        out["throughput"] = await throughput(
            env, topics["tput"], frames, args.platforms, args.profile
        )
        print(f"bench: throughput {out['throughput']}", file=sys.stderr, flush=True)
    if "ceiling" in phases:
        out["produce_ceiling_frames_per_s"] = {
            "gateway_options": round(
                await produce_ceiling(env, topics["ceiling"], frames, like_gateway=True)
            ),
            "large_batches": round(
                await produce_ceiling(env, topics["ceiling"], frames, like_gateway=False)
            ),
        }
    n = int(args.latency_rate * args.latency_seconds)
    if "latency" in phases:
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
    p.add_argument(
        "--phases",
        default="idle,throughput,ceiling,latency",
        help="which measurements, comma-separated",
    )
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="run the throughput phase's gateway under cProfile, stats written here",
    )
    p.add_argument("--latency-rate", type=float, default=5_000.0)
    p.add_argument("--latency-seconds", type=float, default=10.0)
    return print_result(_bench(p.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
