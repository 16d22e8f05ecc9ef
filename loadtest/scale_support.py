"""What the scale runs share: the whole service over N shard clusters of the dev stack, the one
loop that watches it (stored offsets, RSS and CPU per worker, progress), paced production with
lag sampling, and the latency histogram.

``scale_shards``, ``scale_devices`` and ``catchup`` are built from these; the topics, the
preload and the service process are ``bench_support``'s.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaTimeoutError

from devtools.sim.fleet import Message
from devtools.sim.promtext import histogram_quantile, parse_histogram
from loadtest.bench_support import (
    SCHEMA,
    BenchEnv,
    _children,
    _cpu_s,
    _rss_mb,
    _Service,
    _stored,
    progress,
    service_topics,
)
from loadtest.clients import bench_producer
from loadtest.feeder import feed

__all__ = [
    "Offsets",
    "ShardedService",
    "Watch",
    "latency",
    "paced",
    "shard_envs",
    "sharded_service",
]


async def shard_envs(env: BenchEnv, count: int) -> list[BenchEnv]:
    """A BenchEnv per shard cluster of the dev stack (shard 0 is ``env`` itself)."""
    from devtools.devstack import Paths, StackState
    from devtools.devstack.stack import shard_services
    from devtools.settings import load_dev_settings

    state = StackState.load(Paths.from_settings(load_dev_settings()).state_dir)
    names = shard_services(state)
    if len(names) < count:
        raise SystemExit(
            f"scale: the dev stack has {len(names)} shard(s); "
            f"start it with: nev-ingest devstack up --shards {count}"
        )
    out = [env]
    for name in names[1:count]:
        dsn = state.services[name].url
        out.append(BenchEnv(env.settings, env.kafka, dsn.rsplit("/", 1)[0] + "/postgres", []))
    return out


class Offsets:
    """End offsets of the raw topics, from one long-lived client (a sample costs one request)."""

    def __init__(self, kafka: str, topics: Iterable[str]) -> None:
        self.topics = list(topics)
        self._consumer = AIOKafkaConsumer(bootstrap_servers=kafka)
        self._tps: list[TopicPartition] = []
        self._last = 0
        self.timeouts = 0

    async def start(self) -> None:
        await self._consumer.start()
        await self._consumer._client.force_metadata_update()
        for name in self.topics:
            parts = self._consumer.partitions_for_topic(name) or set()
            self._tps += [TopicPartition(name, p) for p in sorted(parts)]

    async def end(self) -> int:
        """The sum of the end offsets; the last answer again when the broker is slow to give
        one (the shared machine's Kafka can take longer than the request timeout)."""
        while True:
            try:
                self._last = sum((await self._consumer.end_offsets(self._tps)).values())
            except KafkaTimeoutError:
                self.timeouts += 1
                if not self._last:
                    continue  # no answer yet to stand in: ask again
            return self._last

    async def stop(self) -> None:
        await self._consumer.stop()


@dataclass
class ShardedService:
    """``nev-ingest run --workers W`` over fresh migrated databases on N shard clusters."""

    envs: list[BenchEnv]
    dsns: list[str]
    topics: dict[str, str]
    group: str
    workers: int
    extra_env: dict[str, str] = field(default_factory=dict)
    svc: _Service | None = None

    def start(self) -> None:
        """(Re)start the service: same databases, same consumer group."""
        # _Service copies os.environ: the shard list reaches the service as a setting would.
        saved = dict(os.environ)
        os.environ["NEV_STORAGE_SHARDS"] = ",".join(self.dsns) if len(self.dsns) > 1 else ""
        os.environ.update(self.extra_env)
        try:
            self.svc = _Service(self.envs[0], self.topics, self.dsns[0], self.group, self.workers)
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def stop(self) -> None:
        if self.svc is not None:
            self.svc.stop()
            self.svc = None

    async def stored(self) -> int:
        """Frames committed: the offsets stored on every shard for the group's raw topics."""
        names = list(self.topics.values())
        return sum([await _stored(dsn, self.group, names) for dsn in self.dsns])

    def pids(self) -> list[int]:
        return _children(self.svc.proc.pid) if self.svc is not None else []

    def scrape(self) -> str:
        return self.svc.scrape() if self.svc is not None else ""

    async def count(self, sql: str) -> list[int]:
        """``sql`` (one number, ``{s}`` for the schema) on each shard."""
        out = []
        for dsn in self.dsns:
            conn = await asyncpg.connect(dsn)
            try:
                out.append(int(await conn.fetchval(sql.format(s=SCHEMA))))
            finally:
                await conn.close()
        return out


@asynccontextmanager
async def sharded_service(
    envs: list[BenchEnv],
    topics: dict[str, str],
    workers: int,
    tag: str,
    *,
    extra_env: dict[str, str] | None = None,
    start: bool = True,
) -> AsyncIterator[ShardedService]:
    """A started ``ShardedService``; stopped and its databases dropped on leaving."""
    dsns = [await e.fresh_database(f"{tag}_s{i}") for i, e in enumerate(envs)]
    run = ShardedService(
        envs,
        dsns,
        await service_topics(envs[0], topics),
        f"scale-{tag}",
        workers,
        dict(extra_env or {}),
    )
    try:
        if start:
            run.start()
        yield run
    finally:
        run.stop()
        for e, dsn in zip(envs, dsns, strict=True):
            await e.drop(dsn)


@dataclass
class Watch:
    """Samples of one service run: stored frames, per-worker RSS (max) and CPU, and lag."""

    run: ShardedService
    label: str
    rss: dict[int, float] = field(default_factory=dict)
    cpu_first: dict[int, float] = field(default_factory=dict)
    cpu_last: dict[int, float] = field(default_factory=dict)
    lags: list[int] = field(default_factory=list)
    first_at: float = 0.0
    first_n: int = 0
    last_n: int = 0
    _printed: float = 0.0

    async def sample(self, end: int | None = None) -> int:
        """One sample; returns the frames stored. ``end``: the topics' end offsets now (lag)."""
        n = await self.run.stored()
        now = time.monotonic()
        for pid in self.run.pids():
            self.rss[pid] = max(self.rss.get(pid, 0.0), _rss_mb(pid))
            self.cpu_last[pid] = _cpu_s(pid)
            if self.first_at:
                self.cpu_first.setdefault(pid, self.cpu_last[pid])
        if n and not self.first_at:
            self.first_at, self.first_n = now, n
            self.cpu_first = dict(self.cpu_last)
        if end is not None:
            self.lags.append(max(0, end - n))
        if self.first_at and now - self.first_at >= 1 and now - self._printed >= 5:
            progress(self.label, n - self.first_n, (end or n) - self.first_n, self.first_at)
            self._printed = now
        if self.run.svc is not None and self.run.svc.proc.poll() is not None:
            raise SystemExit(f"scale: the service exited ({self.run.svc.proc.returncode})")
        self.last_n = n
        return n

    async def until(self, end: int, *, timeout_s: float = 3600) -> float:
        """Sample until ``end`` frames are stored; seconds from the first commit."""
        deadline = time.monotonic() + timeout_s
        while await self.sample(end) < end:
            if time.monotonic() > deadline:
                raise SystemExit(f"scale: {self.label}: {self.last_n:,}/{end:,} after {timeout_s}s")
            await asyncio.sleep(0.2)
        return time.monotonic() - self.first_at

    def figures(self, frames: int, seconds: float) -> dict[str, Any]:
        cpu = sum(self.cpu_last[p] - self.cpu_first.get(p, 0.0) for p in self.cpu_last)
        workers = max(1, self.run.workers)
        return {
            "frames_per_s": round(frames / max(seconds, 1e-9)),
            "seconds": round(seconds, 2),
            "rss_mb_per_worker": sorted(round(v, 1) for v in self.rss.values()),
            "cpu_us_per_frame": round(cpu / max(frames, 1) * 1e6, 1),
            "cpu_busy": round(cpu / max(seconds * workers, 1e-9), 2),
        }


async def paced(
    env: BenchEnv,
    topics: dict[str, str],
    messages: Iterable[Message],
    *,
    rate: float,
    max_frames: int,
    watch: Watch | None = None,
    offsets: Offsets | None = None,
    every_s: float = 1.0,
    on_sample: Callable[[int, int], Awaitable[None]] | None = None,
    figures: dict[str, Any] | None = None,
    on_start: Callable[[], None] | None = None,
) -> int:
    """Produce ``messages`` at ``rate`` frames/s (``received_at`` = send time) by
    ``loadtest.feeder`` (frames built before the clock) while ``watch`` samples stored frames
    and lag every ``every_s`` (and calls ``on_sample(stored, end)``); returns the frames sent
    and puts the feed's figures (``FeedResult.as_dict``: achieved rate, CPU per frame) into
    ``figures`` (its CPU is the process's while it ran, so it includes ``watch``'s samples).
    ``on_start()``: the frames are built, the clock starts."""
    producer = bench_producer(env.kafka)
    await producer.start()
    sent = [0]

    def count(frames: int) -> None:
        sent[0] = frames

    try:
        sending = asyncio.create_task(
            feed(
                producer,
                topics,
                messages,
                rate=rate,
                max_frames=max_frames,
                sent=count,
                on_start=on_start,
            )
        )
        while not sending.done():
            if watch is not None and offsets is not None:
                # Frames handed to the producer (acks=all, sent within one slice): the end
                # offsets without asking the broker, whose answers time out on a busy machine.
                end = sent[0]
                n = await watch.sample(end)
                if on_sample is not None:
                    await on_sample(n, end)
            await asyncio.wait({sending}, timeout=every_s)
        result = await sending
    finally:
        await producer.stop()
    if figures is not None:
        figures.update(result.as_dict())
    return result.frames


def latency(text: str) -> dict[str, float | None]:
    """p50/p99 received_at -> committed of the service's histogram (all workers summed)."""
    hist = parse_histogram(text)
    return {
        "frames_in_histogram": hist.get("count", 0.0),
        "p50_latency_s": histogram_quantile(hist, 0.50),
        "p99_latency_s": histogram_quantile(hist, 0.99),
    }
