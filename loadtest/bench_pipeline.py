"""Pipeline benchmark: frames/s end to end, against two ceilings measured in the same run.

    python -m loadtest.bench_pipeline [--kind vehicle|charger|battery|mixed] [--frames 1000000]
                                      [--devices 10000] [--workers 1,2] [--steady-s 60]

Needs the dev stack (``nev-ingest devstack up``; addresses from state.json or ``NEV_*``).

1. preload fresh 12-partition topics with ``--frames`` real-time frames of ``--kind``
   (``bench_frames``: vehicles, charging piles, standalone packs; ``mixed``: a third of the
   devices of each kind, each kind on its own topic as in production);
2. ceiling "consume": raw aiokafka consumption of the whole topic(s) in a fresh group
   (getmany, nothing else);
3. ceiling "copy" (vehicles): raw binary COPY of the same rows (decoded beforehand, not
   timed) into the same tables of a fresh database, 5,000-frame transactions, one connection;
   for the other kinds it is left out (``null``): the COPY of their rows is the storage
   writer's, measured by its own benchmark;
4. ``nev-ingest run --workers N`` for each N, each on a fresh database and consumer group:
   frames/s from its first commit until the database holds the topic's end offsets; RSS of
   each worker (max over the run);
5. steady state: one worker, a new topic fed at 50 % of the one-worker rate for
   ``--steady-s`` seconds with ``received_at`` = now; p50/p99 of received_at -> committed from
   the service's histogram.

The service's settings come from the environment as usual: ``NEV_STORAGE_LATEST_INTERVAL_MS=0``
measures latest_state merged with every batch (default 5000: once per 5 s per partition; the
rates count until the rows and offsets are committed, the last merge happens at the stop).

Prints a progress line while it runs and, last, one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import uuid
from typing import Any

from devtools.sim.promtext import histogram_quantile
from loadtest.bench_support import (
    CPU_US,
    BenchEnv,
    consume_ceiling,
    copy_ceiling,
    kind_topics,
    preload_kind,
    preload_kinds,
    print_result,
    run_pipeline,
    steady_state,
)

__all__ = ["main"]


def _machine() -> dict[str, Any]:
    mem = 0
    try:
        for line in open("/proc/meminfo").read().splitlines():  # noqa: SIM115 - tiny file
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // 1024
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "memory_mb": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    env = await BenchEnv.create(partitions=args.partitions)
    run_id = uuid.uuid4().hex[:8]
    topic = f"bench.pipeline.{run_id}"
    topics = kind_topics(topic)
    kinds = preload_kinds(args.kind)
    per_kind = max(1, args.devices // len(kinds))
    per_device = -(-args.frames // (per_kind * len(kinds)))
    frames = per_kind * per_device * len(kinds)
    loaded = [topics[k] for k in kinds]
    out: dict[str, Any] = {
        "benchmark": "pipeline",
        "kind": args.kind,
        "frames": frames,
        "devices": per_kind * len(kinds),
        "partitions": args.partitions,
        "batch_max_frames": env.settings.pipeline.batch_max_frames,
        "batch_linger_ms": env.settings.pipeline.batch_linger_ms,
        # NEV_STORAGE_LATEST_INTERVAL_MS=0 measures latest_state merged with every batch
        "latest_interval_ms": env.settings.storage.latest_interval_ms,
        "machine": _machine(),
    }
    produced = await preload_kind(env, topics, args.kind, args.devices, per_device)
    out["preload_frames_per_s"] = round(produced)
    consume = await consume_ceiling(env, loaded, frames)
    out["ceiling_consume_frames_per_s"] = round(consume)
    lower = consume
    out["ceiling_copy_frames_per_s"] = None
    if args.kind == "vehicle":
        copy = await copy_ceiling(env, topics["vehicle"], frames, run_id)
        out["ceiling_copy_frames_per_s"] = round(copy)
        lower = min(consume, copy)
    out["ceiling_lower_frames_per_s"] = round(lower)
    out["ceiling_consume_cpu_us_per_frame"] = round(CPU_US.get("consume", 0.0), 1)
    out["ceiling_copy_client_cpu_us_per_frame"] = round(CPU_US.get("copy", 0.0), 1)
    out["decode_cpu_us_per_frame"] = round(CPU_US.get("decode", 0.0), 1)
    out["rules_cpu_us_per_frame"] = round(CPU_US.get("rules", 0.0), 1)
    for n in args.workers:
        res = await run_pipeline(env, topics, frames, workers=n, tag=f"{run_id}w{n}")
        out[f"pipeline_{n}w_frames_per_s"] = round(res.rate)
        out[f"pipeline_{n}w_vs_lower_ceiling"] = round(res.rate / lower, 3)
        out[f"pipeline_{n}w_rss_mb_per_worker"] = res.rss_mb
        out[f"pipeline_{n}w_seconds"] = round(res.seconds, 2)
        out[f"pipeline_{n}w_cpu_us_per_frame"] = res.cpu_us_per_frame
        out[f"pipeline_{n}w_cpu_busy"] = res.cpu_busy
    one = out.get("pipeline_1w_frames_per_s")
    if args.steady_s > 0 and one and args.kind == "vehicle":
        rate = one * 0.5
        hist = await steady_state(env, f"{topic}.steady", rate=rate, seconds=args.steady_s)
        out["steady_rate_frames_per_s"] = round(rate)
        out["steady_seconds"] = args.steady_s
        out["steady_frames"] = int(hist.get("count", 0))
        out["steady_p50_latency_s"] = histogram_quantile(hist, 0.50)
        out["steady_p99_latency_s"] = histogram_quantile(hist, 0.99)
    goal_rate = out.get("pipeline_1w_frames_per_s", 0)
    # Issue 12's goals (the earlier ones, 0.6x and p99 <= 2 s, are met where these are).
    out["goal_1w_ge_0_8_lower_ceiling"] = goal_rate >= 0.8 * lower
    out["goal_1w_ge_30000"] = goal_rate >= 30_000
    p99 = out.get("steady_p99_latency_s")
    out["goal_p99_le_1s"] = p99 is not None and p99 <= 1.0
    out["command"] = " ".join(["python -m loadtest.bench_pipeline", *sys.argv[1:]])
    await env.close()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench_pipeline", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--kind", choices=("vehicle", "charger", "battery", "mixed"), default="vehicle",
        help="entity kind of the frames (mixed: a third each, each on its topic)",
    )  # fmt: skip
    p.add_argument("--frames", type=int, default=1_000_000)
    p.add_argument(
        "--devices", "--vehicles", type=int, default=10_000, help="devices (of all kinds)"
    )
    p.add_argument("--partitions", type=int, default=12)
    p.add_argument(
        "--workers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2],
        help="comma-separated worker counts to measure (1,2)",
    )  # fmt: skip
    p.add_argument("--steady-s", type=float, default=60.0, help="steady-state run; 0 skips it")
    args = p.parse_args(argv)
    return print_result(_bench(args))


if __name__ == "__main__":
    sys.exit(main())
