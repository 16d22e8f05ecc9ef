"""``nev-ingest query``: what regulators ask, as a table, JSON lines or CSV.

    nev-ingest query track VIN [--from T] [--to T]       positions and telemetry over time
    nev-ingest query latest VIN | --prefix P             where it is now, its SOC now
    nev-ingest query alarms [--level N] [--vin VIN]      alarm frames of level >= N
    nev-ingest query daily --vin VIN | --prefix P        distance and energy per day
    nev-ingest query pack VIN [--pack N] [--every 5m]    cell-voltage spread, max temperature
    nev-ingest query pack CODE                           a pack's places, swaps and telemetry
    nev-ingest query swaps [--from T] [--to T]           every pack swap of a time range
    nev-ingest query charger ID [--operator OP]          connectors, sessions and faults
    nev-ingest query chargers [--operator OP] [--status S]   connectors by status now
    nev-ingest query sessions --vin VIN | --charger ID   charging sessions
    nev-ingest query online --kind K [--stale 10m]       online now, the offline list
    nev-ingest query online --kind K --quality [--day D] per-entity data quality of a day

Times (``--from``/``--to``) are ISO dates or date-times, read in ``--tz`` (default
Asia/Shanghai, the frames' own zone) unless they carry an offset, or durations ago (``30m``,
``6h``, ``7d``). ``--explain`` prints the query plan (it runs the query) instead of rows.
"""

from __future__ import annotations

import argparse
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ingest.cli import query_entities
from ingest.cli.args import (
    add_database_arguments,
    add_limit_argument,
    duration,
    int_range,
    parse_duration,
    text,
)
from ingest.cli.query_run import Entity, day, execute, parse_time, window, zone
from ingest.config import ENTITY_KINDS
from ingest.config.load import add_config_arguments
from ingest.errors import UserError
from storage import queries

__all__ = ["parse_duration", "parse_time", "register"]

# Row limits, bucket widths and alarm levels a query accepts.
MAX_ROWS = query_entities.MAX_ROWS
_EVERY = duration(timedelta(seconds=1), timedelta(days=366))
_ID = text(64)  # VINs are 17 characters; other ids and escaped forms fit in 64
VIN_LENGTH = 17  # `query pack` takes a VIN (17) or a pack code (24)


def register(subparsers: Any) -> None:
    """Add the ``query`` subcommand and its five queries."""
    p = subparsers.add_parser(
        "query",
        help="regulator queries: track, latest, alarms, daily, pack, swaps, charger, chargers, "
        "sessions, online",
        description=__doc__,
    )
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = p.add_subparsers(dest="query", metavar="QUERY", required=True)

    def common(sp: argparse.ArgumentParser, *, window: bool = True) -> None:
        if window:
            sp.add_argument("--from", dest="start", help="start (default: 24h before --to)")
            sp.add_argument("--to", dest="end", help="end, exclusive (default: now)")
        sp.add_argument("--format", choices=("table", "json", "csv"), default="table")
        sp.add_argument("--tz", default="Asia/Shanghai", help="time zone of input and output")
        add_limit_argument(sp, most=MAX_ROWS, default=10_000, noun="rows")
        sp.add_argument("--explain", action="store_true", help="print the plan (EXPLAIN ANALYZE)")
        add_database_arguments(sp)
        add_config_arguments(sp)

    t = sub.add_parser("track", help="a vehicle's track and telemetry over a time range")
    t.add_argument("vin", type=_ID)
    common(t)
    t.set_defaults(func=_track)

    la = sub.add_parser("latest", help="latest state of a VIN or of a fleet prefix")
    la.add_argument("vin", nargs="?", type=_ID)
    la.add_argument("--prefix", type=_ID, help="every entity whose id starts with this")
    la.add_argument("--kind", default="vehicle", choices=ENTITY_KINDS, help="entity kind")
    common(la, window=False)
    la.set_defaults(func=_latest)

    al = sub.add_parser("alarms", help="alarm frames by level and time range, newest first")
    al.add_argument(
        "--level", type=int_range(1, 4), default=1, help="this alarm level or worse (1..4)"
    )
    al.add_argument("--vin", type=_ID, help="one vehicle only")
    common(al)
    al.set_defaults(func=_alarms)

    d = sub.add_parser("daily", help="distance and energy per vehicle per day")
    d.add_argument("--vin", type=_ID, help="one vehicle")
    d.add_argument("--prefix", type=_ID, help="a fleet: every VIN starting with this")
    d.add_argument("--from", dest="start", help="first day (default: 7 days before --to)")
    d.add_argument("--to", dest="end", help="last day, inclusive (default: today)")
    common(d, window=False)
    d.set_defaults(func=_daily)

    pk = sub.add_parser(
        "pack",
        help="a pack's history (24-character code: bindings, swaps, telemetry) or a vehicle's "
        "cell-voltage spread and max temperature (17-character VIN)",
    )
    pk.add_argument("vin", metavar="CODE|VIN", type=_ID)
    pk.add_argument("--pack", type=int_range(1, 255), help="VIN: one pack number only (1..255)")
    pk.add_argument(
        "--every", type=_EVERY, default=timedelta(minutes=5), help="bucket width, 1s..366d (5m)"
    )
    common(pk)
    pk.set_defaults(func=_pack)

    query_entities.register(sub, common)


def _track(args: argparse.Namespace) -> int:
    start, end = window(args)
    return execute(
        args, lambda s: queries.track(s, args.vin, start, end, args.limit), _vehicle(args.vin)
    )


def _latest(args: argparse.Namespace) -> int:
    if (args.vin is None) == (args.prefix is None):
        raise UserError("give a VIN or --prefix (one of them)")
    return execute(
        args,
        lambda s: queries.latest(
            s, vin=args.vin, prefix=args.prefix, kind=args.kind, limit=args.limit
        ),
        # a charger connector is keyed two ways on Kafka (frames, T/CEC pushes): every shard
        (args.kind, args.vin) if args.vin is not None and args.kind != "charger" else None,
    )


def _alarms(args: argparse.Namespace) -> int:
    start, end = window(args)
    return execute(
        args,
        lambda s: queries.alarms(
            s, start, end, min_level=args.level, vin=args.vin, limit=args.limit
        ),
        _vehicle(args.vin),
    )


def _daily(args: argparse.Namespace) -> int:
    if args.vin and args.prefix:
        raise UserError("give --vin or --prefix, not both")
    tz = zone(args)
    today = datetime.now(tz).date()
    last = day(args.end, tz, "--to") if args.end else today
    first = day(args.start, tz, "--from") if args.start else last - timedelta(days=6)
    if first > last:
        raise UserError(f"--from ({first}) is after --to ({last})")
    _days_start_on_whole_hours(tz, first, last)
    return execute(
        args,
        lambda s: queries.daily(
            s, first, last, tz=args.tz, vin=args.vin, prefix=args.prefix, limit=args.limit
        ),
        _vehicle(args.vin),
    )


def _days_start_on_whole_hours(tz: ZoneInfo, first: date, last: date) -> None:
    """``daily`` sums ``vehicle_stats_1h``, whose buckets start on whole UTC hours: a day that
    starts on a half or quarter hour (Asia/Kolkata +05:30, Asia/Kathmandu +05:45, Lord Howe
    in winter) would get the frames of its first minutes from the day before and lose its
    last ones to the next. Such zones are refused rather than answered wrong."""
    d = first
    while d <= last + timedelta(days=1):  # each asked day's midnight, and the end's
        offset = datetime(d.year, d.month, d.day, tzinfo=tz).utcoffset() or timedelta(0)
        if offset % timedelta(hours=1):
            sign, size = ("-", -offset) if offset < timedelta(0) else ("+", offset)
            hours, rest = divmod(int(size.total_seconds()), 3600)
            raise UserError(
                f"--tz {tz.key}: its offset on {d} is UTC{sign}{hours:02d}:{rest // 60:02d}, "
                "not whole hours, and query daily adds up hourly aggregates that start on "
                "whole UTC hours, so its days there would not start at midnight: use a zone "
                "whose offset is whole hours (e.g. Asia/Shanghai or UTC)"
            )
        d += timedelta(days=1)


def _pack(args: argparse.Namespace) -> int:
    if len(args.vin) != VIN_LENGTH:
        return query_entities.pack_history(args)
    start, end = window(args)
    return execute(
        args,
        lambda s: queries.pack(
            s,
            args.vin,
            start,
            end,
            every=args.every,
            tz=args.tz,
            limit=args.limit,
            pack_no=args.pack,
        ),
        _vehicle(args.vin),
    )


def _vehicle(vin: str | None) -> Entity | None:
    """A vehicle's own rows (its frames, keyed by VIN on Kafka) are all on the VIN's shard."""
    return ("vehicle", vin) if vin is not None else None
