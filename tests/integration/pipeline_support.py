"""Helpers of the pipeline integration tests: a real ``nev-ingest run`` process, real Kafka and
PostgreSQL, and bounded polling of real state (never sleeps to wait).

Most tests run one service through the same frame: ``serving`` starts it and waits until it is
ready, and on leaving the block stops it and checks that it exited 0; ``produce_and_store``
produces frames and waits until every offset is stored. Tests that start services mid-run, or
stop one as their subject, use ``Service`` directly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypedDict, TypeVar

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from devtools.devstack.process import free_port
from devtools.loadgen import LoadResult, produce_messages
from devtools.sim import promtext
from devtools.sim.fleet import Message
from ingest.decoders.errors import FrameError
from ingest.decoders.fast import decode_rows
from ingest.pipeline.batch import Batch, BatchBuilder
from ingest.pipeline.process import decoders_for

T = TypeVar("T")

SCHEMA = "nev"

# A worker killed with kill -9 stays a member of the group until the broker has had no
# heartbeat from it for kafka.session_timeout_ms: until then the rebalance its successor's
# JoinGroup starts is held open and nobody gets its partitions (28 s after the kill in a CI run
# with the default 30 s). A kill -9 test runs the service with these settings (the heartbeat a
# third of it, as kafka_limits requires) and waits KILLED_SESSION_S on top of its catch-up.
KILLED_SESSION_MS: Final = 10_000
KILLED_SESSION_S: Final = KILLED_SESSION_MS / 1000


class _Session(TypedDict):  # typed keys: ``serving(..., **SHORT_SESSION)`` type-checks
    NEV_KAFKA_SESSION_TIMEOUT_MS: str
    NEV_KAFKA_HEARTBEAT_INTERVAL_MS: str


SHORT_SESSION: Final = _Session(
    NEV_KAFKA_SESSION_TIMEOUT_MS=str(KILLED_SESSION_MS),
    NEV_KAFKA_HEARTBEAT_INTERVAL_MS=str(KILLED_SESSION_MS // 3),
)


async def until(
    probe: Callable[[], Awaitable[T]], *, timeout_s: float, what: str, every_s: float = 0.1
) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout_s`` saying what."""
    deadline = time.monotonic() + timeout_s
    while True:
        last = await probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout_s}s waiting for {what} (last: {last!r})"
            )
        await asyncio.sleep(every_s)


@dataclass
class PipelineEnv:
    """One isolated pipeline: its own topics, database, consumer group and metrics port."""

    kafka: str
    dsn: str
    topic: str
    dlq: str
    alerts: str
    group: str
    tmp: Path
    extra: dict[str, str] = field(default_factory=dict)
    # The other raw topics (the service subscribes every one): chargers' frames, T/CEC 102
    # pushes, standalone packs. The defaults are the names of PrivateKafka's topics.
    charger: str = "chg"
    tcec: str = "tcec"
    battery: str = "bat"
    raw_partitions: int = 7  # of the four raw topics together (a worker alone owns them all)

    @property
    def raw_topics(self) -> tuple[str, ...]:
        return (self.topic, self.charger, self.tcec, self.battery)

    def environ(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEV_")}
        env.update(
            NEV_KAFKA_BOOTSTRAP_SERVERS=self.kafka,
            NEV_POSTGRES_DSN=self.dsn,
            NEV_KAFKA_TOPIC_VEHICLE=self.topic,
            NEV_KAFKA_TOPIC_CHARGER=self.charger,
            NEV_KAFKA_TOPIC_TCEC=self.tcec,
            NEV_KAFKA_TOPIC_BATTERY=self.battery,
            NEV_KAFKA_TOPIC_DLQ=self.dlq,
            NEV_KAFKA_TOPIC_ALERTS=self.alerts,
            NEV_KAFKA_GROUP_ID=self.group,
            NEV_LOG_LEVEL="INFO",
            NEV_PIPELINE_BATCH_LINGER_MS="100",
            NEV_PIPELINE_REVOKE_TIMEOUT_S="5",
            NEV_PIPELINE_RETRY_BACKOFF_MAX_S="1",
            NEV_PIPELINE_LAG_INTERVAL_S="0.5",
        )
        env.update(self.extra)
        env.update(overrides)
        return env


class Service:
    """A ``nev-ingest run`` process (supervisor + workers) writing its log to a file."""

    def __init__(
        self,
        env: PipelineEnv,
        name: str,
        workers: int = 1,
        *,
        args: tuple[str, ...] = (),
        **overrides: str,
    ) -> None:
        """``args``: more arguments of ``nev-ingest run`` (``--skip-checks`` for a service
        started while its database is away)."""
        self.port = free_port()
        self.log = env.tmp / f"{name}.log"
        environ = env.environ(NEV_METRICS_PORT=str(self.port), **overrides)
        self._log_file = self.log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ingest", "run", "--workers", str(workers), *args],
            env=environ,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    def logs(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_bytes().splitlines():
            try:
                out.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
        return out

    def tail(self, lines: int = 60) -> str:
        """The end of the service's log (for assertion messages)."""
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def worker_pids(self) -> list[int]:
        """Pids of the workers running now (from the supervisor's "worker started" lines)."""
        started = [
            r["worker_pid"]
            for r in self.logs()
            if "worker_pid" in r and r.get("msg") == "worker started"
        ]
        return [pid for pid in started if alive(pid)]

    def metrics(self) -> dict[str, float]:
        """``name{labels}`` -> value from /metrics (empty while not serving)."""
        return promtext.scrape(self.port)

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels`` (0.0 when the metric
        is exposed without such samples yet; AssertionError when it is not exposed at all)."""
        samples = self.metrics()
        if not promtext.exposed(samples, name):
            raise AssertionError(f"{name} is not on /metrics")
        return promtext.total(samples, name, **labels)

    def readyz(self) -> int:
        """/readyz's status (0: no answer)."""
        return self._readyz()[0]

    def readyz_body(self) -> dict[str, Any]:
        """/readyz's JSON body, the same on 200 and 503 ({} without an answer)."""
        body: dict[str, Any] = orjson.loads(self._readyz()[1] or b"{}")
        return body

    def _readyz(self) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=5) as resp:
                return int(resp.status), resp.read()
        except urllib.error.HTTPError as err:
            return int(err.code), err.read()
        except (urllib.error.URLError, OSError):
            return 0, b""

    def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM, wait for the exit; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        finally:
            self._log_file.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        for pid in self.worker_pids():
            os.kill(pid, signal.SIGKILL)
        self._log_file.close()


@asynccontextmanager
async def serving(
    env: PipelineEnv,
    name: str,
    *,
    workers: int = 1,
    ready_timeout_s: float = 60,
    tail_lines: int = 60,
    **overrides: str,
) -> AsyncIterator[Service]:
    """A ready ``nev-ingest run``; on leaving the block SIGTERM, and the exit code must be 0 (the
    log's tail says why not). The service stays readable (logs, metrics) after the block."""
    svc = Service(env, name, workers, args=(), **overrides)
    try:
        await until(
            lambda: ready(svc), timeout_s=ready_timeout_s, what=f"the service {name!r} to be ready"
        )
        yield svc
    finally:
        code = svc.stop()
        log_tail = svc.tail(tail_lines)
    assert code == 0, log_tail


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def produce(
    kafka: str, topic: str, messages: Iterable[Message], *, rate: float = 0.0
) -> LoadResult:
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        return await produce_messages(producer, topic, messages, rate=rate)
    finally:
        await producer.stop()


@dataclass
class Expected:
    """What the database and the DLQ must hold after the pipeline consumed ``messages``."""

    rows: Counter[tuple[str, int]] = field(default_factory=Counter)  # (vin, ts_ms) of 0x02/0x03
    sessions: int = 0
    bad: Counter[str] = field(default_factory=Counter)  # decoder reason -> count

    @classmethod
    def of(cls, messages: Iterable[Message]) -> Expected:
        exp = cls()
        for m in messages:
            try:
                rows = decode_rows(m.value)
            except FrameError as exc:
                exp.bad[exc.reason] += 1
                continue
            if rows.vehicle is not None and rows.ts_ms is not None:
                exp.rows[(rows.vin, rows.ts_ms)] += 1
            elif rows.session is not None:
                exp.sessions += 1
        return exp


async def migrate_database(dsn: str) -> None:
    """The current schema in the (empty) database at ``dsn``."""
    from storage.migrate import migrate
    from storage.params import StorageParams

    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn, StorageParams())
    finally:
        await conn.close()


async def two_shards(env: PipelineEnv, dsn1: str) -> tuple[str, str]:
    """``env.dsn`` and ``dsn1`` (migrated here) as the service's ``storage.shards``."""
    await migrate_database(dsn1)
    shards = (env.dsn, dsn1)
    env.extra["NEV_STORAGE_SHARDS"] = ",".join(shards)
    return shards


async def make_env(
    kafka: str,
    dsn: str,
    unique_topic: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp: Path,
    *,
    partitions: int = 4,
) -> PipelineEnv:
    """Topics, a migrated database and a consumer group of one's own."""
    await migrate_database(dsn)
    return PipelineEnv(
        kafka=kafka,
        dsn=dsn,
        topic=unique_topic(partitions, "veh"),
        dlq=unique_topic(1, "dlq"),
        alerts=unique_topic(1, "alerts"),
        group=unique_name("group"),
        tmp=tmp,
        # One partition each: most tests send vehicle frames only, and every partition
        # costs the consumers fetches.
        charger=unique_topic(1, "chg"),
        tcec=unique_topic(1, "tcec"),
        battery=unique_topic(1, "bat"),
        raw_partitions=partitions + 3,
    )


async def ready(svc: Service) -> bool:
    """The service answers /readyz with 200 (every worker in the group, DB reachable)."""
    if svc.proc.poll() is not None:
        raise AssertionError(f"the service exited ({svc.proc.returncode}): {svc.log.read_text()}")
    return svc.readyz() == 200


def header(headers: Iterable[tuple[str, bytes]], name: str) -> bytes | None:
    found = None
    for key, value in headers:
        if key == name:
            found = value
    return found


async def end_offsets(kafka: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        ends = await consumer.end_offsets(tps)
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        await consumer.stop()


# loadtest/bench_support.py sums the same table (``duplicates`` pairs the queries by shape): the
# benchmarks do not import the tests, nor the tests the benchmarks.
async def stored_offsets(dsn: str, group: str, topic: str) -> dict[int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            f"SELECT partition, next_offset FROM {SCHEMA}.consumer_offsets "
            "WHERE consumer_group = $1 AND topic = $2",
            group,
            topic,
        )
    except asyncpg.UndefinedTableError:
        return {}
    finally:
        await conn.close()
    return {r["partition"]: r["next_offset"] for r in rows}


async def caught_up(env: PipelineEnv, topics: Iterable[str] = ()) -> bool:
    """True when the database holds the end offset of every non-empty partition of ``topics``
    (default: the vehicle topic)."""
    for topic in tuple(topics) or (env.topic,):
        ends = await end_offsets(env.kafka, topic)
        stored = await stored_offsets(env.dsn, env.group, topic)
        if not all(stored.get(p, 0) >= end for p, end in ends.items() if end > 0):
            return False
    return True


async def produce_and_store(
    env: PipelineEnv,
    messages: Iterable[Message],
    *,
    timeout_s: float = 90,
    what: str = "every offset stored",
) -> LoadResult:
    """Produce ``messages`` to the env's topic and wait until the database holds every offset."""
    sent = await produce(env.kafka, env.topic, messages)
    await until(lambda: caught_up(env), timeout_s=timeout_s, what=what)
    return sent


async def stored_rows(dsn: str) -> Counter[tuple[str, int]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            f"SELECT vin, (extract(epoch FROM ts) * 1000)::bigint AS ms "
            f"FROM {SCHEMA}.vehicle_telemetry"
        )
    finally:
        await conn.close()
    return Counter((r["vin"], r["ms"]) for r in rows)


async def read_topic(
    kafka: str, topic: str, *, expect: int, timeout_s: float = 30, **client: Any
) -> list[Any]:
    """Every record of ``topic`` from the beginning, waiting until at least ``expect`` came.
    ``client``: more consumer options (a secure stack's SASL/TLS settings)."""
    consumer = AIOKafkaConsumer(
        topic,
        **{"bootstrap_servers": kafka, **client},
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    out: list[Any] = []
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                out.extend(records)
            if len(out) >= expect and not batch:
                break
    finally:
        await consumer.stop()
    return out


async def until_write_waits_on_lock(conn: asyncpg.Connection) -> None:
    """Until some session of ``conn``'s database waits on a lock (the one ``conn`` holds): the
    service's batch write is stalled, not merely slow."""

    async def waiting() -> bool:
        return bool(
            await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )

    await until(waiting, timeout_s=60, what="a batch write waiting for the lock")


async def hold_stall(seconds: float) -> None:
    """Keep a fault in place for ``seconds``: the fault's duration, not a wait for a service
    (what the service does meanwhile is the test's subject)."""
    since = time.monotonic()

    async def over() -> bool:
        return time.monotonic() - since >= seconds

    await until(over, timeout_s=seconds + 5, what="the stall")


async def read_batch(
    env: PipelineEnv, settings: Any, parts: list[tuple[TopicPartition, int]], shard: int = 0
) -> Batch:
    """The records of each (partition, from offset) in turn, decoded into one batch of
    ``shard`` as a worker's consumer builds it (a start behind the stored offset: fenced)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=env.kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp for tp, _ in parts])
        builder = BatchBuilder(decoders_for(settings))
        ends = await consumer.end_offsets([tp for tp, _ in parts])
        for tp, start in parts:
            consumer.seek(tp, start)
            records: list[Any] = []
            while start + len(records) < ends[tp]:
                records.extend((await consumer.getmany(tp, timeout_ms=1000)).get(tp, []))
            builder.add(tp, records, None if start == 0 else start)
        batch = builder.take()
        batch.shard = shard
        return batch
    finally:
        await consumer.stop()
