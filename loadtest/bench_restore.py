"""Alert-state restore benchmark: the replay on partition assignment over a synthetic fleet.

    python -m loadtest.bench_restore [--entities 500000] [--frames 11] [--partitions 4]

A scratch database on the dev PostgreSQL (``NEV_POSTGRES_DSN`` or the running dev stack) gets
``--entities`` vehicles in latest_state (stamped with a partition of ``--partitions``, all
"recently active": their updated_at is a day ahead, so they stay in the window however long
the modes take) and ``--frames`` vehicle_telemetry rows each, 10 s
apart, ending at the entity's latest frame time, written server-side (``INSERT ... SELECT
generate_series``: the bench measures reading, not writing). Pack rows are not written (the
vehicle rows are what the query plan and the decoding cost scale with). Then, each in a fresh
child process so its peak RSS is its own, the default vehicle rules' engine is warmed for every
partition:

* ``whole``  the previous restore: ``replay.recent_frames`` of all partitions at once, then
             ``warm`` (everything materialised; the worker gave it 30 s in total);
* ``paged``  ``ingest.pipeline.alert_state.Replay``: a page of entities at a time, a slice
             per call as the worker calls it; reports the longest call and the longest page.

Each mode reports seconds, frames/s, entities in the engines after, peak RSS (MB) and the RSS
growth while it ran. A progress line goes to stderr; the LAST line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

from alerts import RuleEngine, RuleSet, replay
from ingest.pipeline.alert_state import Replay
from loadtest.bench_storage import _machine, _scratch, _service_dsn
from storage import PoolParams, StorageParams, migrate
from storage.connect import connect
from storage.partitions import ensure

__all__ = ["main"]

TOPIC = "nev.vehicle.raw"

_LATEST = """
INSERT INTO latest_state (entity_kind, entity_id, ts, updated_at, kafka_topic, kafka_partition)
SELECT 'vehicle', 'LBENCH' || lpad(i::text, 11, '0'),
       $1::timestamptz - make_interval(secs => (i % 10)), now() + interval '1 day', $2, i % $3
FROM generate_series(0, $4 - 1) AS i
"""
_TELEMETRY = """
INSERT INTO vehicle_telemetry (vin, ts, edition, command, extremes_derived, fault_count,
                               soc_pct, max_temp_c, min_cell_voltage_v, max_cell_voltage_v)
SELECT s.entity_id, s.ts - make_interval(secs => 10 * k), 2016, 2, false, 0,
       80, 30, 3.6, 3.7
FROM latest_state s, generate_series(0, $1 - 1) AS k
WHERE s.entity_kind = 'vehicle'
"""


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _prepare(dsn: str, entities: int, frames: int, partitions: int) -> dict[str, Any]:
    conn = await connect(PoolParams(dsn=dsn))
    try:
        await migrate(conn, StorageParams())
        now = await conn.fetchval("SELECT date_trunc('second', now())")
        span = (now - timedelta(days=1), now + timedelta(days=1))
        await ensure(conn, "nev", ["vehicle_telemetry"], [span], timedelta(days=1))
        t0 = time.monotonic()
        await conn.execute(_LATEST, now, TOPIC, partitions, entities)
        await conn.execute(_TELEMETRY, frames)
        await conn.execute("ANALYZE latest_state")
        await conn.execute("ANALYZE vehicle_telemetry")
        return {"load_s": round(time.monotonic() - t0, 1)}
    finally:
        await conn.close()


async def _mode(dsn: str, mode: str, partitions: int) -> dict[str, Any]:
    """One mode, in this (child) process."""
    rss0 = _rss_mb()
    engine = RuleEngine(RuleSet.default(), entity_kind="vehicle")
    conn = await connect(PoolParams(dsn=dsn))
    out: dict[str, Any] = {"mode": mode}
    t0 = time.monotonic()
    frames = 0
    try:
        if mode == "whole":
            got = await replay.recent_frames(
                conn, "vehicle", TOPIC, list(range(partitions)), engine.rules.window_s
            )
            out["read_s"] = round(time.monotonic() - t0, 2)
            for p, fs in got.items():
                frames += len(fs)
                engine.warm(fs, partition=p, topic=TOPIC)
            del got
        else:
            r = Replay()
            keys = [(TOPIC, p) for p in range(partitions)]
            calls, longest = 0, 0.0
            done = False
            while not done:
                c0 = time.monotonic()
                done = await r.run(
                    conn,
                    keys,
                    {TOPIC: "vehicle"},
                    {"vehicle": engine},
                    until=c0 + r.slice_s,
                )
                calls += 1
                longest = max(longest, time.monotonic() - c0)
                entities_done, frames = r.totals(keys)
                print(f"paged: {entities_done} entities, {frames} frames", file=sys.stderr)
            out["calls"] = calls
            out["longest_call_s"] = round(longest, 2)
    finally:
        await conn.close()
    took = time.monotonic() - t0
    out.update(
        seconds=round(took, 2),
        frames=frames,
        frames_per_s=round(frames / took),
        entities=len(engine),
        peak_rss_mb=round(_peak_mb(), 1),
        rss_growth_mb=round(_peak_mb() - rss0, 1),
    )
    return out


def _child(dsn: str, mode: str, partitions: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "loadtest.bench_restore", "--child", mode, "--dsn", dsn]
    cmd += ["--partitions", str(partitions)]
    done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    result: dict[str, Any] = orjson.loads(done.stdout.strip().splitlines()[-1])
    return result


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    pg = _service_dsn("NEV_POSTGRES_DSN", "postgres")
    if pg is None:
        raise SystemExit(
            "bench_restore: start the dev stack (nev-ingest devstack up) or set NEV_POSTGRES_DSN"
        )
    maintenance = urlunsplit(urlsplit(pg)._replace(path="/postgres"))
    name = f"bench_restore_{os.getpid()}"
    dsn = await _scratch(maintenance, name, create=True)
    out: dict[str, Any] = {"benchmark": "restore", "machine": _machine()}
    out.update(entities=args.entities, frames_per_entity=args.frames, partitions=args.partitions)
    try:
        out["prepare"] = await _prepare(dsn, args.entities, args.frames, args.partitions)
        print(f"prepared: {out['prepare']}", file=sys.stderr)
        out["load_average"] = os.getloadavg()[0]
        for mode in args.modes.split(","):
            out[mode] = await asyncio.to_thread(_child, dsn, mode, args.partitions)
            print(f"{mode}: {out[mode]}", file=sys.stderr)
    finally:
        await _scratch(maintenance, name, create=False)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--entities", type=int, default=500_000)
    p.add_argument("--frames", type=int, default=11, help="stored frames per entity")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--modes", default="paged,whole")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--dsn", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        result = asyncio.run(_mode(args.dsn, args.child, args.partitions))
    else:
        result = asyncio.run(_bench(args))
    print(orjson.dumps(result).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
