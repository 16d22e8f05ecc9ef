"""Scale run: 3,000,000 distinct devices (1M vehicles + 1M charging piles + 1M packs) through the
whole service at a reduced per-device rate: does the worker's per-device state stay bounded?

    python -m loadtest.scale_devices [--devices 3000000] [--revisit 100000] [--interval-s 600]
                                     [--workers 1] [--shards 1]

Needs the dev stack (``nev-ingest devstack up``). Fresh databases and 12-partition topics per
kind; ``nev-ingest run --workers W`` starts first and takes its partitions, then the devices'
frames are produced as fast as the producer goes, a third of the devices of each kind
interleaved (``bench_frames``; beyond its pool each device's frames are derived from a pooled
template with the device's own identity): round 0 is every device's first frame, round 1,
``--interval-s`` later in frame time, a second frame of the first ``--revisit`` devices of
each kind (devices the worker already knows: no new state).

Worker RSS is sampled with the frames stored: at the start (no device yet), when every device
has been seen once (end of round 0) and at the end. Bytes per device = (RSS when every device
has been seen - RSS when a third had) / two thirds of the devices: everything the worker keeps
per device (rule state, latest-state and session tracking, caches, allocator overhead), without
its fixed costs. Bounded: round 1 (no new device) must not grow RSS by more than 5 %. Rows per
table, latest_state rows per kind and dead-lettered frames are counted at the end.

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

from devtools.devstack.kafka import ensure_topics
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


def _messages(devices: int, revisit: int, interval_ms: int, start_ms: int) -> Any:
    """Round 0: every device once; round 1, ``interval_ms`` later: the first ``revisit``
    devices of each kind again. A vehicle, a pile and a pack in turn."""
    share = devices // len(KINDS)
    for n, at_ms in ((share, start_ms), (revisit, start_ms + interval_ms)):
        streams = [_of_kind(kind, n, at_ms) for kind in KINDS]
        yield from (m for group in zip(*streams, strict=True) for m in group)


def _rss_at(series: list[tuple[int, float]], stored: int) -> float:
    """The largest RSS sampled while at most ``stored`` frames were stored."""
    seen = [rss for n, rss in series if n <= stored]
    return max(seen) if seen else 0.0


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    env = await BenchEnv.create(partitions=12)
    envs = await shard_envs(env, args.shards)
    run_id = uuid.uuid4().hex[:8]
    topics = kind_topics(f"scale.devices.{run_id}")
    await ensure_topics(env.kafka, {t: 12 for t in topics.values()}, replication_factor=1)
    devices = args.devices // len(KINDS) * len(KINDS)
    revisit = min(args.revisit, devices // len(KINDS))
    total = devices + revisit * len(KINDS)
    interval_ms = int(args.interval_s * 1000)
    start_ms = time.time_ns() // 1_000_000 - interval_ms
    out: dict[str, Any] = {
        "benchmark": "scale_devices",
        "devices": devices,
        "per_kind": devices // len(KINDS),
        "revisited_per_kind": revisit,
        "interval_s": args.interval_s,
        "frames": total,
        "workers": args.workers,
        "shards": args.shards,
        "machine": _machine(),
        "loadavg_1m_start": os.getloadavg()[0],
    }
    messages = _messages(devices, revisit, interval_ms, start_ms)
    began = time.monotonic()
    first = next(messages)  # builds the template pools before the clock starts
    out["template_pool_build_s"] = round(time.monotonic() - began, 1)
    series: list[tuple[int, float]] = []  # (stored frames, RSS of all workers)

    def chained() -> Any:
        yield first
        yield from messages

    extra = {"NEV_KAFKA_TOPIC_DLQ": f"scale.devices.{run_id}.dlq"}
    await ensure_topics(env.kafka, {extra["NEV_KAFKA_TOPIC_DLQ"]: 1}, replication_factor=1)
    async with sharded_service(envs, topics, args.workers, f"{run_id}_dev", extra_env=extra) as run:
        await until_assigned(run, 12 * len(topics))
        base = sum(_rss_mb(pid) for pid in run.pids())
        series.append((0, base))
        offsets = Offsets(env.kafka, run.topics.values())
        await offsets.start()
        watch = Watch(run, f"{devices:,} devices")

        async def record(stored: int, end: int) -> None:
            series.append((stored, sum(_rss_mb(pid) for pid in run.pids())))

        try:
            t0 = time.monotonic()
            sent = await paced(
                env,
                topics,
                chained(),
                rate=0,
                max_frames=total,
                watch=watch,
                offsets=offsets,
                every_s=2.0,
                on_sample=record,
                figures=out,
            )
            out["produce_frames_per_s"] = round(sent / (time.monotonic() - t0))
            end = await offsets.end()
            while (stored := await watch.sample(end)) < end:
                series.append((stored, sum(_rss_mb(pid) for pid in run.pids())))
                await asyncio.sleep(1.0)
            series.append((stored, sum(_rss_mb(pid) for pid in run.pids())))
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
    third = _rss_at(series, devices // 3)
    round0 = _rss_at(series, devices)
    last = series[-1][1]
    # The slope between a third of the devices seen and all of them: the worker's fixed costs
    # (imports, native extension, in-flight batches) are in both points and drop out.
    per_device = (round0 - third) * 1024 * 1024 / (devices - devices // 3)
    out["rss_mb_start"] = round(base, 1)
    out["rss_mb_third_of_devices_seen"] = round(third, 1)
    out["rss_mb_every_device_seen_once"] = round(round0, 1)
    out["rss_mb_end"] = round(last, 1)
    out["bytes_per_device"] = round(per_device)
    out["state_mb_total"] = round(per_device * devices / 1024 / 1024, 1)
    out["growth_in_last_round_pct"] = round((last - round0) / max(round0, 1e-9) * 100, 1)
    out["bounded"] = last <= round0 * 1.05
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
    p.add_argument("--interval-s", type=float, default=600.0, help="between a device's frames")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--shards", type=int, default=1)
    args = p.parse_args(argv)
    return print_result(_bench(args))


if __name__ == "__main__":
    sys.exit(main())
