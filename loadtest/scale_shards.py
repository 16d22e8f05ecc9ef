"""Scale run: the whole service (decode + write + rules + commit) over 1 and 2 storage shards,
with 1 and 2 workers: the highest rate, and latency, lag and RSS at a steady rate.

    python -m loadtest.scale_shards [--shards 1,2] [--workers 1,2] [--frames 300000]
                                    [--devices 10000] [--partitions 12]
                                    [--steady-s 60] [--steady-rate 0]

Needs the dev stack with shards (``nev-ingest devstack up --shards 2``: PostgreSQL clusters
``postgres`` and ``postgres-1``). For each shard count N in ``--shards`` and each worker count W:

1. drain: a fresh migrated database on each of the first N clusters, ``nev-ingest run
   --workers W`` with ``NEV_STORAGE_SHARDS`` listing them (partition p -> shard p % N), over the
   same preloaded vehicle topic (``bench_frames``). Rate from the first commit until the shards
   together hold the topic's end offsets; then rows are counted on each shard (every frame
   once, and the split between shards). RSS and CPU per worker.
2. steady: fresh databases and topics, the service fed at ``--steady-rate`` frames/s (default:
   half of the first configuration's drain rate, the same for every configuration) for
   ``--steady-s`` seconds, ``received_at`` = send time and frame times keeping pace with the
   clock; p50/p99 of received_at -> committed (the service's histogram), lag (end offsets minus
   stored offsets, sampled every second: median and max, in frames and in seconds at the rate),
   RSS per worker.

Every cluster shares this machine's cores: the runs show the shard routing and what a second
cluster or worker costs or gains on the same CPUs, not what a second host would add.

Prints a progress line while it runs and, last, one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from typing import Any

from devtools.sim.bench_frames import frames_of_kind
from devtools.sim.fleet import Message
from devtools.sim.promtext import parse_samples, total
from loadtest.bench_pipeline import _machine
from loadtest.bench_support import BenchEnv, kind_topics, preload_kind, print_result
from loadtest.scale_support import (
    Offsets,
    ShardedService,
    Watch,
    latency,
    paced,
    shard_envs,
    sharded_service,
)

__all__ = ["main", "steady_frames", "until_assigned"]


async def until_assigned(run: ShardedService, partitions: int, timeout_s: float = 120) -> None:
    """Until the workers together own every partition of the raw topics (the group settled)."""
    deadline = time.monotonic() + timeout_s
    while total(parse_samples(run.scrape()), "nev_ingest_assigned_partitions") < partitions:
        if time.monotonic() > deadline:
            raise SystemExit(f"scale: the service did not take its partitions in {timeout_s}s")
        await asyncio.sleep(0.2)


def steady_frames(devices: int, rate: float, seconds: float, start_ms: int) -> Any:
    """Vehicle messages for ``rate`` x ``seconds`` frames from ``devices`` vehicles, each
    reporting every devices / rate seconds, frame times starting at ``start_ms``."""
    per_device = int(rate * seconds) // devices + 1
    interval_ms = max(1, round(devices / rate * 1000))
    pairs = frames_of_kind(
        "vehicle", devices, per_device, start_ms=start_ms, interval_ms=interval_ms
    )
    return (Message(0, key, value, "realtime", "vehicle") for key, value in pairs)


async def _rows_per_shard(run: ShardedService) -> list[int]:
    return await run.count("SELECT count(*) FROM {s}.vehicle_telemetry")


async def _drain(
    envs: list[BenchEnv], topics: dict[str, str], workers: int, tag: str
) -> dict[str, Any]:
    async with sharded_service(envs, topics, workers, tag) as run:
        offsets = Offsets(envs[0].kafka, run.topics.values())
        await offsets.start()
        try:
            end = await offsets.end()
        finally:
            await offsets.stop()
        watch = Watch(run, f"drain {len(envs)} shard(s) {workers}w")
        took = await watch.until(end)
        out = watch.figures(end - watch.first_n, took)
        rows = await _rows_per_shard(run)
    out["vehicle_rows_per_shard"] = rows
    out["every_frame_once"] = sum(rows) == end
    return out


async def _steady(
    envs: list[BenchEnv], workers: int, tag: str, *, rate: float, seconds: float, devices: int
) -> dict[str, Any]:
    topics = kind_topics(f"scale.steady.{tag}")
    await envs[0].make_topics({t: 12 for t in topics.values()})  # envs[0]: the closed one
    async with sharded_service(envs, topics, workers, f"{tag}_steady") as run:
        await until_assigned(run, 12 * len(topics))
        offsets = Offsets(envs[0].kafka, run.topics.values())
        await offsets.start()
        try:
            watch = Watch(run, f"steady {len(envs)} shard(s) {workers}w")
            fed: dict[str, Any] = {}
            messages = steady_frames(devices, rate, seconds, time.time_ns() // 1_000_000)
            sent = await paced(
                envs[0],
                topics,
                messages,
                rate=rate,
                max_frames=int(rate * seconds),
                watch=watch,
                offsets=offsets,
                figures=fed,
            )
            while_sending = len(watch.lags)
            await watch.until(await offsets.end(), timeout_s=600)
        finally:
            await offsets.stop()
        await asyncio.sleep(1.5)  # the lag/metrics tick publishes the last observations
        lat = latency(run.scrape())
    # while sending, past the first tenth (warm-up); the tail after the last send is the drain
    lags = watch.lags[while_sending // 10 : while_sending] or [0]
    return {
        "rate_frames_per_s": round(rate),
        "sent": sent,
        **lat,
        "lag_frames_p50": round(statistics.median(lags)),
        "lag_frames_max": max(lags),
        "lag_s_p50": round(statistics.median(lags) / rate, 3),
        "lag_s_max": round(max(lags) / rate, 3),
        "rss_mb_per_worker": sorted(round(v, 1) for v in watch.rss.values()),
        **fed,
    }


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    env = await BenchEnv.create(partitions=args.partitions)
    try:
        return await _measure(env, args)
    finally:
        await env.close()  # the run's topics and databases, after a failure too


async def _measure(env: BenchEnv, args: argparse.Namespace) -> dict[str, Any]:
    envs = await shard_envs(env, max(args.shards))
    run_id = uuid.uuid4().hex[:8]
    topics = kind_topics(f"scale.shards.{run_id}")
    per_device = -(-args.frames // args.devices)
    out: dict[str, Any] = {
        "benchmark": "scale_shards",
        "frames": per_device * args.devices,
        "devices": args.devices,
        "partitions": args.partitions,
        "machine": _machine(),
        "loadavg_start": os.getloadavg()[0],
    }
    produced = await preload_kind(env, topics, "vehicle", args.devices, per_device)
    out["preload_frames_per_s"] = round(produced)
    rate = args.steady_rate
    for shards in args.shards:
        for workers in args.workers:
            tag = f"{run_id}_{shards}s{workers}w"
            res: dict[str, Any] = {"loadavg_1m_before": os.getloadavg()[0]}
            res["drain"] = await _drain(envs[:shards], topics, workers, tag)
            if args.steady_s > 0:
                rate = rate or res["drain"]["frames_per_s"] * 0.5
                res["steady"] = await _steady(
                    envs[:shards],
                    workers,
                    tag,
                    rate=rate,
                    seconds=args.steady_s,
                    devices=args.devices,
                )
            res["loadavg_1m_after"] = os.getloadavg()[0]
            out[f"{shards}shard_{workers}w"] = res
    out["command"] = " ".join(["python -m loadtest.scale_shards", *sys.argv[1:]])
    return out


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scale_shards", description=__doc__.split("\n\n")[0])
    p.add_argument("--shards", type=_ints, default=[1, 2], help="shard counts to run (1,2)")
    p.add_argument("--workers", type=_ints, default=[1, 2], help="worker counts to run (1,2)")
    p.add_argument("--frames", type=int, default=300_000)
    p.add_argument("--devices", type=int, default=10_000, help="vehicles")
    p.add_argument("--partitions", type=int, default=12)
    p.add_argument("--steady-s", type=float, default=60.0, help="steady phase; 0 skips it")
    p.add_argument(
        "--steady-rate",
        type=float,
        default=0.0,
        help="frames/s of the steady phase (0: half the first drain rate)",
    )
    args = p.parse_args(argv)
    return print_result(_bench(args))


if __name__ == "__main__":
    sys.exit(main())
