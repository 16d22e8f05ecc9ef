"""Scale run: 3,000,000 distinct devices (1M vehicles + 1M charging piles + 1M packs) through the
whole service at a reduced per-device rate: does the worker's per-device state stay bounded?

    python -m loadtest.scale_devices [--devices 3000000] [--revisit 100000] [--rounds 2]
                                     [--interval-s 600] [--workers 1] [--shards 1]

Needs the dev stack (``nev-ingest devstack up``). Fresh databases and 12-partition topics per
kind; ``nev-ingest run --workers W`` starts first and takes its partitions, then the devices'
frames are produced as fast as the producer goes, a third of the devices of each kind
interleaved (``bench_frames``; beyond its pool each device's frames are derived from a pooled
template with the device's own identity): round 0 is every device's first frame, rounds 1 ..
``--rounds``, each ``--interval-s`` later in frame time, one more frame of the first
``--revisit`` devices of each kind (devices the worker already knows).

Worker RSS is sampled with the frames stored: at the start (no device yet), while round 0 runs,
and at the end of each round, which is sent only after the previous one is stored (the worker
idle, nothing in flight). Bytes per device = (RSS when every device
has been seen - RSS when a third had, both idle: round 0 is sent in those two parts) / two
thirds of the devices: everything the worker keeps
per device (rule state, latest-state and session tracking, caches, allocator overhead), without
its fixed costs. A device's second frame may still add state (a rule window then holds two
samples, a rate has a previous value); from the third on nothing may grow: bounded = the last
round (no new device, each revisited device's third frame or later) grows RSS by at most 2 %.
The growth of every round is reported. Rows per table, latest_state rows per kind and
dead-lettered frames are counted at the end.

Prints a progress line while it runs and, last, one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import time
import uuid
from typing import Any

from devtools.sim.bench_frames import KINDS, frames_of_kind
from devtools.sim.fleet import Message
from loadtest.bench_pipeline import _machine
from loadtest.bench_support import BenchEnv, _rss_mb, kind_topics, print_result
from loadtest.scale_shards import until_assigned
from loadtest.scale_support import Offsets, Watch, paced, shard_envs, sharded_service

__all__ = ["main"]


def _of_kind(kind: str, devices: int, at_ms: int) -> Any:
    for key, value in frames_of_kind(kind, devices, 1, start_ms=at_ms):
        yield Message(0, key, value, "realtime", kind)


def _rounds(devices: int, revisit: int, rounds: int, interval_ms: int, start_ms: int) -> Any:
    """Per round, its frames: round 0 every device once; rounds 1 .. ``rounds``,
    ``interval_ms`` apart, the first ``revisit`` devices of each kind again. A vehicle, a pile
    and a pack in turn."""
    share = devices // len(KINDS)
    plan = [(share, start_ms)] + [
        (revisit, start_ms + r * interval_ms) for r in range(1, rounds + 1)
    ]
    for r, (n, at_ms) in enumerate(plan):
        streams = [_of_kind(kind, n, at_ms) for kind in KINDS]
        frames = (m for group in zip(*streams, strict=True) for m in group)
        if r == 0:
            # Round 0 in two sends, a third of the devices and the rest, so the slope's first
            # point is taken idle too (the feeder takes exactly max_frames of the stream).
            yield devices // 3, frames
            yield n * len(KINDS) - devices // 3, frames
        else:
            yield n * len(KINDS), frames


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    env = await BenchEnv.create(partitions=12)
    try:
        return await _measure(env, args)
    finally:
        await env.close()  # the run's topics and databases, after a failure too


async def _measure(env: BenchEnv, args: argparse.Namespace) -> dict[str, Any]:
    envs = await shard_envs(env, args.shards)
    run_id = uuid.uuid4().hex[:8]
    topics = kind_topics(f"scale.devices.{run_id}")
    await env.make_topics({t: 12 for t in topics.values()})
    devices = args.devices // len(KINDS) * len(KINDS)
    revisit = min(args.revisit, devices // len(KINDS))
    rounds = args.rounds
    total = devices + revisit * len(KINDS) * rounds
    interval_ms = int(args.interval_s * 1000)
    start_ms = time.time_ns() // 1_000_000 - interval_ms * rounds
    out: dict[str, Any] = {
        "benchmark": "scale_devices",
        "devices": devices,
        "per_kind": devices // len(KINDS),
        "revisited_per_kind": revisit,
        "revisit_rounds": rounds,
        "interval_s": args.interval_s,
        "frames": total,
        "workers": args.workers,
        "shards": args.shards,
        "machine": _machine(),
        "loadavg_1m_start": os.getloadavg()[0],
    }
    plan = list(_rounds(devices, revisit, rounds, interval_ms, start_ms))
    series: list[tuple[int, float]] = []  # (stored frames, RSS of all workers)
    settled: list[float] = []  # RSS once each round is stored and the worker is idle

    extra = {"NEV_KAFKA_TOPIC_DLQ": f"scale.devices.{run_id}.dlq"}
    await env.make_topics({extra["NEV_KAFKA_TOPIC_DLQ"]: 1})
    async with sharded_service(envs, topics, args.workers, f"{run_id}_dev", extra_env=extra) as run:
        await until_assigned(run, 12 * len(topics))

        def rss() -> float:
            return sum(_rss_mb(pid) for pid in run.pids())

        base = rss()
        series.append((0, base))
        offsets = Offsets(env.kafka, run.topics.values())
        await offsets.start()
        watch = Watch(run, f"{devices:,} devices")

        async def record(stored: int, end: int) -> None:
            series.append((stored, rss()))

        try:
            sent, produce_s = 0, 0.0
            feeds: list[dict[str, Any]] = []  # the feeder's figures of each round
            for size, messages in plan:
                # One round at a time, each stored in full before the next is sent: the RSS at
                # a round's end is then the worker's state with nothing in flight.
                p0 = time.monotonic()
                fed: dict[str, Any] = {}
                sent += await paced(
                    env,
                    topics,
                    messages,
                    rate=0,
                    max_frames=size,
                    watch=watch,
                    offsets=offsets,
                    every_s=2.0,
                    on_sample=record,
                    figures=fed,
                )
                feeds.append(fed)
                produce_s += time.monotonic() - p0
                end = await offsets.end()
                while (stored := await watch.sample(end)) < end:
                    series.append((stored, rss()))
                    await asyncio.sleep(1.0)
                # Idle: three samples a second apart, the middle one (a batch's buffers may
                # still be returned to the allocator).
                idle = []
                for _ in range(3):
                    await asyncio.sleep(1.0)
                    idle.append(rss())
                settled.append(sorted(idle)[1])
                series.append((stored, settled[-1]))
            out["produce_frames_per_s"] = round(sent / max(produce_s, 1e-9))
            out["feeds"] = feeds
            took = time.monotonic() - watch.first_at
        finally:
            await offsets.stop()
        out["service"] = watch.figures(end - watch.first_n, took)
        for table in ("vehicle_telemetry", "charger_telemetry", "pack_telemetry"):
            out[f"{table}_rows"] = sum(await run.count(f"SELECT count(*) FROM {{s}}.{table}"))
        for kind in KINDS:
            sql = f"SELECT count(*) FROM {{s}}.latest_state WHERE entity_kind = '{kind}'"
            out[f"latest_state_{kind}_rows"] = sum(await run.count(sql))
        dlq = Offsets(env.kafka, [extra["NEV_KAFKA_TOPIC_DLQ"]])
        await dlq.start()
        try:
            out["dead_lettered"] = await dlq.end()
        finally:
            await dlq.stop()
    third = settled.pop(0)  # round 0's first third, stored, the worker idle
    round0 = settled[0]
    last = settled[-1]
    # The slope between a third of the devices seen and all of them, both taken idle: the
    # worker's fixed costs (imports, native extension) are in both points and drop out.
    per_device = (round0 - third) * 1024 * 1024 / (devices - devices // 3)
    out["rss_mb_start"] = round(base, 1)
    out["rss_mb_third_of_devices_seen"] = round(third, 1)
    out["rss_mb_every_device_seen_once"] = round(round0, 1)
    out["rss_mb_end"] = round(last, 1)
    out["bytes_per_device"] = round(per_device)
    out["state_mb_total"] = round(per_device * devices / 1024 / 1024, 1)
    growth = [round((b - a) / max(a, 1e-9) * 100, 1) for a, b in itertools.pairwise(settled)]
    out["rss_mb_end_of_round"] = [round(x, 1) for x in settled]
    out["growth_per_round_pct"] = growth
    out["growth_in_last_round_pct"] = growth[-1] if growth else None
    # Round 1 is each revisited device's second frame (may add window state); a later round
    # must add nothing.
    out["bounded"] = bool(rounds >= 2 and growth and growth[-1] <= 2.0)
    out["rss_samples"] = [(n, round(r, 1)) for n, r in series[:: max(1, len(series) // 40)]]
    out["loadavg_1m_end"] = os.getloadavg()[0]
    out["command"] = " ".join(["python -m loadtest.scale_devices", *sys.argv[1:]])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scale_devices", description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=int, default=3_000_000, help="a third of each kind")
    p.add_argument(
        "--revisit", type=int, default=100_000, help="devices of each kind sent a second frame"
    )
    p.add_argument(
        "--rounds", type=int, default=2, help="revisit rounds (>= 2 to judge boundedness)"
    )
    p.add_argument("--interval-s", type=float, default=600.0, help="between a device's frames")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--shards", type=int, default=1)
    args = p.parse_args(argv)
    return print_result(_bench(args))


if __name__ == "__main__":
    sys.exit(main())
