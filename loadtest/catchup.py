"""Catch-up run: stop the service for minutes under steady load, restart it, measure how fast it
drains the backlog and check that the alerts raised meanwhile are the ones a run without the
stop raises.

    python -m loadtest.catchup [--rate 5000] [--devices 20000] [--warm-s 60] [--stop-s 120]
                               [--after-s 120] [--shards 1] [--workers 1]

Needs the dev stack (``nev-ingest devstack up``; ``--shards 2`` for two shards).

1. catch-up run: fresh databases and topics; ``nev-ingest run`` fed vehicle frames at
   ``--rate`` frames/s (``received_at`` = send time, frame times keeping pace with the clock,
   each vehicle every devices / rate seconds); after ``--warm-s`` the service is stopped
   (SIGTERM), ``--stop-s`` later started again, production going on throughout and for
   ``--after-s`` after the restart. Drain rate: frames committed per second from the first
   commit after the restart until the backlog is gone (stored within one second's frames of
   the end offsets); goal >= 2x ``--rate``.
2. reference run: the same frames (same generator, same frame times) preloaded into fresh
   topics and drained by a service that is never stopped.
3. alerts: the rule set is the built-in one plus a threshold on the pack temperature that the
   simulated vehicles cross now and then (raised at >= 35 °C, cleared below 33), so alerts are
   raised and cleared all through the stop. The alerts table (entity, rule, opened at, cleared
   at) must be the same in both runs; the alerts topic of the catch-up run must carry each
   raise and clear (alert key, type) once, and the same ones as the reference run's.
   ("updated" messages are counted, not compared: one goes out per batch that changed an
   alert, so their number depends on how the frames fell into batches.)

Prints a progress line while it runs and, last, one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from devtools.loadgen import produce_messages
from loadtest.bench_pipeline import _machine
from loadtest.bench_support import SCHEMA, BenchEnv, kind_topics, print_result, progress
from loadtest.clients import bench_producer
from loadtest.scale_shards import steady_frames, until_assigned
from loadtest.scale_support import (
    Offsets,
    ShardedService,
    Watch,
    paced,
    shard_envs,
    sharded_service,
)

__all__ = ["main"]

HOT_RULE = """
[[rule]]
id = "catchup_hot_pack"
kind = "threshold"
severity = "major"
title = "Pack at 35 °C or more (catch-up run)"
source = "loadtest/catchup.py"
field = "max_temp_c"
op = ">="
value = 35
hysteresis = 2
"""

AlertRow = tuple[str, str, str, str | None]


def _rules_file() -> Path:
    default = Path(__file__).resolve().parent.parent / "alerts" / "default_rules.toml"
    path = Path(tempfile.mkdtemp(prefix="catchup-")) / "rules.toml"
    path.write_text(default.read_text() + HOT_RULE)
    return path


async def _alert_rows(run: ShardedService) -> list[AlertRow]:
    rows: list[AlertRow] = []
    for dsn in run.dsns:
        conn = await asyncpg.connect(dsn)
        try:
            got = await conn.fetch(
                f"SELECT entity_id, rule_id, opened_at::text AS o, cleared_at::text AS c "
                f"FROM {SCHEMA}.alerts"
            )
            rows.extend((r["entity_id"], r["rule_id"], r["o"], r["c"]) for r in got)
        finally:
            await conn.close()
    return sorted(rows)


async def _published(kafka: str, topic: str) -> Counter[tuple[str, str]]:
    """(alert key, change type) -> how many times the alerts topic carries it."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False)
    await consumer.start()
    out: Counter[tuple[str, str]] = Counter()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or set()]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for r in records:
                    body = orjson.loads(r.value)
                    out[(str(body["key"]), str(body["type"]))] += 1
    finally:
        await consumer.stop()
    return out


def _service_env(rules: Path, tag: str) -> dict[str, str]:
    return {
        "NEV_ALERTS_RULES_FILE": str(rules),
        "NEV_KAFKA_TOPIC_ALERTS": f"scale.catchup.{tag}.alerts",
        "NEV_KAFKA_TOPIC_DLQ": f"scale.catchup.{tag}.dlq",
    }


async def _topics(env: BenchEnv, rules: Path, tag: str) -> tuple[dict[str, str], dict[str, str]]:
    """A run's fresh topics (12 partitions per kind; its alerts and dead-letter topics) and
    the service environment that names them."""
    topics = kind_topics(f"scale.catchup.{tag}")
    extra = _service_env(rules, tag)
    await env.make_topics(
        {**{t: 12 for t in topics.values()}, extra["NEV_KAFKA_TOPIC_ALERTS"]: 1,
         extra["NEV_KAFKA_TOPIC_DLQ"]: 1},
    )  # fmt: skip
    return topics, extra


async def _catchup_run(
    envs: list[BenchEnv], args: argparse.Namespace, rules: Path, tag: str, start_ms: int
) -> tuple[dict[str, Any], list[AlertRow], Counter[tuple[str, str]]]:
    topics, extra = await _topics(envs[0], rules, tag)
    seconds = args.warm_s + args.stop_s + args.after_s
    frames = int(args.rate * seconds)
    messages = steady_frames(args.devices, args.rate, seconds, start_ms)
    first = next(messages)  # builds the frame templates before the clock starts
    out: dict[str, Any] = {"rate_frames_per_s": args.rate, "frames": frames}
    series: list[tuple[float, int, int]] = []  # (monotonic, stored, end offsets)
    async with sharded_service(envs, topics, args.workers, tag, extra_env=extra) as run:
        await until_assigned(run, 12 * len(topics))
        offsets = Offsets(envs[0].kafka, run.topics.values())
        await offsets.start()
        watch = Watch(run, "catch-up")
        marks: dict[str, float] = {}
        fed = asyncio.Event()  # the feeder built its frames and started its clock

        async def record(stored: int, end: int) -> None:
            series.append((time.monotonic(), stored, end))

        async def stop_and_restart() -> None:
            await fed.wait()
            await asyncio.sleep(args.warm_s)
            marks["stop"] = time.monotonic()
            await asyncio.to_thread(run.stop)  # SIGTERM: the service commits what it has
            marks["stopped"] = time.monotonic()
            await asyncio.sleep(max(0.0, args.stop_s - (marks["stopped"] - marks["stop"])))
            marks["restart"] = time.monotonic()
            run.start()

        def chained() -> Any:
            yield first
            yield from messages

        try:
            control = asyncio.create_task(stop_and_restart())
            out["sent"] = await paced(
                envs[0],
                topics,
                chained(),
                rate=args.rate,
                max_frames=frames,
                watch=watch,
                offsets=offsets,
                on_sample=record,
                figures=out,
                on_start=fed.set,
            )
            await control
            end = await offsets.end()
            while (stored := await watch.sample(end)) < end:
                series.append((time.monotonic(), stored, end))
                await asyncio.sleep(0.5)
            series.append((time.monotonic(), stored, end))
        finally:
            await offsets.stop()
        out.update(_drain_figures(series, marks, args.rate))
        out["rss_mb_per_worker_max"] = sorted(round(v, 1) for v in watch.rss.values())
        rows = await run.count("SELECT count(*) FROM {s}.vehicle_telemetry")
        out["every_frame_once"] = sum(rows) == end
        alerts = await _alert_rows(run)
        published = await _published(envs[0].kafka, extra["NEV_KAFKA_TOPIC_ALERTS"])
    return out, alerts, published


def _drain_figures(
    series: list[tuple[float, int, int]], marks: dict[str, float], rate: float
) -> dict[str, Any]:
    restart = marks["restart"]
    after = [s for s in series if s[0] >= restart]
    at_restart = after[0]
    backlog = at_restart[2] - at_restart[1]
    moving = [s for s in after if s[1] > at_restart[1]]
    if not moving:
        raise SystemExit("catchup: nothing was committed after the restart")
    first_commit = moving[0]
    # caught up: within one second's frames of the end offsets
    done = next((s for s in moving if s[2] - s[1] <= rate), moving[-1])
    took = max(done[0] - first_commit[0], 1e-9)
    drain = (done[1] - first_commit[1]) / took
    return {
        "stopped_s": round(restart - marks["stop"], 1),
        "backlog_at_restart_frames": backlog,
        "restart_to_first_commit_s": round(first_commit[0] - restart, 1),
        "catch_up_s": round(done[0] - restart, 1),
        "drain_frames_per_s": round(drain),
        "drain_vs_rate": round(drain / rate, 2),
        "goal_drain_ge_2x_rate": drain >= 2 * rate,
    }


async def _reference_run(
    envs: list[BenchEnv], args: argparse.Namespace, rules: Path, tag: str, start_ms: int
) -> tuple[dict[str, Any], list[AlertRow], Counter[tuple[str, str]]]:
    topics, extra = await _topics(envs[0], rules, tag)
    seconds = args.warm_s + args.stop_s + args.after_s
    frames = int(args.rate * seconds)
    producer = bench_producer(envs[0].kafka)
    await producer.start()
    began = time.monotonic()
    try:
        messages = steady_frames(args.devices, args.rate, seconds, start_ms)
        await produce_messages(producer, topics, messages, max_frames=frames)
    finally:
        await producer.stop()
    progress("reference preload", frames, frames, began)
    async with sharded_service(envs, topics, args.workers, tag, extra_env=extra) as run:
        offsets = Offsets(envs[0].kafka, run.topics.values())
        await offsets.start()
        try:
            end = await offsets.end()
        finally:
            await offsets.stop()
        watch = Watch(run, "reference drain")
        took = await watch.until(end)
        out = {"drain_frames_per_s": round((end - watch.first_n) / took)}
        alerts = await _alert_rows(run)
        published = await _published(envs[0].kafka, extra["NEV_KAFKA_TOPIC_ALERTS"])
    return out, alerts, published


def _by_type(published: Counter[tuple[str, str]]) -> Counter[str]:
    out: Counter[str] = Counter()
    for (_, kind), n in published.items():
        out[kind] += n
    return out


def _once(published: Counter[tuple[str, str]]) -> set[tuple[str, str]]:
    return {(key, kind) for key, kind in published if kind in ("raised", "cleared")}


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    env = await BenchEnv.create(partitions=12)
    try:
        return await _measure(env, args)
    finally:
        await env.close()  # the run's topics and databases, after a failure too


async def _measure(env: BenchEnv, args: argparse.Namespace) -> dict[str, Any]:
    envs = await shard_envs(env, args.shards)
    run_id = uuid.uuid4().hex[:8]
    rules = _rules_file()
    start_ms = time.time_ns() // 1_000_000 + 10_000  # past the service's start-up
    out: dict[str, Any] = {
        "benchmark": "catchup",
        "devices": args.devices,
        "shards": args.shards,
        "workers": args.workers,
        "machine": _machine(),
        "loadavg_1m_start": os.getloadavg()[0],
    }
    res, alerts, published = await _catchup_run(envs, args, rules, f"{run_id}a", start_ms)
    out["catchup"] = res
    out["loadavg_1m_after_catchup"] = os.getloadavg()[0]
    ref, ref_alerts, ref_published = await _reference_run(envs, args, rules, f"{run_id}b", start_ms)
    out["reference"] = ref
    by_rule = Counter(rule for _, rule, _, _ in alerts)
    out["alerts"] = {
        "catchup_run": len(alerts),
        "reference_run": len(ref_alerts),
        "per_rule": dict(by_rule),
        "same_as_reference": alerts == ref_alerts,
        "only_in_catchup_run": len(set(alerts) - set(ref_alerts)),
        "only_in_reference_run": len(set(ref_alerts) - set(alerts)),
        "changes_published": dict(_by_type(published)),
        "changes_published_reference": dict(_by_type(ref_published)),
        # an alert is raised once and cleared once: a second message is a duplicate ("updated"
        # is sent per batch that changed the alert, so its count depends on batching)
        "raised_or_cleared_published_twice": sorted(
            f"{key} {kind} x{n}"
            for (key, kind), n in published.items()
            if n > 1 and kind in ("raised", "cleared")
        ),
        "raised_cleared_same_as_reference": _once(published) == _once(ref_published),
    }
    out["loadavg_1m_end"] = os.getloadavg()[0]
    out["command"] = " ".join(["python -m loadtest.catchup", *sys.argv[1:]])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="catchup", description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=5000.0, help="steady frames/s")
    p.add_argument("--devices", type=int, default=20_000, help="vehicles")
    p.add_argument("--warm-s", type=float, default=60.0, help="steady load before the stop")
    p.add_argument("--stop-s", type=float, default=120.0, help="how long the service is down")
    p.add_argument("--after-s", type=float, default=120.0, help="load after the restart")
    p.add_argument("--shards", type=int, default=1)
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args(argv)
    return print_result(_bench(args))


if __name__ == "__main__":
    sys.exit(main())
