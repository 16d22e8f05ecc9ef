"""``nev-ingest query``: what regulators ask, as a table, JSON lines or CSV.

    nev-ingest query track VIN [--from T] [--to T]       positions and telemetry over time
    nev-ingest query latest VIN | --prefix P             where it is now, its SOC now
    nev-ingest query alarms [--level N] [--vin VIN]      alarm frames of level >= N
    nev-ingest query daily --vin VIN | --prefix P        distance and energy per day
    nev-ingest query pack VIN [--pack N] [--every 5m]    cell-voltage spread, max temperature

Times (``--from``/``--to``) are ISO dates or date-times, read in ``--tz`` (default
Asia/Shanghai, the frames' own zone) unless they carry an offset, or durations ago (``30m``,
``6h``, ``7d``). ``--explain`` prints the query plan (it runs the query) instead of rows.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
import psycopg

from ingest.cli.args import (
    DurationTooLong,
    add_database_arguments,
    add_limit_argument,
    database_flags,
    duration,
    int_range,
    parse_duration,
    text,
)
from ingest.config import ENTITY_KINDS, Settings
from ingest.config.load import add_config_arguments, settings_from_args
from ingest.errors import UserError
from ingest.wiring import postgres_dsn
from storage import queries
from storage.queries import QueryResult, Statement

__all__ = ["parse_duration", "parse_time", "register"]

# Times a query may name: far wider than any stored frame (GB/T 32960 years are 2000-2099),
# narrow enough that a window's arithmetic (24 h before --to, 7 days before a day) cannot leave
# the range of ``datetime``.
TIME_MIN = datetime(1970, 1, 1, tzinfo=UTC)
TIME_MAX = datetime(2200, 1, 1, tzinfo=UTC)

# Row limits, bucket widths and alarm levels a query accepts.
MAX_ROWS = 10_000_000
_EVERY = duration(timedelta(seconds=1), timedelta(days=366))
_ID = text(64)  # VINs are 17 characters; other ids and escaped forms fit in 64


def parse_time(text: str, tz: tzinfo, now: datetime, flag: str = "time") -> datetime:
    """An ISO date/date-time (in ``tz`` unless it has an offset) or a duration ago, from
    1970 to 2199; otherwise a ``UserError`` that names ``flag``."""
    try:
        ago: timedelta | None = parse_duration(text)
    except DurationTooLong:
        ago = timedelta.max
    except ValueError:
        ago = None
    if ago is not None:
        t = now - ago if ago <= now - TIME_MIN else TIME_MIN - timedelta(days=1)
    else:
        try:
            t = datetime.fromisoformat(text.strip())
        except ValueError:
            raise UserError(
                f"{flag} {text!r}: use an ISO date or date-time (2025-07-01, 2025-07-01T08:00, "
                "2025-07-01T08:00+08:00) or a duration ago (30m, 6h, 7d)"
            ) from None
        t = t if t.tzinfo is not None else t.replace(tzinfo=tz)
    if not TIME_MIN <= t < TIME_MAX:
        raise UserError(f"{flag} {text!r}: expected a time from 1970 to 2199")
    return t


def register(subparsers: Any) -> None:
    """Add the ``query`` subcommand and its five queries."""
    p = subparsers.add_parser(
        "query", help="regulator queries: track, latest, alarms, daily, pack", description=__doc__
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

    pk = sub.add_parser("pack", help="cell-voltage spread and max temperature of a vehicle's packs")
    pk.add_argument("vin", type=_ID)
    pk.add_argument("--pack", type=int_range(1, 255), help="one pack number only (1..255)")
    pk.add_argument(
        "--every", type=_EVERY, default=timedelta(minutes=5), help="bucket width, 1s..366d (5m)"
    )
    common(pk)
    pk.set_defaults(func=_pack)


def _zone(args: argparse.Namespace) -> ZoneInfo:
    try:
        return ZoneInfo(args.tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise UserError(f"--tz {args.tz}: not a time zone name (e.g. Asia/Shanghai, UTC)") from None


def _window(args: argparse.Namespace) -> tuple[datetime, datetime]:
    tz = _zone(args)
    now = datetime.now(tz)
    end = parse_time(args.end, tz, now, "--to") if args.end else now
    start = parse_time(args.start, tz, now, "--from") if args.start else end - timedelta(hours=24)
    if start >= end:
        raise UserError(f"--from ({start.isoformat()}) must be before --to ({end.isoformat()})")
    return start, end


def _settings(args: argparse.Namespace) -> Settings:
    return settings_from_args(args, database_flags(args))


def _track(args: argparse.Namespace) -> int:
    start, end = _window(args)
    return _execute(args, lambda s: queries.track(s, args.vin, start, end, args.limit))


def _latest(args: argparse.Namespace) -> int:
    if (args.vin is None) == (args.prefix is None):
        raise UserError("give a VIN or --prefix (one of them)")
    return _execute(
        args,
        lambda s: queries.latest(
            s, vin=args.vin, prefix=args.prefix, kind=args.kind, limit=args.limit
        ),
    )


def _alarms(args: argparse.Namespace) -> int:
    start, end = _window(args)
    return _execute(
        args,
        lambda s: queries.alarms(
            s, start, end, min_level=args.level, vin=args.vin, limit=args.limit
        ),
    )


def _day(text: str, tz: ZoneInfo, flag: str) -> date:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return parse_time(text, tz, datetime.now(tz), flag).date()
    if not TIME_MIN.date() <= day < TIME_MAX.date():
        raise UserError(f"{flag} {text!r}: expected a day from 1970 to 2199")
    return day


def _daily(args: argparse.Namespace) -> int:
    if args.vin and args.prefix:
        raise UserError("give --vin or --prefix, not both")
    tz = _zone(args)
    today = datetime.now(tz).date()
    last = _day(args.end, tz, "--to") if args.end else today
    first = _day(args.start, tz, "--from") if args.start else last - timedelta(days=6)
    if first > last:
        raise UserError(f"--from ({first}) is after --to ({last})")
    return _execute(
        args,
        lambda s: queries.daily(
            s, first, last, tz=args.tz, vin=args.vin, prefix=args.prefix, limit=args.limit
        ),
    )


def _pack(args: argparse.Namespace) -> int:
    start, end = _window(args)
    return _execute(
        args, lambda s: queries.pack(s, args.vin, start, end, every=args.every, pack_no=args.pack)
    )


def _connect(settings: Settings, tz: str) -> psycopg.Connection[Any]:
    pg = settings.postgres
    extra: dict[str, Any] = {"password": pg.password} if pg.password else {}
    try:
        # postgres_dsn adds the TLS keys where the URL has none (?sslmode=disable stays).
        conn = psycopg.connect(
            postgres_dsn(pg),
            connect_timeout=max(1, round(pg.connect_timeout_s)),
            autocommit=True,
            **extra,
        )
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "no password supplied" in first:
            raise UserError(
                "the server asks for a password: set postgres.password (NEV_POSTGRES_PASSWORD) "
                "or put it in the DSN (PGlite-TimescaleDB accepts any)"
            ) from None
        raise UserError(
            f"cannot connect to the database: {first} (set --dsn, NEV_POSTGRES_DSN or "
            "[postgres] dsn in --config)"
        ) from None
    # Times come back in the reader's zone; statement_timeout guards a runaway range.
    conn.execute("SELECT set_config('TimeZone', %s, false)", [tz])
    conn.execute(
        "SELECT set_config('statement_timeout', %s, false)", [f"{pg.statement_timeout_ms}ms"]
    )
    return conn


def _execute(args: argparse.Namespace, build: Callable[[str], Statement]) -> int:
    settings = _settings(args)
    statement = build(settings.storage.schema)
    with _connect(settings, args.tz) as conn:
        try:
            plan = queries.explain(conn, statement) if args.explain else None
            result = queries.run(conn, statement) if plan is None else None
        except psycopg.errors.UndefinedTable as exc:
            raise UserError(
                f"{exc.diag.message_primary}: is schema {settings.storage.schema} migrated? "
                "(nev-ingest migrate)"
            ) from None
        except psycopg.errors.QueryCanceled:
            raise UserError(
                "the query ran past postgres.statement_timeout_ms: narrow --from/--to or "
                "raise the timeout"
            ) from None
    try:
        if result is not None:
            _print(result, args.format)
        for line in plan or ():
            print(line)
    except BrokenPipeError:
        # The reader went away (| head): not an error; keep Python from reporting it at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 0


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float):
        return round(value, 6)
    return value


def _print(result: QueryResult, fmt: str) -> None:
    rows = [[_cell(v) for v in row] for row in result.rows]
    out = sys.stdout
    if fmt == "json":
        for row in rows:
            out.write(orjson.dumps(dict(zip(result.columns, row, strict=True))).decode() + "\n")
        return
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows(
            [orjson.dumps(v).decode() if isinstance(v, list) else v for v in row] for row in rows
        )
        return
    if not rows:
        print("(no rows)", file=sys.stderr)
        return
    text = [result.columns] + [
        [
            "" if v is None else orjson.dumps(v).decode() if isinstance(v, list) else str(v)
            for v in row
        ]
        for row in rows
    ]
    widths = [max(len(r[i]) for r in text) for i in range(len(result.columns))]
    for n, r in enumerate(text):
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")
        if n == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")
    print(f"({len(rows)} rows)", file=sys.stderr)
