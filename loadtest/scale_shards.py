"""Scale run: the whole service (decode + write + rules + commit) over 1 and 2 storage shards.

    python -m loadtest.scale_shards [--shards 1,2] [--workers 1] [--frames 300000]
                                    [--devices 10000] [--partitions 12]

Needs the dev stack with shards (``nev-ingest devstack up --shards 2``: PostgreSQL clusters
``postgres`` and ``postgres-1``). For each shard count N in ``--shards`` and each worker count:
a fresh migrated database on each of the first N clusters, ``nev-ingest run --workers W`` with
``NEV_STORAGE_SHARDS`` listing them (partition p -> shard p % N), over the same preloaded
vehicle topic (``bench_pipeline``'s frames). Rate: from the first commit until the shards
together hold the topic's end offsets; then rows are counted on each shard (every frame once,
and the split between shards). RSS and CPU per worker as in ``bench_pipeline``.

Every cluster shares this machine's cores: the runs show the shard routing and what a second
cluster costs or gains on the same CPUs, not what a second host would add.

Prints a progress line while it runs and, last, one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from typing import Any

import asyncpg

from loadtest.bench_pipeline import _machine
from loadtest.bench_support import (
    SCHEMA,
    BenchEnv,
    _children,
    _cpu_s,
    _end_total,
    _rss_mb,
    _Service,
    _stored,
    kind_topics,
    preload_kind,
    print_result,
    progress,
    service_topics,
)

__all__ = ["main"]


async def _shard_envs(env: BenchEnv, count: int) -> list[BenchEnv]:
    """A BenchEnv per shard cluster of the dev stack (shard 0 is ``env`` itself)."""
    from devtools.devstack import Paths, StackState
    from devtools.devstack.stack import shard_services
    from devtools.settings import load_dev_settings

    state = StackState.load(Paths.from_settings(load_dev_settings()).state_dir)
    names = shard_services(state)
    if len(names) < count:
        raise SystemExit(
            f"scale_shards: the dev stack has {len(names)} shard(s); "
            f"start it with: nev-ingest devstack up --shards {count}"
        )
    out = [env]
    for name in names[1:count]:
        dsn = state.services[name].url
        out.append(BenchEnv(env.settings, env.kafka, dsn.rsplit("/", 1)[0] + "/postgres", []))
    return out


async def _rows_per_shard(dsns: list[str]) -> list[int]:
    counts = []
    for dsn in dsns:
        conn = await asyncpg.connect(dsn)
        try:
            counts.append(
                int(await conn.fetchval(f"SELECT count(*) FROM {SCHEMA}.vehicle_telemetry"))
            )
        finally:
            await conn.close()
    return counts


async def _run(
    envs: list[BenchEnv], topics: dict[str, str], workers: int, tag: str
) -> dict[str, Any]:
    dsns = [await e.fresh_database(f"{tag}_s{i}") for i, e in enumerate(envs)]
    group = f"scale-{tag}"
    names = list(topics.values())
    end = await _end_total(envs[0].kafka, names)
    # _Service copies os.environ: the shard list reaches the service as a setting would.
    os.environ["NEV_STORAGE_SHARDS"] = ",".join(dsns) if len(dsns) > 1 else ""
    try:
        svc = _Service(envs[0], await service_topics(envs[0], topics), dsns[0], group, workers)
    finally:
        del os.environ["NEV_STORAGE_SHARDS"]
    rss: dict[int, float] = {}
    cpu_first: dict[int, float] = {}
    cpu_last: dict[int, float] = {}
    first_at, first_n, last_print = 0.0, 0, 0.0
    try:
        while True:
            n = sum([await _stored(dsn, group, names) for dsn in dsns])
            now = time.monotonic()
            for pid in _children(svc.proc.pid):
                rss[pid] = max(rss.get(pid, 0.0), _rss_mb(pid))
                cpu_last[pid] = _cpu_s(pid)
            if n and not first_at:
                first_at, first_n, cpu_first = now, n, dict(cpu_last)
            if first_at and now - last_print >= 5:
                progress(f"{len(dsns)} shard(s) {workers}w", n, end, first_at)
                last_print = now
            if n >= end:
                break
            if svc.proc.poll() is not None:
                raise SystemExit(f"scale_shards: the service exited ({svc.proc.returncode})")
            await asyncio.sleep(0.2)
        took = time.monotonic() - first_at
        rows = await _rows_per_shard(dsns)
    finally:
        svc.stop()
        for e, dsn in zip(envs, dsns, strict=True):
            await e.drop(dsn)
    cpu = sum(cpu_last[pid] - cpu_first.get(pid, 0.0) for pid in cpu_last)
    return {
        "frames_per_s": round((end - first_n) / took),
        "seconds": round(took, 2),
        "vehicle_rows_per_shard": rows,
        "every_frame_once": sum(rows) == end,
        "rss_mb_per_worker": sorted(round(v, 1) for v in rss.values()),
        "cpu_us_per_frame": round(cpu / (end - first_n) * 1e6, 1),
        "cpu_busy": round(cpu / (took * workers), 2),
    }


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    env = await BenchEnv.create(partitions=args.partitions)
    envs = await _shard_envs(env, max(args.shards))
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
    for shards in args.shards:
        for workers in args.workers:
            res = await _run(envs[:shards], topics, workers, f"{run_id}_{shards}s{workers}w")
            res["loadavg_1m_after"] = os.getloadavg()[0]
            out[f"{shards}shard_{workers}w"] = res
    out["command"] = " ".join(["python -m loadtest.scale_shards", *sys.argv[1:]])
    return out


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scale_shards", description=__doc__.split("\n\n")[0])
    p.add_argument("--shards", type=_ints, default=[1, 2], help="shard counts to run (1,2)")
    p.add_argument("--workers", type=_ints, default=[1], help="worker counts to run (1)")
    p.add_argument("--frames", type=int, default=300_000)
    p.add_argument("--devices", type=int, default=10_000, help="vehicles")
    p.add_argument("--partitions", type=int, default=12)
    args = p.parse_args(argv)
    return print_result(_bench(args))


if __name__ == "__main__":
    sys.exit(main())
