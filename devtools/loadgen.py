"""``nev-ingest loadgen``: realistic traffic of simulated vehicles, charging piles and battery
packs, into Kafka.

The records come from ``devtools.sim.world`` (vehicles of both GB/T 32960 editions with logins,
real-time and reissued data and one thermal runaway; piles in the charger profile, or as their
operator's T/CEC 102 pushes; standalone packs; vehicles charging at the piles and swapping
packs at the stations; some bad records), produced the way gateways would: to the raw topic
of each kind (``kafka.topic_vehicle``, ``topic_charger``, ``topic_battery``) and the T/CEC
topic (``kafka.topic_tcec``), key = the device identity, value = the raw frame (a push's JSON),
headers ``received_at`` (now, epoch ms), ``gateway`` and ``peer`` (and the T/CEC headers).
Bounded in count (``--vehicles``/``--chargers``/``--packs`` x ``--minutes``, ``--max-frames``)
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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, Any, Final

import orjson

from devtools.sim.fleet import GOOD_KINDS, FleetOptions, vin_of
from devtools.sim.world import world_messages

__all__ = ["LoadResult", "produce_messages", "register", "run_loadgen"]

# Futures awaited in chunks: bounds the memory of unacknowledged sends.
_CHUNK = 5000

# What the flags accept: a laptop-to-cluster load test, not absurd values (a typo, a sign).
MAX_VEHICLES = 1_000_000
MAX_CHARGERS = 1_000_000  # piles (two connectors each)
MAX_PACKS = 1_000_000
# The T/CEC topic's default name (docs/kafka.md), for a configuration that predates the
# ``kafka.topic_tcec`` setting.
DEFAULT_TCEC_TOPIC: Final = "nev.charger.tcec"
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
    topic: str = ""  # the vehicle topic (or the one topic of a single-topic run)
    by_topic: Counter[str] = field(default_factory=Counter)

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
    gw = (gateway or f"loadgen-{socket.gethostname()}").encode()
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
        peer = (
            f"10.{msg.key[-3] % 250}.{msg.key[-2] % 250}.{msg.key[-1] % 250}:{40000 + msg.key[-1]}"
        )
        headers = [
            ("received_at", str(time.time_ns() // 1_000_000).encode()),
            ("gateway", gw),
            ("peer", peer.encode()),
            *msg.headers,
        ]
        name = single or roles[msg.topic]
        pending.append(await producer.send(name, msg.value, key=msg.key, headers=headers))
        result.frames += 1
        result.by_kind[msg.kind] += 1
        result.by_topic[name] += 1
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
    """Roughly how many records the simulation sends (for the progress percentage)."""
    per_device = int(o.minutes * 60 / o.interval_s) + 1
    devices = o.vehicles + o.chargers + o.packs
    return devices * per_device + (135 if o.runaway else 0)


def topics_of(
    settings: Any, options: FleetOptions, overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The topic of each record role the options produce (vehicle, charger, tcec, battery),
    from the settings, ``overrides`` winning."""
    kafka = settings.kafka
    # ``kafka.topic_tcec`` comes with the pipeline's T/CEC consumer; before it, the default.
    names = {
        "vehicle": kafka.topic_vehicle,
        "charger": kafka.topic_charger,
        "tcec": getattr(kafka, "topic_tcec", DEFAULT_TCEC_TOPIC),
        "battery": kafka.topic_battery,
    }
    names.update(overrides or {})
    used = ["vehicle"]
    if options.chargers:
        used += ["charger"] if options.tcec_share < 1 else []
        used += ["tcec"] if options.tcec_share > 0 else []
    if options.packs:
        used.append("battery")
    return {role: names[role] for role in used}


_SETTING_OF: Final = {
    "vehicle": "kafka.topic_vehicle",
    "charger": "kafka.topic_charger",
    "tcec": "kafka.topic_tcec",
    "battery": "kafka.topic_battery",
}


async def run_loadgen(
    settings: Any,
    options: FleetOptions,
    *,
    rate: float = 0.0,
    max_frames: int | None = None,
    max_seconds: float | None = 600.0,
    topic: str | None = None,
    progress_stream: IO[str] | None = sys.stderr,
    topics: Mapping[str, str] | None = None,
) -> LoadResult:
    """Produce the simulation's traffic to Kafka (``settings``: the ``ingest.config.Settings``;
    ``topic`` the vehicle topic, ``topics`` any role's, else the settings')."""
    from aiokafka import AIOKafkaProducer

    from ingest.wiring import check_topics, kafka_client_options

    overrides = dict(topics or {})
    if topic:
        overrides["vehicle"] = topic
    names = topics_of(settings, options, overrides)
    keys = {
        name: ("--topic" if role == "vehicle" and topic else _SETTING_OF[role])
        for role, name in names.items()
    }
    # One request timeout is the configured patience, for the topic check as for the producer.
    await check_topics(settings.kafka, keys, settings.kafka.request_timeout_ms / 1000)
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
            names,
            world_messages(options),
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
        help="produce realistic traffic of simulated vehicles, chargers and packs to Kafka",
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
        "--chargers",
        type=int_range(0, MAX_CHARGERS),
        default=d.chargers,
        help=f"simulated charging piles (two connectors each), 0..{MAX_CHARGERS}",
    )
    p.add_argument(
        "--packs",
        type=int_range(0, MAX_PACKS),
        default=d.packs,
        help=f"simulated standalone battery packs (stations, storage, second life), 0..{MAX_PACKS}",
    )
    p.add_argument(
        "--tcec-share",
        type=float_range(0, 1),
        default=d.tcec_share,
        help="share of piles reported by their operator's T/CEC 102 pushes",
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
    p.add_argument(
        "--no-runaway",
        action="store_true",
        help="no incidents: no thermal-runaway vehicle, no connector stuck in fault",
    )
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
        chargers=args.chargers,
        packs=args.packs,
        tcec_share=args.tcec_share,
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
        chosen = {"vehicle": args.topic} if args.topic else {}
        topics = ", ".join(topics_of(settings, options, chosen).values())
        raise UserError(
            f"cannot produce to {topics} at kafka.bootstrap_servers = "
            f"{settings.kafka.bootstrap_servers} ({exc or type(exc).__name__}); is the broker "
            "up and the topic created? (nev-ingest devstack up)"
        ) from None
    print(orjson.dumps(result.as_dict()).decode())
    return 0
