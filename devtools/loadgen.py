"""``nev-ingest loadgen``: realistic GB/T 32960 traffic for N simulated vehicles, into Kafka.

The frames come from ``devtools.sim.fleet`` (both editions, logins, real-time and reissued data,
some bad frames, one thermal runaway); they are produced to the vehicle raw topic the way a
gateway would: key = VIN, value = the raw frame, headers ``received_at`` (now, epoch ms),
``gateway`` and ``peer``. Bounded in count (``--vehicles`` x ``--minutes``, ``--max-frames``)
and time (``--max-seconds``); ``--rate`` paces it (0 = as fast as the broker takes it).

Prints a progress line to stderr and, last, one JSON line with what it sent. A bad flag, an
unreachable broker or a topic it cannot produce to is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from devtools.sim.fleet import FleetOptions, fleet_messages, vin_of

__all__ = ["LoadResult", "produce_messages", "register", "run_loadgen"]

# Futures awaited in chunks: bounds the memory of unacknowledged sends.
_CHUNK = 5000

# What the flags accept: a laptop-to-cluster load test, not absurd values (a typo, a sign).
MAX_VEHICLES = 1_000_000
MAX_MINUTES = 7 * 24 * 60.0  # a simulated week
MAX_RATE = 10_000_000.0
MAX_FRAMES = 10**12
MAX_SECONDS = 86_400.0


@dataclass(slots=True)
class LoadResult:
    """What the generator sent."""

    frames: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    stopped_by: str = "done"  # done | max_frames | max_seconds
    runaway_vin: str | None = None
    topic: str = ""

    @property
    def bad(self) -> int:
        return sum(n for k, n in self.by_kind.items() if k not in ("login", "realtime", "reissue"))

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
        }


class Progress:
    """A progress line on a terminal (rewritten in place), or one line per update otherwise."""

    def __init__(self, stream: IO[str] | None, total: int | None, every_s: float = 1.0) -> None:
        self._stream = stream
        self._total = total
        self._every = every_s
        self._last = 0.0
        self._tty = bool(stream is not None and stream.isatty())

    def update(self, done: int, started: float, extra: str = "", *, force: bool = False) -> None:
        now = time.monotonic()
        if self._stream is None or (not force and now - self._last < self._every):
            return
        self._last = now
        took = max(now - started, 1e-9)
        pct = f" ({100 * done / self._total:.0f}%)" if self._total and not force else ""
        line = f"loadgen: {done:,} frames{pct}, {done / took:,.0f} frames/s, {took:.1f}s{extra}"
        end = "\r" if self._tty and not force else "\n"
        self._stream.write(line + end)
        self._stream.flush()


async def produce_messages(
    producer: Any,
    topic: str,
    messages: Any,
    *,
    rate: float = 0.0,
    max_frames: int | None = None,
    max_seconds: float | None = None,
    gateway: str | None = None,
    progress: Progress | None = None,
) -> LoadResult:
    """Send ``messages`` (``fleet.Message``) with gateway headers; paced by ``rate`` frames/s."""
    gw = (gateway or f"loadgen-{socket.gethostname()}").encode()
    result = LoadResult(topic=topic)
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
        peer = (
            f"10.{msg.key[-3] % 250}.{msg.key[-2] % 250}.{msg.key[-1] % 250}:{40000 + msg.key[-1]}"
        )
        headers = [
            ("received_at", str(time.time_ns() // 1_000_000).encode()),
            ("gateway", gw),
            ("peer", peer.encode()),
        ]
        pending.append(await producer.send(topic, msg.value, key=msg.key, headers=headers))
        result.frames += 1
        result.by_kind[msg.kind] += 1
        if len(pending) >= _CHUNK:
            await asyncio.gather(*pending)
            pending.clear()
        if progress is not None:
            progress.update(result.frames, started, f", {result.bad:,} bad")
    await asyncio.gather(*pending)
    await producer.flush()
    result.seconds = time.monotonic() - started
    if progress is not None:
        progress.update(result.frames, started, f", {result.bad:,} bad", force=True)
    return result


def expected_frames(o: FleetOptions) -> int:
    """Roughly how many frames a fleet sends (for the progress percentage)."""
    per_vehicle = int(o.minutes * 60 / o.interval_s) + 1
    return o.vehicles * per_vehicle + (135 if o.runaway else 0)


async def run_loadgen(
    settings: Any,
    options: FleetOptions,
    *,
    rate: float = 0.0,
    max_frames: int | None = None,
    max_seconds: float | None = 600.0,
    topic: str | None = None,
    progress_stream: IO[str] | None = sys.stderr,
) -> LoadResult:
    """Produce the fleet's traffic to Kafka (``settings``: the ``ingest.config.Settings``)."""
    from aiokafka import AIOKafkaProducer

    from ingest.wiring import check_topics, kafka_client_options

    name = topic or settings.kafka.topic_vehicle
    # One request timeout is the configured patience, for the topic check as for the producer.
    await check_topics(
        settings.kafka,
        {name: "--topic" if topic else "kafka.topic_vehicle"},
        settings.kafka.request_timeout_ms / 1000,
    )
    producer = AIOKafkaProducer(
        **kafka_client_options(settings.kafka),
        acks="all",
        enable_idempotence=True,
        linger_ms=10,
        max_batch_size=512 * 1024,
    )
    from ingest.wiring import quiet_aiokafka

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
    total = expected_frames(options)
    if max_frames is not None:
        total = min(total, max_frames)
    try:
        result = await produce_messages(
            producer,
            name,
            fleet_messages(options),
            rate=rate,
            max_frames=max_frames,
            max_seconds=max_seconds,
            progress=Progress(progress_stream, total),
        )
    finally:
        await producer.stop()
    if options.runaway:
        result.runaway_vin = vin_of(0, options.vin_prefix)
    return result


def register(sub: Any) -> None:
    """Add the ``loadgen`` subcommand."""
    from ingest.cli.args import float_range, int_range, kafka_topic
    from ingest.config.load import add_config_arguments

    p = sub.add_parser(
        "loadgen",
        help="produce realistic GB/T 32960 traffic for simulated vehicles to Kafka",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    d = FleetOptions()
    p.add_argument(
        "--vehicles",
        type=int_range(1, MAX_VEHICLES),
        default=d.vehicles,
        help=f"simulated vehicles, 1..{MAX_VEHICLES}",
    )
    p.add_argument(
        "--minutes",
        type=float_range(0, MAX_MINUTES, low_open=True),
        default=d.minutes,
        help=f"simulated time span, > 0 and <= {MAX_MINUTES:g}",
    )
    p.add_argument(
        "--interval-s",
        # Frame times have whole seconds: a shorter period would repeat a frame's time.
        type=float_range(1, 3600),
        default=d.interval_s,
        help="reporting period, 1..3600 s",
    )
    p.add_argument(
        "--share-2025", type=float_range(0, 1), default=d.share_2025, help="2025-edition share"
    )
    p.add_argument(
        "--bad-ratio", type=float_range(0, 1), default=d.bad_ratio, help="corrupted frame share"
    )
    p.add_argument("--no-runaway", action="store_true", help="no thermal-runaway vehicle")
    p.add_argument("--seed", type=int_range(0, 2**63 - 1), default=d.seed)
    p.add_argument(
        "--rate",
        type=float_range(0, MAX_RATE),
        default=0.0,
        help="frames/s; 0 = as fast as possible",
    )
    p.add_argument(
        "--max-frames",
        type=int_range(1, MAX_FRAMES),
        default=None,
        help="stop after this many frames",
    )
    p.add_argument(
        "--max-seconds",
        type=float_range(0, MAX_SECONDS, low_open=True),
        default=600.0,
        help="stop after this long",
    )
    p.add_argument("--topic", type=kafka_topic, default=None, help="default: kafka.topic_vehicle")
    add_config_arguments(p)
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from aiokafka.errors import KafkaError

    from devtools.settings import dev_settings_from_args
    from ingest.errors import UserError

    settings = dev_settings_from_args(args)
    options = FleetOptions(
        vehicles=args.vehicles,
        minutes=args.minutes,
        interval_s=args.interval_s,
        share_2025=args.share_2025,
        bad_ratio=args.bad_ratio,
        runaway=not args.no_runaway,
        seed=args.seed,
        end_ms=time.time_ns() // 1_000_000,
    )
    try:
        result = asyncio.run(
            run_loadgen(
                settings,
                options,
                rate=args.rate,
                max_frames=args.max_frames,
                max_seconds=args.max_seconds,
                topic=args.topic,
            )
        )
    except (OSError, TimeoutError, KafkaError) as exc:
        topic = args.topic or settings.kafka.topic_vehicle
        raise UserError(
            f"cannot produce to topic {topic} at kafka.bootstrap_servers = "
            f"{settings.kafka.bootstrap_servers} ({exc or type(exc).__name__}); is the broker "
            "up and the topic created? (nev-ingest devstack up)"
        ) from None
    print(orjson.dumps(result.as_dict()).decode())
    return 0
