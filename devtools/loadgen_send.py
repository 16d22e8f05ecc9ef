"""Sending load: the records a load-generator run sent (``LoadResult``), its progress line,
and producing records to Kafka with gateway headers at a paced rate."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from devtools.sim.fleet import GOOD_KINDS, Message
from devtools.sim.recordfile import format_record, header

__all__ = [
    "LoadResult",
    "Progress",
    "gateway_name",
    "peer_of",
    "produce_messages",
    "run_to_kafka",
    "start_producer",
    "write_messages",
]

# Futures awaited in chunks: bounds the memory of unacknowledged sends.
_CHUNK = 5000


@dataclass(slots=True)
class LoadResult:
    """What the generator sent."""

    frames: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    stopped_by: str = "done"  # done | max_frames | max_seconds
    runaway_vin: str | None = None
    topic: str = ""  # the vehicle topic (or the one topic of a single-topic run)
    by_topic: Counter[str] = field(default_factory=Counter)

    def count(self, msg: Any, topic: str) -> None:
        """Count one record sent (or written) to ``topic``."""
        self.frames += 1
        self.by_kind[msg.kind] += 1
        self.by_topic[topic] += 1

    def progress_text(self) -> str:
        """The totals after the rate on the progress line: bad records and each topic's."""
        topics = ", ".join(f"{name} {n:,}" for name, n in sorted(self.by_topic.items()))
        return f", {self.bad:,} bad ({topics})"

    @property
    def bad(self) -> int:
        return sum(n for k, n in self.by_kind.items() if k not in GOOD_KINDS)

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "bad_frames": self.bad,
            "by_kind": dict(self.by_kind),
            "seconds": round(self.seconds, 3),
            "frames_per_s": round(self.frames / self.seconds) if self.seconds else 0,
            "stopped_by": self.stopped_by,
            "runaway_vin": self.runaway_vin,
            "topic": self.topic,
            "by_topic": dict(self.by_topic),
        }


class Progress:
    """A progress line on a terminal (rewritten in place), or one line per update otherwise."""

    def __init__(self, stream: IO[str] | None, total: int | None, every_s: float = 1.0) -> None:
        self._stream = stream
        self._total = total
        self._every = every_s
        self._last = 0.0
        self._tty = bool(stream is not None and stream.isatty())

    def update(
        self,
        done: int,
        started: float,
        extra: str | Callable[[], str] = "",
        *,
        force: bool = False,
    ) -> None:
        """Print the line if one is due (``extra``: text after the rate, or what makes it: it
        is called only when the line is printed, not per record)."""
        now = time.monotonic()
        if self._stream is None or (not force and now - self._last < self._every):
            return
        self._last = now
        if callable(extra):
            extra = extra()
        took = max(now - started, 1e-9)
        pct = f" ({100 * done / self._total:.0f}%)" if self._total and not force else ""
        line = f"loadgen: {done:,} frames{pct}, {done / took:,.0f} frames/s, {took:.1f}s{extra}"
        end = "\r" if self._tty and not force else "\n"
        self._stream.write(line + end)
        self._stream.flush()


def gateway_name(gateway: str | None = None) -> bytes:
    """The ``gateway`` header of generated records: ``gateway``, or ``loadgen-<host>``."""
    return (gateway or f"loadgen-{socket.gethostname()}").encode()


def peer_of(key: bytes) -> bytes:
    """The ``peer`` header of a generated record: an address made up from the device key
    (stable per device, as a gateway's connection would be)."""
    return f"10.{key[-3] % 250}.{key[-2] % 250}.{key[-1] % 250}:{40000 + key[-1]}".encode()


async def produce_messages(
    producer: Any,
    topic: str | Mapping[str, str],
    messages: Any,
    *,
    rate: float = 0.0,
    max_frames: int | None = None,
    max_seconds: float | None = None,
    gateway: str | None = None,
    progress: Progress | None = None,
) -> LoadResult:
    """Send ``messages`` (``fleet.Message``) with gateway headers; paced by ``rate`` frames/s.
    ``topic``: one topic for all, or the topic of each message's ``topic`` role (vehicle,
    charger, battery, tcec)."""
    gw = gateway_name(gateway)
    single, roles = (topic, {}) if isinstance(topic, str) else ("", topic)
    result = LoadResult(topic=single or roles.get("vehicle", ""))
    started = time.monotonic()
    pending: list[asyncio.Future[Any]] = []
    for msg in messages:
        if max_frames is not None and result.frames >= max_frames:
            result.stopped_by = "max_frames"
            break
        elapsed = time.monotonic() - started
        if max_seconds is not None and elapsed >= max_seconds:
            result.stopped_by = "max_seconds"
            break
        if rate > 0:
            ahead = result.frames / rate - elapsed
            if ahead > 0.005:
                await asyncio.sleep(ahead)
        headers = [
            ("received_at", str(time.time_ns() // 1_000_000).encode()),
            ("gateway", gw),
            ("peer", peer_of(msg.key)),
            *msg.headers,
        ]
        name = single or roles[msg.topic]
        pending.append(await producer.send(name, msg.value, key=msg.key, headers=headers))
        result.count(msg, name)
        if len(pending) >= _CHUNK:
            await asyncio.gather(*pending)
            pending.clear()
        if progress is not None:
            progress.update(result.frames, started, result.progress_text)
    await asyncio.gather(*pending)
    await producer.flush()
    result.seconds = time.monotonic() - started
    if progress is not None:
        progress.update(result.frames, started, result.progress_text, force=True)
    return result


async def start_producer(settings: Any) -> Any:
    """An idempotent ``AIOKafkaProducer`` (acks=all), started within one request timeout."""
    from aiokafka import AIOKafkaProducer

    from ingest.wiring import kafka_client_options, quiet_aiokafka

    producer = AIOKafkaProducer(
        **kafka_client_options(settings.kafka),
        acks="all",
        enable_idempotence=True,
        linger_ms=10,
        max_batch_size=512 * 1024,
    )
    try:
        # aiokafka logs each refused connection at ERROR; the caller reports it in one line.
        with quiet_aiokafka():
            # Bounded: bootstrapping retries nothing, but a black-holed address would wait
            # for the OS connect timeout; one request timeout is the configured patience.
            async with asyncio.timeout(settings.kafka.request_timeout_ms / 1000):
                await producer.start()
    except BaseException:
        await producer.stop()  # start() leaves its connections open when it fails
        raise
    return producer


async def run_to_kafka(
    settings: Any,
    names: Mapping[str, str],
    keys: Mapping[str, str],
    messages: Iterable[Message],
    *,
    rate: float,
    max_frames: int | None,
    max_seconds: float | None,
    progress: Progress,
) -> LoadResult:
    """Check the topics, then produce ``messages`` (their ``topic`` a role of ``names``)."""
    from ingest.wiring import check_topics

    await check_topics(settings.kafka, dict(keys), settings.kafka.request_timeout_ms / 1000)
    producer = await start_producer(settings)
    try:
        return await produce_messages(
            producer,
            names,
            messages,
            rate=rate,
            max_frames=max_frames,
            max_seconds=max_seconds,
            progress=progress,
        )
    finally:
        await producer.stop()


def write_messages(
    path: Path,
    names: Mapping[str, str],
    messages: Iterable[Message],
    *,
    max_frames: int | None,
    max_seconds: float | None,
    progress: Progress,
) -> LoadResult:
    """Write ``messages`` to the record file ``path`` (``devtools.sim.recordfile``) instead of
    Kafka, as fast as they are made, within the same bounds as a run to Kafka."""
    result = LoadResult(topic=names.get("vehicle", ""))
    started = time.monotonic()
    with path.open("w", encoding="ascii") as out:
        out.write(header(names.values()))
        for msg in messages:
            if max_frames is not None and result.frames >= max_frames:
                result.stopped_by = "max_frames"
                break
            if max_seconds is not None and time.monotonic() - started >= max_seconds:
                result.stopped_by = "max_seconds"
                break
            name = names[msg.topic]
            out.write(format_record(name, msg))
            result.count(msg, name)
            progress.update(result.frames, started, result.progress_text)
    result.seconds = time.monotonic() - started
    progress.update(result.frames, started, result.progress_text, force=True)
    return result
