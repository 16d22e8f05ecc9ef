"""Fuzz the running service: good frames alone, then the same good frames with malformed records
of every kind (devtools.sim.malformed) interleaved, each through a fresh ``nev-ingest run``.

    python -m loadtest.fuzz_pipeline [--frames 200000] [--bad-ratio 0.25] [--devices 2000]
                                     [--huge 2] [--workers 1] [--seed 1]

Needs the dev stack (``nev-ingest devstack up``). Checks what the integration test checks
(tests/integration/test_pipeline_fuzz.py), at volume: no worker restart, every bad record
dead-lettered once per offset with one of its reasons, every good frame stored once; exit 1
when one of them fails. Reports the good frames' throughput without and with the bad records
(from the first stored offset to the last, the good share of the records); progress on stderr,
the last stdout line one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from devtools.devstack.process import free_port
from devtools.sim.bench_frames import realtime_frames
from devtools.sim.fleet import Message
from devtools.sim.malformed import BadRecord, bad_records
from devtools.sim.promtext import fetch
from ingest.config.kafka_settings import RAW_SOURCES
from loadtest.bench_support import BenchEnv, print_result, progress

# Under the dev broker's 8 MiB message.max.bytes (devtools/devstack/kafka.py), with room for
# the record's framing.
HUGE = 8 * 1024 * 1024 - 4096


@dataclass
class Topics:
    raw: dict[str, str]  # role -> topic
    dlq: str
    alerts: str

    @classmethod
    async def create(cls, env: BenchEnv, base: str, partitions: int) -> Topics:
        t = cls({role: f"{base}.{role}" for role in RAW_SOURCES}, f"{base}.dlq", f"{base}.alerts")
        sizes = {name: partitions for name in t.raw.values()}
        sizes.update({t.dlq: 1, t.alerts: 1})
        await env.make_topics(sizes)
        return t


async def _produce(
    kafka: str, topics: Topics, good: list[Message], bad: list[BadRecord]
) -> dict[tuple[str, int, int], BadRecord]:
    """Produce ``good`` with ``bad`` spread evenly among them; the bad records' coordinates."""
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka,
        acks="all",
        linger_ms=20,
        max_batch_size=512 * 1024,
        max_request_size=HUGE + 64 * 1024,
    )
    await producer.start()
    step = max(1, len(good) // max(1, len(bad)))
    started = time.monotonic()
    pending: list[tuple[BadRecord | None, str, asyncio.Future[Any]]] = []
    coords: dict[tuple[str, int, int], BadRecord] = {}
    received = str(time.time_ns() // 1_000_000).encode()

    async def drain() -> None:
        for b, topic, fut in pending:
            meta = await fut
            if b is not None:
                coords[(topic, meta.partition, meta.offset)] = b
        pending.clear()

    try:
        nbad = 0
        for i, m in enumerate(good):
            topic = topics.raw[m.topic]
            headers = [("received_at", received)]
            fut = await producer.send(topic, m.value, key=m.key, headers=headers)
            pending.append((None, topic, fut))
            if i % step == 0 and nbad < len(bad):
                b = bad[nbad]
                nbad += 1
                topic = topics.raw[b.role]
                fut = await producer.send(topic, b.value, key=b.key, headers=list(b.headers))
                pending.append((b, topic, fut))
            if len(pending) >= 5000:
                await drain()
                if i % 50_000 < 5000:
                    progress("produce", i, len(good), started)
        for b in bad[nbad:]:
            topic = topics.raw[b.role]
            fut = await producer.send(topic, b.value, key=b.key, headers=list(b.headers))
            pending.append((b, topic, fut))
        await drain()
    finally:
        await producer.stop()
    return coords


async def _end_total(kafka: str, names: list[str]) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        total = 0
        for name in names:
            parts = consumer.partitions_for_topic(name) or set()
            ends = await consumer.end_offsets([TopicPartition(name, p) for p in parts])
            total += sum(ends.values())
        return total
    finally:
        await consumer.stop()


async def _stored(dsn: str, group: str, names: list[str]) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        value = await conn.fetchval(
            "SELECT coalesce(sum(next_offset), 0) FROM nev.consumer_offsets "
            "WHERE consumer_group = $1 AND topic = ANY($2)",
            group,
            names,
        )
        return int(value)
    finally:
        await conn.close()


async def _rows(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM nev.vehicle_telemetry"))
    finally:
        await conn.close()


async def _dead_letters(kafka: str, topic: str, expect: int) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    out: list[Any] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                out.extend(records)
            if len(out) >= expect and not batch:
                break
    finally:
        await consumer.stop()
    return out


def _header(headers: Any, name: str) -> str:
    found = b""
    for key, value in headers:
        if key == name:
            found = value or b""
    return found.decode(errors="replace")


def _restarts(text: str) -> float:
    for line in text.splitlines():
        if line.startswith("nev_ingest_worker_restarts_total"):
            return float(line.split()[-1])
    return float("nan")


def _start(environ: dict[str, str], workers: int) -> tuple[Any, subprocess.Popen[bytes]]:
    """``nev-ingest run`` with ``environ``, its output to a temporary log file (kept on failure)."""
    log = tempfile.NamedTemporaryFile(prefix="fuzz-run-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest", "run", "--workers", str(workers)],
        env=environ,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return log, proc


async def _serve(
    env: BenchEnv, topics: Topics, tag: str, workers: int
) -> tuple[float, int, float, str]:
    """One ``nev-ingest run`` over ``topics`` until every offset is stored: (seconds from the
    first stored offset to the last, records counted over that span, worker restarts, dsn)."""
    dsn = await env.fresh_database(tag)
    group = f"fuzz-{tag}"
    names = list(topics.raw.values())
    end = await _end_total(env.kafka, names)
    port = free_port()
    environ = dict(os.environ)
    environ.update(
        NEV_KAFKA_BOOTSTRAP_SERVERS=env.kafka,
        NEV_POSTGRES_DSN=dsn,
        NEV_KAFKA_GROUP_ID=group,
        NEV_KAFKA_TOPIC_DLQ=topics.dlq,
        NEV_KAFKA_TOPIC_ALERTS=topics.alerts,
        NEV_METRICS_PORT=str(port),
        NEV_LOG_LEVEL="WARNING",
        **{f"NEV_KAFKA_TOPIC_{role.upper()}": name for role, name in topics.raw.items()},
    )
    log, proc = _start(environ, workers)
    first_at, first_n, last_print = 0.0, 0, 0.0
    try:
        while True:
            n = await _stored(dsn, group, names)
            now = time.monotonic()
            if n and not first_at:
                first_at, first_n = now, n
            if first_at and now - last_print >= 5:
                progress(f"pipeline {tag}", n, end, first_at)
                last_print = now
            if n >= end:
                break
            if proc.poll() is not None:
                raise SystemExit(f"fuzz: the service exited ({proc.returncode}); log {log.name}")
            await asyncio.sleep(0.2)
        took = time.monotonic() - first_at
        restarts = _restarts(fetch(port))
    finally:
        proc.terminate()
        proc.wait(120)
        log.close()
    if proc.returncode == 0:
        os.unlink(log.name)
    return took, end - first_n, restarts, dsn


async def _fuzz(args: argparse.Namespace) -> dict[str, Any]:
    env = await BenchEnv.create(partitions=args.partitions)
    try:
        return await _measure(env, args)
    finally:
        await env.close()  # the run's topics and databases, after a failure too


async def _measure(env: BenchEnv, args: argparse.Namespace) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    per_device = -(-args.frames // args.devices)
    start_ms = time.time_ns() // 1_000_000 - per_device * 10_000
    pairs = realtime_frames(args.devices, per_device, start_ms=start_ms)
    good = [Message(0, k, v, "realtime") for k, v in pairs][: args.frames]
    nbad = int(len(good) * args.bad_ratio)
    now = time.time_ns() // 1_000_000
    bad = bad_records(
        good[:5000], nbad, now_ms=now, seed=args.seed, huge_bytes=HUGE, huge_count=args.huge
    )
    if args.vehicle_topic_only:
        bad = [b for b in bad if b.role == "vehicle"]
    if args.kinds:
        kinds = set(args.kinds.split(","))
        bad = [b for b in bad if b.kind in kinds]
    out: dict[str, Any] = {
        "benchmark": "fuzz_pipeline",
        "good_frames": len(good),
        "bad_records": len(bad),
        "bad_by_kind": dict(Counter(b.kind for b in bad)),
        "workers": args.workers,
        "partitions": args.partitions,
    }
    ok = True
    for phase, with_bad in (("clean", []), ("mixed", bad)):
        topics = await Topics.create(env, f"fuzz.{run_id}.{phase}", args.partitions)
        started = time.monotonic()
        coords = await _produce(env.kafka, topics, good, with_bad)
        progress(f"produce {phase}", len(good) + len(with_bad), len(good) + len(with_bad), started)
        took, counted, restarts, dsn = await _serve(env, topics, f"{run_id}_{phase}", args.workers)
        share = len(good) / (len(good) + len(with_bad))
        out[f"{phase}_good_frames_per_s"] = round(counted * share / took)
        out[f"{phase}_records_per_s"] = round(counted / took)
        out[f"{phase}_seconds"] = round(took, 2)
        out[f"{phase}_worker_restarts"] = restarts
        rows = await _rows(dsn)
        out[f"{phase}_rows_stored"] = rows
        ok &= rows == len(good) and restarts == 0
        dead = await _dead_letters(env.kafka, topics.dlq, len(with_bad))
        got: dict[tuple[str, int, int], set[str]] = {}
        for d in dead:
            src = (
                _header(d.headers, "source.topic"),
                int(_header(d.headers, "source.partition") or -1),
                int(_header(d.headers, "source.offset") or -1),
            )
            got.setdefault(src, set()).add(_header(d.headers, "error.reason"))
        wrong = [
            f"{coords[s].kind if s in coords else 'good'}@{s}: {sorted(r)}"
            for s, r in got.items()
            if s not in coords or len(r) != 1 or not r <= coords[s].reasons
        ]
        missing = len(set(coords) - set(got))
        out[f"{phase}_dead_letters"] = len(dead)
        out[f"{phase}_dead_letters_wrong"] = wrong[:10]
        out[f"{phase}_bad_records_not_dead_lettered"] = missing
        out[f"{phase}_reasons"] = dict(Counter(_header(d.headers, "error.reason") for d in dead))
        ok &= not wrong and not missing
        await env.drop(dsn)
    out["mixed_vs_clean_good_frames"] = round(
        out["mixed_good_frames_per_s"] / max(1, out["clean_good_frames_per_s"]), 3
    )
    out["ok"] = ok
    out["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": [round(x, 1) for x in os.getloadavg()],
    }
    out["command"] = " ".join(["python -m loadtest.fuzz_pipeline", *sys.argv[1:]])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fuzz_pipeline", description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=200_000, help="good vehicle frames")
    p.add_argument("--bad-ratio", type=float, default=0.25, help="bad records per good frame")
    p.add_argument("--devices", type=int, default=2000)
    p.add_argument("--partitions", type=int, default=12)
    p.add_argument("--huge", type=int, default=2, help="records just under the broker's max")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--kinds", default="", help="only these kinds of bad records (comma-separated)")
    p.add_argument(
        "--vehicle-topic-only",
        action="store_true",
        help="only the bad records of the vehicle topic (the others add partitions to batches)",
    )
    args = p.parse_args(argv)
    result: dict[str, Any] = {}

    async def run() -> dict[str, Any]:
        result.update(await _fuzz(args))
        return result

    rc = print_result(run())
    return rc if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
