"""What the gateway benchmarks share: a real ``nev-ingest gateway`` process on loopback
(``GatewayProc``), the topic's end offsets, and opening many client connections at once."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Final

from aiokafka import AIOKafkaConsumer, TopicPartition

from devtools.devstack.process import free_port
from devtools.loadgen_net import Conn, NetStats, open_socket
from devtools.sim import gbt_session
from devtools.sim.promtext import fetch

__all__ = [
    "GATEWAY_SPARE_FDS",
    "PASSWORD",
    "USER",
    "GatewayProc",
    "connect_all",
    "platform_connections",
    "settled",
    "topic_total",
]

USER: Final = "bench"
PASSWORD: Final = secrets.token_urlsafe(12)  # per run; the accounts file is temporary
# Descriptors the gateway keeps for itself (listeners, Kafka, metrics, logs).
GATEWAY_SPARE_FDS: Final = 200


class GatewayProc:
    """A ``nev-ingest gateway`` subprocess producing to ``topic``."""

    def __init__(
        self, kafka: str, topic: str, *, profile: Path | None = None, **settings: str
    ) -> None:
        self.port, self.metrics_port = free_port(), free_port()
        self.dir = tempfile.TemporaryDirectory(prefix="bench-gw-")
        accounts = Path(self.dir.name) / "accounts.toml"
        subprocess.run(
            [sys.executable, "-m", "ingest", "gateway", "passwd", USER, "--accounts", accounts],
            input=PASSWORD + "\n",
            text=True,
            check=True,
            capture_output=True,
        )
        env = dict(os.environ)
        env.update(
            NEV_KAFKA_BOOTSTRAP_SERVERS=kafka,
            NEV_KAFKA_TOPIC_VEHICLE=topic,
            NEV_LOG_LEVEL="WARNING",
            # Loopback load from few sources: per-connection throttles off, the budget on.
            NEV_GATEWAY_MAX_FRAMES_PER_S="1000000",
            NEV_GATEWAY_PLATFORM_FRAMES_PER_S="10000000",
            NEV_GATEWAY_PLATFORM_BYTES_PER_S=str(2**34),
            # Thousands of connections from 8 loopback sources: no per-address share.
            NEV_GATEWAY_MAX_CONNECTIONS_PER_PEER="10000000",
        )
        env.update({f"NEV_GATEWAY_{k.upper()}": v for k, v in settings.items()})
        self.log = Path(self.dir.name) / "gateway.log"
        # cProfile of the whole process, written when it stops (``bench_gateway --profile``).
        prof = ("-m", "cProfile", "-o", str(profile)) if profile else ()
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, *prof, "-m", "ingest", "gateway", "run"),
                    *("--listen", f"127.0.0.1:{self.port}"),
                    *("--metrics-port", str(self.metrics_port), "--accounts", str(accounts)),
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    async def ready(self, timeout_s: float = 60.0) -> None:
        """Wait for /readyz (producer connected) and the listener, or exit with its log."""
        deadline = time.monotonic() + timeout_s
        delay = 0.05
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"bench: the gateway exited: {self.log.read_text()[-2000:]}")
            if await asyncio.to_thread(self._ready):
                return
            await asyncio.sleep(delay)  # polling a starting process, backing off
            delay = min(delay * 2, 1.0)
        raise SystemExit(f"bench: the gateway was not ready in {timeout_s:.0f} s")

    def _ready(self) -> bool:
        url = f"http://127.0.0.1:{self.metrics_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def rss_kb(self, field: str = "VmRSS") -> int:
        """The gateway's resident memory now (``VmHWM``: its peak so far), in KiB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
        return 0

    def memory(self) -> dict[str, float]:
        """RSS now and at its peak, MB: what the gateway holds grows with what it keeps per
        frame after the acknowledgement (a leak shows under steady traffic, not only a flood)."""
        return {
            "gateway_rss_mb": round(self.rss_kb() / 1024, 1),
            "gateway_peak_rss_mb": round(self.rss_kb("VmHWM") / 1024, 1),
        }

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def scrape(self) -> str:
        return fetch(self.metrics_port)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.dir.cleanup()


async def topic_total(kafka: str, topic: str) -> int:
    """The sum of ``topic``'s end offsets."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic) or set()
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        return sum(ends.values())
    finally:
        await consumer.stop()


async def connect_all(conns: list[Conn], target: tuple[str, int], sources: list[str]) -> None:
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(256)

    async def one(i: int, conn: Conn) -> None:
        async with slots:
            try:
                sock = await open_socket(sources[i % len(sources)] if sources else None, target)
                await loop.create_connection(lambda: conn, sock=sock)
            except OSError as exc:
                conn.failed(type(exc).__name__)

    async with asyncio.TaskGroup() as tg:
        for i, conn in enumerate(conns):
            tg.create_task(one(i, conn))


async def settled(stats: NetStats, timeout_s: float) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while stats.awaiting:
                await stats.settled.wait()
    except TimeoutError:
        pass


async def platform_connections(gw: GatewayProc, n: int, stats: NetStats) -> list[Conn]:
    """``n`` enterprise-platform connections, logged in (SystemExit if a login fails)."""
    now_ms = time.time_ns() // 1_000_000
    conns = []
    for i in range(n):
        code = f"BENCHPLATFORM{i:04d}"
        conn = Conn(stats, code, 2016)
        conn.send(gbt_session.platform_login(code, 2016, now_ms, USER, PASSWORD))
        conns.append(conn)
    await connect_all(conns, gw.address, [])
    await settled(stats, 60)
    if stats.logins < n:
        raise SystemExit(f"bench: {n - stats.logins} platform logins failed: {stats.bad_answers}")
    return conns
