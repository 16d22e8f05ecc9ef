"""Frame-time window benchmark: good frames/s with a share of bad device clocks vs a clean run.

    python -m loadtest.bench_timewindow [--frames 200000] [--bad-share 0.1] [--rounds 2]

Needs the dev stack (``nev-ingest devstack up``), plain PostgreSQL as the dev stack runs it.

Two topics are preloaded with the same ``--frames`` good real-time frames (``bench_frames``,
times of the last hours); the second also holds, spread evenly among them, frames whose time is
outside the stored window (2000-01-01, 2099-06-01, a 2019 capture past the retention) so that
they make ``--bad-share`` of its records. ``nev-ingest run`` (``--workers``) then drains each
topic on a fresh database, clean and bad alternately for ``--rounds`` rounds (the machine's
noise hits both alike); the good-frame rate of a bad run is its record rate times the good
share. The issue's goal: the bad runs' good-frame rate within 20 % of the clean runs' (the
median of the per-round ratios).

Prints progress lines and, last, one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from devtools.loadgen import produce_messages
from devtools.sim.bench_frames import realtime_frames
from devtools.sim.envelope import TIME_AT, reseal, time_bytes
from devtools.sim.fleet import Message
from loadtest.bench_pipeline import _machine
from loadtest.bench_support import BenchEnv, print_result, progress, run_pipeline
from loadtest.clients import bench_producer

__all__ = ["BAD_TIMES_MS", "main", "with_bad_times"]

BAD_TIMES_MS = tuple(
    int(datetime(*ymd, tzinfo=UTC).timestamp() * 1000)
    for ymd in ((2000, 1, 1), (2099, 6, 1), (2019, 3, 14))
)


def with_bad_times(
    frames: Iterator[tuple[bytes, bytes]], share: float
) -> Iterator[tuple[bytes, bytes]]:
    """``frames`` with a copy of every k-th frame re-dated out of the window (BCC fixed), so
    that the copies are ``share`` of the output; the good frames are all kept."""
    if share <= 0:
        yield from frames
        return
    every = (1 - share) / share  # good frames per bad one
    owed = 0.0
    n = 0
    for key, frame in frames:
        yield key, frame
        owed += 1
        if owed >= every:
            owed -= every
            bad = bytearray(frame)
            bad[TIME_AT : TIME_AT + 6] = time_bytes(BAD_TIMES_MS[n % len(BAD_TIMES_MS)])
            n += 1
            yield key, reseal(bad)


async def _preload(env: BenchEnv, topic: str, vehicles: int, per_vehicle: int, share: float) -> int:
    await env.make_topics({topic: 12})
    start_ms = time.time_ns() // 1_000_000 - per_vehicle * 10_000
    producer = bench_producer(env.kafka)
    await producer.start()
    started = time.monotonic()
    try:
        frames = with_bad_times(realtime_frames(vehicles, per_vehicle, start_ms=start_ms), share)
        messages = (Message(0, k, v, "realtime") for k, v in frames)
        result = await produce_messages(producer, topic, messages, progress=None)
    finally:
        await producer.stop()
    progress(f"preload {topic}", result.frames, result.frames, started)
    return result.frames


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    env = await BenchEnv.create(partitions=12)
    try:
        return await _measure(env, args)
    finally:
        await env.close()  # the run's topics and databases, after a failure too


async def _measure(env: BenchEnv, args: argparse.Namespace) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    per_vehicle = -(-args.frames // args.vehicles)
    good = args.vehicles * per_vehicle
    clean_topic, bad_topic = f"bench.window.{run_id}.clean", f"bench.window.{run_id}.bad"
    clean_n = await _preload(env, clean_topic, args.vehicles, per_vehicle, 0.0)
    bad_n = await _preload(env, bad_topic, args.vehicles, per_vehicle, args.bad_share)
    out: dict[str, Any] = {
        "benchmark": "timewindow",
        "good_frames": good,
        "bad_frames": bad_n - good,
        "bad_share": round((bad_n - good) / bad_n, 4),
        "workers": args.workers,
        "rounds": args.rounds,
        "machine": _machine(),
    }
    clean: list[float] = []
    bad: list[float] = []
    for r in range(args.rounds):
        res = await run_pipeline(
            env, clean_topic, clean_n, workers=args.workers, tag=f"{run_id}c{r}"
        )
        clean.append(res.rate)
        res = await run_pipeline(env, bad_topic, bad_n, workers=args.workers, tag=f"{run_id}b{r}")
        bad.append(res.rate * good / bad_n)  # good frames/s: records/s x the good share
    out["clean_good_frames_per_s"] = [round(x) for x in clean]
    out["bad_good_frames_per_s"] = [round(x) for x in bad]
    # Per round (a clean run and the bad run right after it share the machine's load), then
    # the median: one noisy round does not decide.
    ratios = [b / c for b, c in zip(bad, clean, strict=True)]
    out["good_rate_bad_vs_clean_per_round"] = [round(x, 3) for x in ratios]
    ratio = statistics.median(ratios)
    out["good_rate_bad_vs_clean"] = round(ratio, 3)
    out["goal_within_20_pct"] = ratio >= 0.8
    out["command"] = " ".join(["python -m loadtest.bench_timewindow", *sys.argv[1:]])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench_timewindow", description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=200_000, help="good frames per topic")
    p.add_argument("--vehicles", type=int, default=2_000)
    p.add_argument("--bad-share", type=float, default=0.1, help="share of out-of-window records")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3, help="clean + bad runs, alternately")
    args = p.parse_args(argv)
    if not 0 <= args.bad_share < 1:
        p.error("--bad-share must be in [0, 1)")
    return print_result(_bench(args))


if __name__ == "__main__":
    sys.exit(main())
