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
and time (``--max-seconds``, alias ``--duration``); ``--rate`` paces it (0 = as fast as the
broker takes it).

At scale (``--devices N --mix vehicle=1,charger=1,battery=1``): ``devtools.sim.scale``, N
devices reporting every ``--interval-s`` from now on, identities and behaviour derived from the
seed and each device's index, so memory does not grow with N (``loadgen_modes``). ``--out FILE``
writes the records to a file instead of Kafka, ``--replay FILE`` sends such a file
(``devtools.sim.recordfile``: the format).

Prints a progress line to stderr and, last, one JSON line with what it sent. A bad flag, an
unreachable broker or a topic it cannot produce to is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

import orjson

from devtools.loadgen_send import (
    LoadResult,
    Progress,
    produce_messages,
    run_to_kafka,
    write_messages,
)
from devtools.sim.fleet import FleetOptions, vin_of
from devtools.sim.world import world_messages

if TYPE_CHECKING:
    from devtools.loadgen_modes import Source

__all__ = ["LoadResult", "Progress", "produce_messages", "register", "run_loadgen"]

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


def _setting_keys(names: Mapping[str, str], topic: str | None) -> dict[str, str]:
    """Topic -> the setting or flag naming it (for the topic check's message)."""
    return {
        name: ("--topic" if role == "vehicle" and topic else _SETTING_OF[role])
        for role, name in names.items()
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
    overrides = dict(topics or {})
    if topic:
        overrides["vehicle"] = topic
    names = topics_of(settings, options, overrides)
    keys = _setting_keys(names, topic)
    total = expected_frames(options)
    if max_frames is not None:
        total = min(total, max_frames)
    result = await run_to_kafka(
        settings,
        names,
        keys,
        world_messages(options),
        rate=rate,
        max_frames=max_frames,
        max_seconds=max_seconds,
        progress=Progress(progress_stream, total),
    )
    if options.runaway:
        result.runaway_vin = vin_of(0, options.vin_prefix)
    return result


def register(sub: Any) -> None:
    """Add the ``loadgen`` subcommand."""
    from devtools import loadgen_gateway, loadgen_modes
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
        help="frames/s; 0 = as fast as possible (with --devices: real time, devices / "
        "--interval-s; a rate sets each device's period to devices / rate)",
    )
    p.add_argument(
        "--max-frames",
        type=int_range(1, MAX_FRAMES),
        default=None,
        help="stop after this many frames",
    )
    p.add_argument(
        "--max-seconds",
        "--duration",
        dest="max_seconds",
        type=float_range(0, MAX_SECONDS, low_open=True),
        default=600.0,
        help="stop after this many seconds (wall clock)",
    )
    p.add_argument("--topic", type=kafka_topic, default=None, help="default: kafka.topic_vehicle")
    loadgen_modes.add_arguments(p)
    loadgen_gateway.add_arguments(p)
    add_config_arguments(p)
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from aiokafka.errors import KafkaError

    from devtools import loadgen_modes
    from devtools.settings import dev_settings_from_args
    from devtools.sim.recordfile import RecordFileError
    from ingest.errors import UserError

    settings = dev_settings_from_args(args)
    runaway_vin = None
    if args.replay is not None and args.out is not None and _same_file(args.replay, args.out):
        # --out truncates its file before the replay would read it: the records would be gone
        raise UserError(f"--out {args.out} is the --replay file: write to another file")
    try:
        if args.replay is not None:
            source = loadgen_modes.replay_source(args.replay)
        elif args.devices is not None:
            try:
                source = loadgen_modes.scale_source(args, settings)
            except ValueError as exc:
                raise UserError(str(exc)) from None
        else:
            source, runaway_vin = _fleet_source(args, settings)
    except (OSError, RecordFileError) as exc:
        raise UserError(f"cannot read --replay {args.replay}: {exc}") from None
    total = source.total
    if args.max_frames is not None:
        total = min(total or args.max_frames, args.max_frames)
    progress = Progress(sys.stderr, total)
    bounds: dict[str, Any] = {"max_frames": args.max_frames, "max_seconds": args.max_seconds}
    if args.via_gateway is not None:
        rate = source.rate if source.rate is not None else args.rate
        print(orjson.dumps(_via_gateway(args, source, rate, progress, bounds)).decode())
        return 0
    if args.out is not None:
        try:
            result = write_messages(
                args.out, source.names, source.messages, progress=progress, **bounds
            )
        except OSError as exc:
            raise UserError(f"cannot write --out {args.out}: {exc}; is the folder there?") from None
    else:
        run = run_to_kafka(
            settings,
            source.names,
            source.keys,
            source.messages,
            rate=source.rate if source.rate is not None else args.rate,
            progress=progress,
            **bounds,
        )
        try:
            result = asyncio.run(run)
        except (OSError, TimeoutError, KafkaError) as exc:
            raise UserError(
                f"cannot produce to {', '.join(source.keys)} at kafka.bootstrap_servers = "
                f"{settings.kafka.bootstrap_servers} ({exc or type(exc).__name__}); is the "
                "broker up and the topic created? (nev-ingest devstack up)"
            ) from None
    result.runaway_vin = runaway_vin
    print(orjson.dumps(result.as_dict()).decode())
    return 0


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # either is missing: not the same existing file
        return False


def _via_gateway(
    args: argparse.Namespace, source: Source, rate: float, progress: Progress, bounds: Any
) -> dict[str, Any]:
    """Run ``--via-gateway``: the vehicle records over TCP (``devtools.loadgen_gateway``)."""
    from devtools import loadgen_gateway as gw
    from ingest.errors import UserError

    if args.replay is not None or args.out is not None:
        raise UserError("--via-gateway sends generated traffic: drop --replay/--out")
    other = gw.unsupported_roles(list(source.names))
    if other:
        raise UserError(
            f"--via-gateway sends vehicle frames (the gateway's GB/T 32960 listener), not "
            f"{', '.join(other)}: give --mix vehicle=1, or --chargers 0 --packs 0"
        )
    try:
        plan = gw.plan_from_args(args)
        devices = args.devices or args.vehicles
        if args.devices is not None:
            # The scale generator makes only this process's share of the slots.
            devices = -(-args.devices // plan.share[1])
            plan = dataclasses.replace(plan, share=(0, 1))
        run = gw.run_via_gateway(
            plan,
            source.messages,
            devices=devices,
            rate=rate,
            # Scale mode in real time: each device sends when its report is due.
            by_time=args.devices is not None and args.rate == 0,
            progress=progress,
            **bounds,
        )
        result, stats = _run_gateway(run)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return gw.result_dict(result, stats, plan)


def _run_gateway(run: Any) -> Any:
    """``asyncio.run`` on uvloop when it is installed (100,000 sockets: its loop is leaner)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(run)
    return uvloop.run(run)


def _fleet_source(args: argparse.Namespace, settings: Any) -> tuple[Source, str | None]:
    """The simulated fleet's records (``--vehicles`` ...) and its runaway VIN, if any."""
    from devtools.loadgen_modes import Source

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
    names = topics_of(settings, options, {"vehicle": args.topic} if args.topic else {})
    source = Source(
        world_messages(options), names, _setting_keys(names, args.topic), expected_frames(options)
    )
    return source, vin_of(0, options.vin_prefix) if options.runaway else None
