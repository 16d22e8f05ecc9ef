"""The load generator's record sources beyond the simulated fleet: the scale generator
(``--devices``, ``devtools.sim.scale``) and a record file to replay (``--replay``); their
flags. ``devtools.loadgen`` owns the command line, ``devtools.loadgen_send`` the sinks."""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

from devtools.sim.fleet import Message
from devtools.sim.recordfile import count_records, read_records, read_topics
from devtools.sim.scale import ScaleOptions, parse_mix, scale_messages

__all__ = [
    "MAX_DEVICES",
    "Source",
    "TopicNames",
    "add_arguments",
    "pace",
    "replay_source",
    "scale_options",
    "scale_source",
]

MAX_DEVICES: Final = 10_000_000  # ten times the issue's three million
MAX_REISSUE_TICKS: Final = 7 * 24 * 360  # a week of 10 s reports held back (issue 13)
_SETTING_OF: Final = {
    "vehicle": "kafka.topic_vehicle",
    "charger": "kafka.topic_charger",
    "battery": "kafka.topic_battery",
}


class TopicNames(dict[str, str]):
    """A role -> topic map whose unknown roles are topic names already (a replayed file's
    records carry the topic itself)."""

    def __missing__(self, key: str) -> str:
        return key


class Source:
    """What a run sends: the records, the topic of each record role, the setting or flag
    naming each topic (for the topic check's message), the expected count and the pace, if
    known."""

    def __init__(
        self,
        messages: Iterator[Message],
        names: Mapping[str, str],
        keys: Mapping[str, str],
        total: int | None = None,
        rate: float | None = None,
    ) -> None:
        self.messages, self.names, self.keys, self.total = messages, names, keys, total
        self.rate = rate  # records/s to send at, if the source sets it (else --rate)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The scale generator's and the record file's flags."""
    from ingest.cli.args import float_range, int_range

    d = ScaleOptions()
    p.add_argument(
        "--devices",
        type=int_range(1, MAX_DEVICES),
        default=None,
        help=f"scale mode: this many devices (1..{MAX_DEVICES:,}) of the --mix kinds, identities "
        "and behaviour derived from the seed (bounded memory), frame times from now; "
        "--vehicles/--chargers/--packs/--minutes/--tcec-share/--no-runaway do not apply",
    )
    p.add_argument(
        "--mix",
        type=_mix,
        default=d.mix,
        help="scale mode: kinds and weights, e.g. vehicle=1,charger=1,battery=1 (the default)",
    )
    p.add_argument(
        "--reissue-share",
        type=float_range(0, 1),
        default=d.reissue_share,
        help="scale mode: share of vehicle windows (max(1 hour, 2 gaps) of reports) with a "
        "network gap; when it ends the vehicle logs in and sends the gap as reissue (0x03)",
    )
    p.add_argument(
        "--reissue-ticks",
        type=int_range(1, MAX_REISSUE_TICKS),
        default=d.reissue_ticks,
        help=f"scale mode: reports a gap holds back, 1..{MAX_REISSUE_TICKS} (a week at 10 s)",
    )
    p.add_argument(
        "--fault-rate",
        type=float_range(0, 1),
        default=d.fault_per_hour,
        help="scale mode: share of vehicle-hours with a fault whose alarm escalates to level 3",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="FILE",
        help="write the records to FILE (docs/development.md: the record file) instead of Kafka",
    )
    p.add_argument(
        "--replay",
        type=Path,
        default=None,
        metavar="FILE",
        help="send the records of FILE (written by --out) to their topics, new gateway headers",
    )


def _mix(text: str) -> tuple[tuple[str, int], ...]:
    try:
        return parse_mix(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def scale_options(args: argparse.Namespace, now_ms: int) -> ScaleOptions:
    """The scale generator's options from the flags. To Kafka, frame times keep pace with the
    wall clock (the pipeline dead-letters frames dated over ``frame_max_future_s`` ahead):
    with ``--rate R`` every device reports every N / R seconds (a reduced per-device rate;
    ``--interval-s`` does not apply), without it every ``--interval-s``, paced at N /
    interval records/s (``pace``). To a file (``--out``) there is no pacing: with
    ``--max-frames`` the records are dated so that the file ends now, ready to replay."""
    interval = args.interval_s
    start = now_ms
    if args.out is None and args.rate > 0:
        interval = args.devices / args.rate
        if interval < 1.0:
            raise ValueError(
                f"--rate {args.rate:g} with --devices {args.devices} would have each device "
                "report more than once a second (frame times have whole seconds); give "
                "--devices at least the rate"
            )
    elif args.out is not None and args.max_frames is not None:
        rounds = -(-args.max_frames // args.devices)
        start = now_ms - rounds * int(interval * 1000)
    return ScaleOptions(
        devices=args.devices,
        mix=args.mix,
        interval_s=interval,
        share_2025=args.share_2025,
        bad_ratio=args.bad_ratio,
        reissue_share=args.reissue_share,
        reissue_ticks=args.reissue_ticks,
        fault_per_hour=args.fault_rate,
        seed=args.seed,
        start_ms=start,
        # --device-share: this process's slots only (by_time pacing; a --rate is per process).
        share=args.device_share if getattr(args, "via_gateway", None) else (0, 1),
    )


def pace(args: argparse.Namespace, o: ScaleOptions) -> float:
    """The records/s a scale run to Kafka is paced at: ``--rate``, else real time."""
    return float(args.rate) if args.rate > 0 else o.devices / o.interval_s


def scale_source(args: argparse.Namespace, settings: Any) -> Source:
    """The scale generator's records, each kind to its topic (``--topic`` for vehicles)."""
    o = scale_options(args, time.time_ns() // 1_000_000)
    kafka = settings.kafka
    topics = {
        "vehicle": args.topic or kafka.topic_vehicle,
        "charger": kafka.topic_charger,
        "battery": kafka.topic_battery,
    }
    names = {kind: topics[kind] for kind, _ in o.mix}
    keys = {
        name: "--topic" if kind == "vehicle" and args.topic else _SETTING_OF[kind]
        for kind, name in names.items()
    }
    return Source(scale_messages(o), names, keys, rate=pace(args, o))


def replay_source(path: Path) -> Source:
    """A record file's records, to the topics it names (``RecordFileError`` if it is not one,
    or if any line of it is bad: found before a record is sent, not halfway)."""
    topics = read_topics(path)
    total = count_records(path)
    keys = {t: f"--replay {path}" for t in topics}
    return Source(read_records(path), TopicNames(), keys, total=total)
