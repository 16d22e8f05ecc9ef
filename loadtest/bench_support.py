"""The pieces of ``bench_pipeline``: services, preload, ceilings, service runs, histograms."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from devtools.devstack.kafka import delete_topics, ensure_topics
from devtools.devstack.process import free_port
from devtools.loadgen import produce_messages
from devtools.settings import load_dev_settings
from devtools.sim import promtext
from devtools.sim.bench_frames import KINDS, frames_of_kind, realtime_frames
from devtools.sim.fleet import Message
from devtools.sim.promtext import fetch, parse_histogram
from ingest.config import Settings
from ingest.config.kafka_settings import RAW_SOURCES
from loadtest.bench_copy import copy_rows
from loadtest.clients import bench_producer, fresh_consumer
from loadtest.db_activity import Activity
from loadtest.db_cpu import HostIdle, ServerCpu, children, cpu_seconds
from loadtest.feeder import FeedResult, feed

__all__ = [
    "CPU_US",
    "BenchEnv",
    "PipelineRun",
    "consume_ceiling",
    "copy_ceiling",
    "kind_topics",
    "preload_kind",
    "preload_kinds",
    "print_result",
    "run_pipeline",
    "steady_state",
]

SCHEMA = "nev"
# CPU microseconds per frame of the ceilings, filled by them (the benchmark reports it): the
# client's parts, and "copy_db", the database server's over the COPY ceiling (absent when the
# server is not on this host: loadtest.db_cpu).
CPU_US: dict[str, float] = {}


def progress(phase: str, done: int, total: int, started: float) -> None:
    took = max(time.monotonic() - started, 1e-9)
    sys.stderr.write(
        f"bench: {phase}: {done:,}/{total:,} frames, {done / took:,.0f} frames/s, {took:.1f}s\n"
    )
    sys.stderr.flush()


@dataclass
class BenchEnv:
    """The dev stack of a benchmark run; ``close`` deletes the topics ``make_topics`` created
    and drops the databases ``fresh_database`` made."""

    settings: Settings
    kafka: str
    maintenance_dsn: str
    databases: list[str]
    topics: list[str] = field(default_factory=list)

    @classmethod
    async def create(cls, *, partitions: int) -> BenchEnv:
        from devtools.devstack import Paths, StackState

        settings = load_dev_settings()
        kafka, dsn = settings.kafka.bootstrap_servers, settings.postgres.dsn
        if "NEV_KAFKA_BOOTSTRAP_SERVERS" not in os.environ:
            state = StackState.load(Paths.from_settings(settings).state_dir)
            if state.running("kafka") is None or state.running("postgres") is None:
                raise SystemExit("bench: start the dev stack first: nev-ingest devstack up")
            kafka = state.services["kafka"].url
            dsn = state.services["postgres"].url
        parts = urlsplit(dsn)
        return cls(settings, kafka, urlunsplit(parts._replace(path="/postgres")), [])

    def dsn_of(self, database: str) -> str:
        return urlunsplit(urlsplit(self.maintenance_dsn)._replace(path=f"/{database}"))

    async def fresh_database(self, tag: str) -> str:
        """A new migrated database; returns its DSN."""
        from storage.migrate import migrate
        from storage.params import StorageParams

        name = f"bench_{tag}"
        conn = await asyncpg.connect(self.maintenance_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        self.databases.append(name)
        conn = await asyncpg.connect(self.dsn_of(name))
        try:
            await migrate(conn, StorageParams())
        finally:
            await conn.close()
        return self.dsn_of(name)

    async def drop(self, dsn: str) -> None:
        name = urlsplit(dsn).path.lstrip("/")
        conn = await asyncpg.connect(self.maintenance_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    async def make_topics(self, sizes: dict[str, int]) -> None:
        """Create the topics of ``sizes`` (name: partitions) that do not exist; ``close``
        deletes them. Recorded first: a creation that fails half-way leaves none behind."""
        self.topics += [name for name in sizes if name not in self.topics]
        await ensure_topics(self.kafka, sizes, replication_factor=1)

    async def close(self) -> None:
        """Delete the run's topics and drop its databases; call it once the run's services
        have stopped (a service whose topic vanishes logs errors). Left behind, benchmark
        topics (12 partitions each) filled the dev broker until it ran out of open files; a
        failed delete is reported, not raised, so it does not hide the run's own error."""
        made = set(self.topics)
        try:
            await delete_topics(self.kafka, made.__contains__)
            self.topics.clear()
        except Exception as exc:  # reported below; the databases are still dropped
            sys.stderr.write(
                f"bench: could not delete the run's {len(made)} topics at {self.kafka}: {exc};"
                " `nev-ingest devstack prune-topics` deletes what tests and benchmarks left\n"
            )
        for name in self.databases:
            await self.drop(self.dsn_of(name))


def _messages(pairs: Any, role: str = "vehicle") -> Any:
    for key, value in pairs:
        yield Message(0, key, value, "realtime", role)


def kind_topics(base: str) -> dict[str, str]:
    """A fresh topic for each raw topic setting of the service (``kafka.topic_<role>``,
    ``RAW_SOURCES``): the run's kinds carry frames, the others stay empty, so the service reads
    nothing but the benchmark's records."""
    return {role: f"{base}.{role}" for role in RAW_SOURCES}


async def service_topics(env: BenchEnv, topic: str | dict[str, str]) -> dict[str, str]:
    """Every raw topic setting of a benchmark's service. ``nev-ingest run`` subscribes all four
    and stops when one is missing; a one-topic benchmark (vehicle frames) gets empty topics of
    its own for the others, never the dev stack's default ones (a demo's records there would
    be consumed and counted)."""
    if isinstance(topic, dict):
        return topic
    empty = {role: f"{topic}.{role}" for role in RAW_SOURCES if role != "vehicle"}
    await env.make_topics({t: 1 for t in empty.values()})
    return {"vehicle": topic, **empty}


def preload_kinds(kind: str) -> tuple[str, ...]:
    return KINDS if kind == "mixed" else (kind,)


async def preload_kind(
    env: BenchEnv, topics: dict[str, str], kind: str, devices: int, per_device: int
) -> float:
    """Create the topics and fill those of ``kind`` (``mixed``: a third of the devices of each
    kind, interleaved); returns the produce rate (frames/s)."""
    await env.make_topics({t: 12 for t in topics.values()})
    kinds = preload_kinds(kind)
    share = max(1, devices // len(kinds))
    start_ms = time.time_ns() // 1_000_000 - per_device * 10_000
    streams = [_messages(frames_of_kind(k, share, per_device, start_ms=start_ms), k) for k in kinds]
    producer = bench_producer(env.kafka)
    await producer.start()
    started = time.monotonic()
    try:
        mixed = (m for group in zip(*streams, strict=True) for m in group)
        result = await produce_messages(producer, topics, mixed, progress=None)
    finally:
        await producer.stop()
    progress("preload", result.frames, share * per_device * len(kinds), started)
    return result.frames / (time.monotonic() - started)


async def consume_ceiling(env: BenchEnv, topic: str | list[str], total: int) -> float:
    """Raw aiokafka consumption of the whole topic(s) in a fresh group (frames/s)."""
    consumer = fresh_consumer(env.kafka, topic, "bench-raw", fetch_max_bytes=32 * 1024 * 1024)
    await consumer.start()
    n, started, cpu0 = 0, 0.0, 0.0
    try:
        while n < total:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            if batch and not started:
                started, cpu0 = time.monotonic(), time.process_time()
            n += sum(len(records) for records in batch.values())
    finally:
        await consumer.stop()
    took = time.monotonic() - started
    CPU_US["consume"] = (time.process_time() - cpu0) / n * 1e6
    progress("ceiling consume", n, total, started)
    return n / took


async def copy_ceiling(env: BenchEnv, topic: str, total: int, tag: str) -> float:
    """Raw binary COPY of the same rows into the same tables (frames/s of COPY time only)."""
    dsn = await env.fresh_database(f"{tag}_copy")
    server = await ServerCpu.locate(dsn)
    try:
        db0 = server.seconds() if server else 0.0
        rate = await copy_rows(env, topic, total, dsn, progress, CPU_US)
        if server:
            CPU_US["copy_db"] = (server.seconds() - db0) / total * 1e6
        return rate
    finally:
        await env.drop(dsn)


# A poll's readings where the measured span may start: (time, frames stored, CPU seconds per
# worker pid, "assignment" or "idle poll", (the server's CPU seconds, the host's idle))
# (server CPU s, host idle, the workers' waits by cause) at a poll: the state beside the
# workers' CPU a span's figures are differences of
_Outside = tuple[float, HostIdle, dict[str, float]]
_Mark = tuple[float, int, dict[int, float], str, _Outside]


@dataclass
class PipelineRun:
    rate: float
    seconds: float
    rss_mb: list[float]
    cpu_us_per_frame: float  # all workers' CPU time over the measured span, per frame
    cpu_busy: float  # that CPU time over (wall time x workers): 1.0 = CPU-bound
    # the database server's CPU over the span per frame, and the host's idle cores on average
    # (loadtest.db_cpu; None when the server is not on this host)
    db_cpu_us_per_frame: float | None
    host_idle_cores: float
    db_activity: dict[str, Any] | None = None  # loadtest.db_activity, when asked for
    rebalances: int = 0  # assignments that started the measured span again (run_pipeline)
    span_start: str = ""  # "idle poll" or "assignment" (run_pipeline)
    # the rate from the span's first commit on, as measured before 2026-12-06 (comparisons)
    rate_from_first_commit: float = 0.0
    # seconds the workers' consume loops waited idle over the span, by cause (summed over
    # the workers; nev_ingest_worker_wait_seconds_total), and that over (span x workers)
    wait_s: dict[str, float] = field(default_factory=dict)
    wait_share: dict[str, float] = field(default_factory=dict)


def _children(pid: int) -> list[int]:
    out = []
    for child in children(pid) or []:
        try:
            cmd = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"resource_tracker" not in cmd:
            out.append(int(child))
    return out


_cpu_s = cpu_seconds  # scale_support's name for it


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class _Service:
    def __init__(
        self, env: BenchEnv, roles: dict[str, str], dsn: str, group: str, workers: int
    ) -> None:
        self.port = free_port()
        environ = dict(os.environ)  # NEV_PIPELINE_* etc. pass through; the rest is set here
        environ.update(
            NEV_KAFKA_BOOTSTRAP_SERVERS=env.kafka,
            NEV_POSTGRES_DSN=dsn,
            NEV_KAFKA_GROUP_ID=group,
            NEV_METRICS_PORT=str(self.port),
            NEV_LOG_LEVEL="WARNING",
        )
        for role, name in roles.items():
            environ[f"NEV_KAFKA_TOPIC_{role.upper()}"] = name
        self.log = tempfile.NamedTemporaryFile(prefix="bench-run-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ingest", "run", "--workers", str(workers)],
            env=environ,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def scrape(self) -> str:
        return fetch(self.port)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(120)
        self.log.close()
        os.unlink(self.log.name)


async def _stored(dsn: str, group: str, topic: str | list[str]) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await _stored_on(conn, group, topic)
    finally:
        await conn.close()


async def _stored_on(conn: asyncpg.Connection, group: str, topic: str | list[str]) -> int:
    """The offsets ``group`` stored for ``topic`` (summed), on an open connection."""
    value = await conn.fetchval(
        f"SELECT coalesce(sum(next_offset), 0) FROM {SCHEMA}.consumer_offsets "
        "WHERE consumer_group = $1 AND topic = ANY($2)",
        group,
        [topic] if isinstance(topic, str) else topic,
    )
    return int(value)


async def _end_total(kafka: str, topic: str | list[str]) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka)
    await consumer.start()
    try:
        # A consumer without a subscription knows no topic until it asks for all of them.
        await consumer._client.force_metadata_update()
        total = 0
        for name in [topic] if isinstance(topic, str) else topic:
            parts = consumer.partitions_for_topic(name) or set()
            if not parts:
                raise SystemExit(f"bench: topic {name} has no partitions")
            ends = await consumer.end_offsets([TopicPartition(name, p) for p in parts])
            total += sum(ends.values())
        return total
    finally:
        await consumer.stop()


ASSIGNED = "nev_ingest_rebalances_total"  # {event="assigned"}: one per worker per assignment
# Fetched, not yet committed (all workers): set at every change of the count (the worker's
# Backpressure), so a poll sees the first fetch when it happens.
IN_FLIGHT = "nev_ingest_in_flight_frames"
# The consume loops' idle waits by cause (poll, room, lane, restore), each counted when the
# wait ends: a span's difference misses or adds at most the wait under way at either end (a
# wait for room lasts at most pipeline.pause_after_s, a poll 0.5 s, except a poll held by a
# rebalance: up to the session timeout).
WAITS = "nev_ingest_worker_wait_seconds_total"
REBALANCE_S = 2.0  # assignments closer together than this are one rebalance's members
START_POLL_S = 0.05  # the poll until the span starts: its start is known to within one


async def _scrape(port: int) -> tuple[int, float | None, dict[str, float] | None]:
    """The service's assignments so far, its frames in flight and its workers' waits by cause
    (0, None and None while it does not serve its metrics); the scrape runs in a thread, so
    the database sampler's 10 ms ticks go on."""
    try:
        text = await asyncio.to_thread(fetch, port)
    except Exception:  # a scrape cut short (http.client.IncompleteRead): seen next poll
        return 0, None, None
    samples = promtext.parse_samples(text)
    in_flight = promtext.total(samples, IN_FLIGHT) if promtext.exposed(samples, IN_FLIGHT) else None
    waits = promtext.by_label(samples, WAITS, "cause") or None
    return int(promtext.total(samples, ASSIGNED, event="assigned")), in_flight, waits


async def run_pipeline(
    env: BenchEnv,
    topic: str | dict[str, str],
    total: int,
    *,
    workers: int,
    tag: str,
    db_activity: bool = False,
) -> PipelineRun:
    """``nev-ingest run --workers N`` over the preloaded topic (or the topic of each kind);
    rate and CPU from the workers' first fetch after the last assignment to the end offsets
    stored. ``db_activity``: also sample what the database does from the poll that sees the
    first fetch on (loadtest.db_activity).

    The span starts at the last poll (every ``START_POLL_S``) that saw no frame in flight
    before one was: what the workers fetch and decode before their first commit (up to
    ``pipeline.max_in_flight_frames``) is in it. It started at the first commit until
    2026-12-06, which left that work out: 1.9-5.4 % more frames/s in ten drains
    (docs/performance.md, "Fourth pass"); ``rate_from_first_commit`` keeps that figure for
    comparisons. If no poll saw nothing in flight since the assignment, the span starts at
    the assignment (``span_start`` says which).

    Of N > 1 workers the first to join the group takes every partition and starts (the dev
    broker's ``group.initial.rebalance.delay.ms`` is 0); the others join a moment later and the
    group rebalances, before the first fetch or inside the drain. Inside it, the new owners
    restore their partitions' alert state first (the replay, ``alerts.replay``), and 2 workers
    drained at ~21,000-23,000 frames/s against ~39,000-51,000 without (docs/performance.md).
    So an assignment seen during the drain starts its span again, at the first fetch after
    it: that can be one new owner's while another still restores, so such a figure measures
    the rebalance too. ``rebalances`` counts them (since the span starts at the first fetch,
    a start-up rebalance more than ``REBALANCE_S`` after it counts too): read the rate with
    it."""
    dsn = await env.fresh_database(tag)
    activity = Activity(env.maintenance_dsn, urlsplit(dsn).path.lstrip("/"))
    sampled: dict[str, Any] | None = None
    group = f"bench-{tag}"
    names = [topic] if isinstance(topic, str) else list(topic.values())
    end = await _end_total(env.kafka, names)
    svc = _Service(env, await service_topics(env, topic), dsn, group, workers)
    rss: dict[int, float] = {}
    cpu_first: dict[int, float] = {}
    cpu_last: dict[int, float] = {}
    first_at, first_n, last_print = 0.0, 0, 0.0
    assignments = restarts = 0
    assigned_at = float("-inf")
    # (time, stored frames, CPU per worker, span_start) at the assignment and at the last
    # poll since it that saw nothing in flight: where the span starts once the workers fetch
    at_assignment: _Mark | None = None
    idle_since: _Mark | None = None
    server = await ServerCpu.locate(dsn)
    waits: dict[str, float] = {}  # the last scrape's that had them
    outside: _Outside = (0.0, HostIdle.now(), waits)
    outside_first = outside
    span_start = ""
    committed_at, committed_n = 0.0, 0  # the span's first poll that saw a commit
    # One connection for the run's polls: a new one each poll (a backend started, ~4 ms of
    # the server's CPU) would count as the database's work per frame.
    polls = await asyncpg.connect(dsn)
    try:
        while True:
            n = await _stored_on(polls, group, names)
            now = time.monotonic()
            seen, in_flight, scraped = await _scrape(svc.port)
            waits = scraped or waits
            outside = (server.seconds() if server else 0.0, HostIdle.now(), waits)
            for pid in _children(svc.proc.pid):
                rss[pid] = max(rss.get(pid, 0.0), _rss_mb(pid))
                cpu_last[pid] = _cpu_s(pid)
                if first_at:
                    cpu_first.setdefault(pid, cpu_last[pid])
            if seen > assignments and n < end:
                assignments = seen
                if first_at:  # a rebalance within the span: it starts again after it
                    if now - assigned_at > REBALANCE_S:  # each member counts its own
                        restarts += 1
                    first_at = committed_at = 0.0
                    if db_activity:
                        await activity.stop()
                        activity = Activity(env.maintenance_dsn, urlsplit(dsn).path.lstrip("/"))
                assigned_at = now
                at_assignment = (now, n, dict(cpu_last), "assignment", outside)
                idle_since = None
            elif not first_at and at_assignment is not None and in_flight is not None:
                if in_flight == 0:
                    idle_since = (now, n, dict(cpu_last), "idle poll", outside)
                else:  # fetched since the last poll (or, without an idle poll, since assigned)
                    mark = idle_since or at_assignment
                    first_at, first_n, cpu_first, span_start, outside_first = mark
                    if db_activity:
                        await activity.start()
            if first_at and not committed_at and n > first_n:
                committed_at, committed_n = now, n
            if now - last_print >= 2 and first_at:
                progress(f"pipeline {workers}w", n - first_n, end - first_n, first_at)
                last_print = now
            if n >= end:
                if not first_at:  # fetched and committed between two polls
                    start = idle_since or at_assignment
                    if start is None:
                        raise SystemExit("bench: the drain ended before any assignment was seen")
                    first_at, first_n, cpu_first, span_start, outside_first = start
                break
            if svc.proc.poll() is not None:
                raise SystemExit(f"bench: the service exited ({svc.proc.returncode})")
            await asyncio.sleep(0.2 if first_at else START_POLL_S)
        finished = time.monotonic()
        took = finished - first_at
    finally:
        await polls.close()
        if db_activity:
            sampled = await activity.stop()  # stopped even when the service failed
        svc.stop()
        await env.drop(dsn)
    cpu = sum(cpu_last[pid] - cpu_first.get(pid, 0.0) for pid in cpu_last)
    frames = max(1, end - first_n)
    db_cpu = outside[0] - outside_first[0]
    waited = {c: round(v - outside_first[2].get(c, 0.0), 2) for c, v in sorted(outside[2].items())}
    return PipelineRun(
        (end - first_n) / took,
        took,
        sorted(round(v, 1) for v in rss.values()),
        cpu_us_per_frame=round(cpu / frames * 1e6, 1),
        cpu_busy=round(cpu / (took * workers), 2),
        db_cpu_us_per_frame=round(db_cpu / frames * 1e6, 1) if server else None,
        host_idle_cores=round(outside[1].cores_since(outside_first[1], took), 2),
        db_activity=sampled,
        rebalances=restarts,
        span_start=span_start,
        rate_from_first_commit=(end - committed_n) / (finished - committed_at)
        if 0 < committed_at < finished
        else 0.0,
        wait_s=waited,
        wait_share={c: round(v / (took * workers), 3) for c, v in waited.items()},
    )


async def steady_state(
    env: BenchEnv, topic: str, *, rate: float, seconds: float
) -> tuple[dict[str, float], FeedResult]:
    """One worker fed at ``rate`` frames/s for ``seconds`` by ``loadtest.feeder`` (frames built
    before the clock); the latency histogram afterwards, and what the feed achieved and cost."""
    await env.make_topics({topic: 12})
    dsn = await env.fresh_database(f"steady_{uuid.uuid4().hex[:6]}")
    group = f"bench-steady-{uuid.uuid4().hex[:6]}"
    svc = _Service(env, await service_topics(env, topic), dsn, group, 1)
    total = int(rate * seconds)
    vehicles = 5000
    try:
        deadline = time.monotonic() + 60
        while "nev_ingest_worker_kafka_connected" not in svc.scrape():
            if time.monotonic() > deadline:
                raise SystemExit("bench: the service did not start within 60 s")
            await asyncio.sleep(0.2)
        producer = AIOKafkaProducer(bootstrap_servers=env.kafka, acks="all")
        await producer.start()
        start_ms = time.time_ns() // 1_000_000 - (total // vehicles + 1) * 10_000
        try:
            frames = realtime_frames(vehicles, total // vehicles + 1, start_ms=start_ms)
            fed = await feed(producer, topic, _messages(frames), rate=rate, max_frames=total)
        finally:
            await producer.stop()
        sys.stderr.write(
            f"bench: steady produce: {fed.frames:,}/{total:,} frames, "
            f"{fed.achieved:,.0f} frames/s (offered {rate:,.0f}), built in {fed.build_s:.1f}s, "
            f"feeder {fed.cpu_us_per_frame:.1f} µs CPU/frame\n"
        )
        end = await _end_total(env.kafka, topic)
        deadline = time.monotonic() + 300
        while await _stored(dsn, group, topic) < end:
            if time.monotonic() > deadline:
                raise SystemExit("bench: steady state did not catch up within 300 s")
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # let the lag/metrics tick publish the last observations
        return parse_histogram(svc.scrape()), fed
    finally:
        svc.stop()
        await env.drop(dsn)


def print_result(bench: Coroutine[Any, Any, dict[str, Any]]) -> int:
    """Run a benchmark's coroutine and print its result, with how long the benchmark took, as
    the last line of output (one JSON object); the exit status of ``main``."""
    started = time.monotonic()
    result = asyncio.run(bench)
    result["bench_seconds"] = round(time.monotonic() - started, 1)
    print(orjson.dumps(result).decode(), flush=True)
    return 0
