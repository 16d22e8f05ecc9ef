"""A reconnect storm through the gateway (issue 13): every device of a fleet connects and logs
in within one window (a minute by default), then reports; the service stores every frame once.

    .venv/bin/python -m loadtest.storm --devices 40000 --gateways 3 --loadgens 3

Starts, on the dev stack's Kafka and PostgreSQL: ``--gateways`` gateway processes (loopback
ports, like the targets of an L4 load balancer), ``nev-ingest run`` on a fresh database, and
``--loadgens`` processes of ``nev-ingest loadgen --via-gateway ... --device-share K/M`` (one
connection per vehicle; the scale generator spreads round 0 - each vehicle's login and first
report - over ``--window-s``, then every vehicle reports every ``--window-s`` for ``--rounds``
rounds and logs out). Then it waits for the service to store every offset and compares the
rows with the frames the gateways acknowledged (a vehicle's answered logout means all it sent
before is on Kafka): lost = acknowledged - stored, duplicated = rows - distinct (vin, ts).

A process's descriptors are capped by the hard ``ulimit -n``, so connections are split over
processes: each gateway and each load generator holds devices / count of them. Stops by
itself; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import time
import uuid
from typing import Any, Final

import asyncpg
import orjson

from devtools.sim.promtext import by_label, parse_samples, total
from loadtest.bench_support import BenchEnv, _Service, _stored, print_result, service_topics
from loadtest.gateway_support import GatewayProc, topic_total

__all__ = ["main"]

SCHEMA: Final = "nev"
SPARE_FDS: Final = 300  # per process beyond its connections


async def _logins(gateways: list[GatewayProc]) -> int:
    n = 0
    for gw in gateways:
        try:
            text = await asyncio.to_thread(gw.scrape)
        except OSError:
            continue
        n += int(total(parse_samples(text), "nev_gateway_logins_total", result="ok"))
    return n


async def _rows(dsn: str) -> tuple[int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            f"SELECT count(*) AS n, count(DISTINCT (vin, ts)) AS d FROM {SCHEMA}.vehicle_telemetry"
        )
    finally:
        await conn.close()
    assert row is not None
    return int(row["n"]), int(row["d"])


def _summed(samples: list[dict[str, float]], name: str, label: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for one in samples:
        for key, n in by_label(one, name, label).items():
            out[key] = out.get(key, 0) + int(n)
    return out


def _loadgen(args: argparse.Namespace, k: int, targets: str, kafka: str) -> subprocess.Popen[bytes]:
    env = {key: v for key, v in os.environ.items() if not key.startswith("NEV_")}
    env["NEV_KAFKA_BOOTSTRAP_SERVERS"] = kafka
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "ingest", "loadgen", "--devices", str(args.devices)),
            *("--mix", "vehicle=1", "--interval-s", str(args.window_s), "--bad-ratio", "0"),
            *("--reissue-share", "0", "--fault-rate", "0", "--seed", "13"),
            *("--via-gateway", targets, "--device-share", f"{k}/{args.loadgens}"),
            *("--source-addrs", args.source_addrs, "--heartbeat-s", "0"),
            *("--max-seconds", str(args.window_s * args.rounds), "--answer-timeout-s", "120"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


async def _storm(args: argparse.Namespace) -> dict[str, Any]:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    for what, n in (("--gateways", args.gateways), ("--loadgens", args.loadgens)):
        if args.devices / n * 1.05 + SPARE_FDS > hard:
            raise SystemExit(
                f"storm: {args.devices:,} devices over {n} processes exceed the hard descriptor "
                f"limit {hard:,} (ulimit -Hn) per process: raise {what}"
            )
    env = await BenchEnv.create(partitions=12)
    # Random, as the other benchmarks' names: by the second, two runs started within one shared
    # a topic and a database (fresh_database drops one of that name first).
    tag = f"storm_{uuid.uuid4().hex[:8]}"
    topic = f"bench.{tag}.vehicle"
    gateways: list[GatewayProc] = []
    svc: _Service | None = None
    procs: list[subprocess.Popen[bytes]] = []
    results: list[dict[str, Any]] = []
    # Everything the run starts is inside the try: a start that fails half-way (a gateway that
    # does not come up) still stops what did and deletes the run's topics and database.
    try:
        await env.make_topics({topic: 12})
        roles = await service_topics(env, topic)
        dsn = await env.fresh_database(tag)
        per_gateway = int(args.devices / args.gateways * 1.1) + 100
        # One at a time: a gateway that fails to start leaves the ones before it listed, to stop.
        for _ in range(args.gateways):
            gateways.append(  # noqa: PERF401
                GatewayProc(
                    env.kafka, topic, max_connections=str(per_gateway), idle_timeout_s="900"
                )
            )
        svc = _Service(env, roles, dsn, f"bench-{tag}", args.workers)
        for gw in gateways:
            await gw.ready()
        targets = ",".join(f"127.0.0.1:{gw.port}" for gw in gateways)
        started = time.monotonic()
        procs += [_loadgen(args, k, targets, env.kafka) for k in range(args.loadgens)]
        all_in = None
        peak_rss = [0] * len(gateways)
        while any(p.poll() is None for p in procs):
            await asyncio.sleep(1.0)  # sampling the gateways while the storm runs
            peak_rss = [max(a, gw.rss_kb()) for a, gw in zip(peak_rss, gateways, strict=True)]
            if all_in is None and await _logins(gateways) >= args.devices:
                all_in = time.monotonic() - started
        for p in procs:
            out = p.stdout.read() if p.stdout else b""
            if p.returncode != 0:
                raise SystemExit(f"storm: a load generator failed ({p.returncode})")
            results.append(orjson.loads(out.decode().strip().splitlines()[-1]))
        sent_s = time.monotonic() - started
        end = await topic_total(env.kafka, topic)
        while await _stored(dsn, f"bench-{tag}", topic) < end:
            if svc.proc.poll() is not None:
                raise SystemExit(f"storm: the service exited ({svc.proc.returncode})")
            await asyncio.sleep(0.5)  # polling the stored offsets
        drained_s = time.monotonic() - started - sent_s
        rows, distinct = await _rows(dsn)
        gateway_samples = [parse_samples(await asyncio.to_thread(gw.scrape)) for gw in gateways]
    finally:
        for p in procs:  # still sending after a failure: they would outlive the run
            if p.poll() is None:
                p.kill()
                p.wait()
        if svc is not None:
            svc.stop()
        for gw in gateways:
            gw.stop()
        await env.close()  # the run's topics and its database

    def s(key: str) -> int:
        return sum(int(r[key]) for r in results)

    acked = s("acked_data_frames")
    return {
        "devices": args.devices,
        "gateways": args.gateways,
        "loadgens": args.loadgens,
        "window_s": args.window_s,
        "rounds": args.rounds,
        "connections_opened": s("connections_opened"),
        "connect_failed": s("connect_failed"),
        "closed_by_peer": s("closed_by_peer"),
        "logins": s("logins"),
        # From the generators' start: the last login answered (client side), and when the
        # gateways' login counters, sampled every second, reached the fleet.
        "last_login_after_s": max((r["last_login_after_s"] or 0.0) for r in results),
        "all_logged_in_after_s": round(all_in, 1) if all_in is not None else None,
        "data_frames_sent": s("data_frames_sent"),
        "acked_data_frames": acked,
        "answers_missing": s("answers_missing"),
        "bad_answers": [r["bad_answers"] for r in results if r["bad_answers"]],
        "kafka_records": end,
        "rows": rows,
        # Counts, not identities: rows >= acknowledged with no duplicate means every
        # acknowledged frame can have been stored; a frame sent on a connection the gateway
        # closed before reading it was never acknowledged (a terminal sends it again).
        "stored_minus_acked": distinct - acked,
        "sent_not_stored": s("data_frames_sent") - distinct,
        "duplicated": rows - distinct,
        "gateway_closed": _summed(gateway_samples, "nev_gateway_connections_closed_total", "why"),
        "gateway_refused": _summed(gateway_samples, "nev_gateway_refused_total", "reason"),
        "sent_seconds": round(sent_s, 1),
        "drain_after_send_s": round(drained_s, 1),
        "gateway_peak_rss_mb": [round(k / 1024, 1) for k in peak_rss],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--devices", type=int, default=40_000)
    p.add_argument("--gateways", type=int, default=3)
    p.add_argument("--loadgens", type=int, default=3)
    p.add_argument("--workers", type=int, default=1, help="nev-ingest run --workers")
    p.add_argument("--window-s", type=float, default=60.0, help="every device logs in within it")
    p.add_argument("--rounds", type=int, default=3, help="reports per device (round 0 included)")
    p.add_argument("--source-addrs", default="127.0.0.2-127.0.0.9")
    return print_result(_storm(p.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
