"""Pipeline benchmark: frames/s end to end, against two ceilings measured in the same run.

    python -m loadtest.bench_pipeline [--kind vehicle|charger|battery|mixed] [--frames 1000000]
                                      [--devices 10000] [--workers 1,2] [--steady-s 60]
                                      [--steady-rates 0.5]

Needs the dev stack (``nev-ingest devstack up``; addresses from state.json or ``NEV_*``).

1. preload fresh 12-partition topics with ``--frames`` real-time frames of ``--kind``
   (``bench_frames``: vehicles, charging piles, standalone packs; ``mixed``: a third of the
   devices of each kind, each kind on its own topic as in production);
2. ceiling "consume": raw aiokafka consumption of the whole topic(s) in a fresh group
   (getmany, nothing else);
3. ceiling "copy" (vehicles): raw binary COPY of the same rows (decoded beforehand, not
   timed) into the same tables of a fresh database, 5,000-frame transactions, one connection;
   for the other kinds it is left out (``null``): the COPY of their rows is the storage
   writer's, measured by its own benchmark; ``ceiling_copy_db_cpu_us_per_frame`` is the
   database server's CPU over it per frame (``loadtest.db_cpu``: ``null`` when the server is
   not on this host);
4. ``nev-ingest run --workers N`` for each N, each on a fresh database and consumer group:
   frames/s from the workers' first fetch (after the last assignment) until the database
   holds the topic's end offsets, and their CPU over that span; RSS of each worker (max
   over the run); the database server's CPU per frame over the same span
   (``pipeline_Nw_db_cpu_us_per_frame``) and the host's idle cores on average
   (``pipeline_Nw_host_idle_cores``): with the workers' CPU they say whether the run was
   bound by the workers, by the database's work per frame, or by neither (the two taking
   turns with cores idle); where the workers' consume loops waited over the span
   (``pipeline_Nw_wait_s``: seconds by cause, summed over the workers, from
   ``nev_ingest_worker_wait_seconds_total``: ``poll`` for Kafka's fetch, ``room`` under
   ``pipeline.max_in_flight_frames`` or paused, ``lane`` the write lanes' turns between decode
   slices, ``restore`` after a rebalance; only the idle part of each, the event loop's own
   CPU meanwhile left out, so a share is time the loop had nothing to run;
   ``pipeline_Nw_wait_share``: that over span x workers; docs/operations.md);
5. steady state: one worker, a new topic fed at 50 % of the one-worker rate (or at each
   fraction of ``--steady-rates``, e.g. 0.25,0.5,0.75: one run each) for ``--steady-s``
   seconds with ``received_at`` = now, by ``loadtest.feeder`` (frames built before the
   clock, paced batches: ~7 µs of CPU per frame at 18,800 frames/s, reported as
   ``feeder_cpu_us_per_frame``);
   p50/p99 of received_at -> committed from the service's histogram, with the offered and
   achieved rate (``feeder_kept_up`` false: the load side fell more than 2 % short).

The service's settings come from the environment as usual: the default
``NEV_STORAGE_LATEST_INTERVAL_MS=0`` merges latest_state with every batch (the goal's figures);
``NEV_STORAGE_LATEST_INTERVAL_MS=5000`` measures it coalesced, once per 5 s per partition (the
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

import orjson

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


async def _steady(
    env: BenchEnv, topic: str, one: float, args: argparse.Namespace
) -> dict[str, Any]:
    """One steady run per fraction of the 1-worker rate: p50/p99 with the offered and achieved
    rate of each (``steady``); the 0.5 run's (else the first's) also as the ``steady_*`` fields
    earlier runs reported."""
    lines = []
    for i, fraction in enumerate(args.steady_rates):
        rate = one * fraction
        name = f"{topic}.steady{i}"
        hist, fed = await steady_state(env, name, rate=rate, seconds=args.steady_s)
        line = {
            "fraction": fraction,
            "offered_frames_per_s": round(rate),
            "achieved_frames_per_s": round(fed.achieved),
            # the load side kept up: achieved within 2 % of offered, else the figures below
            # are those of a lower rate than asked
            "feeder_kept_up": fed.kept_up(),
            "frames": int(hist.get("count", 0)),
            "p50_latency_s": histogram_quantile(hist, 0.50),
            "p99_latency_s": histogram_quantile(hist, 0.99),
            "feeder_cpu_us_per_frame": round(fed.cpu_us_per_frame, 2),
            "feeder_cpu_share_of_core": fed.as_dict()["feeder_cpu_share_of_core"],
            "feeder_build_s": round(fed.build_s, 1),
        }
        sys.stderr.write(f"bench: steady {orjson.dumps(line).decode()}\n")
        lines.append(line)
    main = next((x for x in lines if x["fraction"] == 0.5), lines[0])
    # The p99 goal is at half of this run's own 1-worker rate; not judged on a given base.
    judged = args.steady_base is None and main["fraction"] == 0.5
    return {
        "steady": lines,
        "steady_rate_frames_per_s": main["offered_frames_per_s"],
        "steady_achieved_frames_per_s": main["achieved_frames_per_s"],
        "steady_feeder_kept_up": all(x["feeder_kept_up"] for x in lines),
        "steady_seconds": args.steady_s,
        "steady_frames": main["frames"],
        "steady_p50_latency_s": main["p50_latency_s"],
        "steady_p99_latency_s": main["p99_latency_s"],
        "feeder_cpu_us_per_frame": main["feeder_cpu_us_per_frame"],
        "feeder_cpu_share_of_core": main["feeder_cpu_share_of_core"],
        "goal_p99_le_1s": judged
        and main["p99_latency_s"] is not None
        and main["p99_latency_s"] <= 1.0,
    }


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    env = await BenchEnv.create(partitions=args.partitions)
    try:
        return await _measure(env, args)
    finally:
        await env.close()  # the run's topics and databases, after a failure too


async def _measure(env: BenchEnv, args: argparse.Namespace) -> dict[str, Any]:
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
    db_copy = CPU_US.get("copy_db")
    out["ceiling_copy_db_cpu_us_per_frame"] = None if db_copy is None else round(db_copy, 1)
    out["decode_cpu_us_per_frame"] = round(CPU_US.get("decode", 0.0), 1)
    out["rules_cpu_us_per_frame"] = round(CPU_US.get("rules", 0.0), 1)
    for n in args.workers:
        res = await run_pipeline(
            env, topics, frames, workers=n, tag=f"{run_id}w{n}", db_activity=args.db_activity
        )
        out[f"pipeline_{n}w_frames_per_s"] = round(res.rate)
        out[f"pipeline_{n}w_vs_lower_ceiling"] = round(res.rate / lower, 3)
        out[f"pipeline_{n}w_rss_mb_per_worker"] = res.rss_mb
        out[f"pipeline_{n}w_seconds"] = round(res.seconds, 2)
        out[f"pipeline_{n}w_cpu_us_per_frame"] = res.cpu_us_per_frame
        out[f"pipeline_{n}w_cpu_busy"] = res.cpu_busy
        out[f"pipeline_{n}w_db_cpu_us_per_frame"] = res.db_cpu_us_per_frame
        out[f"pipeline_{n}w_host_idle_cores"] = res.host_idle_cores
        if res.db_activity is not None:
            out[f"pipeline_{n}w_db_activity"] = res.db_activity
        out[f"pipeline_{n}w_rebalances_in_drain"] = res.rebalances
        out[f"pipeline_{n}w_span_start"] = res.span_start
        out[f"pipeline_{n}w_frames_per_s_from_first_commit"] = round(res.rate_from_first_commit)
        out[f"pipeline_{n}w_wait_s"] = res.wait_s
        out[f"pipeline_{n}w_wait_share"] = res.wait_share
    one = args.steady_base or out.get("pipeline_1w_frames_per_s")
    if args.steady_base is not None:
        out["steady_base_frames_per_s"] = args.steady_base
    if args.steady_s > 0 and one and args.kind == "vehicle":
        out.update(await _steady(env, topic, one, args))
    goal_rate = out.get("pipeline_1w_frames_per_s", 0)
    # Issue 12's goals (the earlier ones, 0.6x and p99 <= 2 s, are met where these are).
    out["goal_1w_ge_0_8_lower_ceiling"] = goal_rate >= 0.8 * lower
    out["goal_1w_ge_30000"] = goal_rate >= 30_000
    out.setdefault("goal_p99_le_1s", False)  # set by the steady runs (p99 at 0.5)
    out["command"] = " ".join(["python -m loadtest.bench_pipeline", *sys.argv[1:]])
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
    p.add_argument(
        "--steady-rates", type=lambda s: [float(x) for x in s.split(",")], default=[0.5],
        help="steady runs' rates: comma-separated fractions of the 1-worker rate (0.5)",
    )  # fmt: skip
    p.add_argument(
        "--steady-base",
        type=float,
        default=None,
        help="frames/s the steady rates are fractions of, instead of this run's 1-worker rate "
        "(to compare settings at the same offered load)",
    )
    p.add_argument(
        "--db-activity",
        action="store_true",
        help="sample pg_stat_activity during each drain: how often the database waited "
        "for the worker (loadtest.db_activity)",
    )
    args = p.parse_args(argv)
    return print_result(_bench(args))


if __name__ == "__main__":
    sys.exit(main())
