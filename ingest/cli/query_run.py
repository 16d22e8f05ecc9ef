"""What every ``nev-ingest query`` shares: times and windows, the connection, running titled
statements and printing them as a table, JSON lines or CSV."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
import psycopg

from ingest.cli.args import database_flags, time_or_ago
from ingest.cli.output import note, row_count
from ingest.config import Settings
from ingest.config.load import settings_from_args
from ingest.errors import UserError
from ingest.wiring import first_line, postgres_dsn
from storage import queries
from storage.queries import QueryResult, Statement
from storage.queries_scoped import readable, through_scoped, unreadable_with_scoped
from storage.shards import kafka_partition, shard_of

# A query about one entity's own rows: (raw source, Kafka record key), e.g. ("vehicle", VIN).
Entity = tuple[str, str]

__all__ = [
    "TIME_MAX",
    "TIME_MIN",
    "Entity",
    "Sections",
    "day",
    "execute",
    "execute_sections",
    "parse_time",
    "target_dsn",
    "window",
    "zone",
]

# A report of several results: (title, statement) in print order.
Sections = list[tuple[str, Statement]]

# Times a query may name: far wider than any stored frame (GB/T 32960 years are 2000-2099),
# narrow enough that a window's arithmetic (24 h before --to, 7 days before a day) cannot leave
# the range of ``datetime``.
TIME_MIN = datetime(1970, 1, 1, tzinfo=UTC)
TIME_MAX = datetime(2200, 1, 1, tzinfo=UTC)


def parse_time(text: str, tz: tzinfo, now: datetime, flag: str = "time") -> datetime:
    """An ISO date/date-time (in ``tz`` unless it has an offset) or a duration ago, from
    1970 to 2199; otherwise a ``UserError`` that names ``flag``."""
    try:
        t = time_or_ago(text, tz, now, TIME_MIN)
    except ValueError as exc:
        raise UserError(f"{flag} {exc}") from None
    if not TIME_MIN <= t < TIME_MAX:
        raise UserError(f"{flag} {text!r}: expected a time from 1970 to 2199")
    return t


def zone(args: argparse.Namespace) -> ZoneInfo:
    try:
        return ZoneInfo(args.tz)
    except (ZoneInfoNotFoundError, ValueError, OSError, RecursionError):  # a path, a huge name
        raise UserError(f"--tz {args.tz}: not a time zone name (e.g. Asia/Shanghai, UTC)") from None


def window(
    args: argparse.Namespace, default: timedelta = timedelta(hours=24)
) -> tuple[datetime, datetime]:
    """``--from``/``--to`` (``default`` before ``--to``, which is now by default)."""
    tz = zone(args)
    now = datetime.now(tz)
    end = parse_time(args.end, tz, now, "--to") if args.end else now
    start = parse_time(args.start, tz, now, "--from") if args.start else end - default
    if start >= end:
        raise UserError(f"--from ({start.isoformat()}) must be before --to ({end.isoformat()})")
    return start, end


def day(text: str, tz: ZoneInfo, flag: str) -> date:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        # the day in tz of a time given with another offset (20:00Z is the next day in China)
        return parse_time(text, tz, datetime.now(tz), flag).astimezone(tz).date()
    if not TIME_MIN.date() <= day < TIME_MAX.date():
        raise UserError(f"{flag} {text!r}: expected a day from 1970 to 2199")
    return day


def _connect(settings: Settings, dsn: str, tz: str) -> psycopg.Connection[Any]:
    pg = dataclasses.replace(settings.postgres, dsn=dsn)
    extra: dict[str, Any] = {"password": pg.password} if pg.password else {}
    try:
        # postgres_dsn adds the TLS keys where the URL has none (?sslmode=disable stays).
        conn = psycopg.connect(
            postgres_dsn(pg),
            connect_timeout=max(1, round(pg.connect_timeout_s)),
            autocommit=True,
            **extra,
        )
    except (psycopg.OperationalError, psycopg.ProgrammingError) as exc:
        # ProgrammingError: libpq refuses an option of the URL's query it does not know
        # (asyncpg passes it to the server as a setting), before any connection.
        first = first_line(exc)
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
    try:
        conn.execute("SELECT set_config('TimeZone', %s, false)", [tz])
    except psycopg.errors.InvalidParameterValue:
        conn.close()  # Python's zone database knows it (zone() passed), the server's does not
        raise UserError(
            f"--tz {tz}: the database server knows no such time zone (its names: SELECT name "
            "FROM pg_timezone_names); use a name such as Asia/Shanghai or UTC"
        ) from None
    # DateStyle ISO: psycopg parses times only in ISO (with a database defaulting to SQL it
    # raised NotImplementedError on the first timestamptz), and ISO prints numeric offsets.
    conn.execute(
        "SELECT set_config('statement_timeout', %s, false), set_config('DateStyle', 'ISO', false)",
        [f"{pg.statement_timeout_ms}ms"],
    )
    return conn


def execute(
    args: argparse.Namespace,
    build: Callable[[str], Statement],
    entity: Entity | None = None,
    *,
    if_unknown: tuple[Callable[[str], Statement], str] | None = None,
) -> int:
    return execute_sections(
        args, lambda schema: [("", build(schema))], entity, if_unknown=if_unknown
    )


def target_dsn(settings: Settings, entity: Entity | None, *, dsn_flag: bool = False) -> str:
    """The database a query reads (``storage.shards``, docs/storage.md): ``--dsn`` when given;
    with shards, ``entity``'s shard for a query about one entity's own rows, else the query
    database that unions them; without shards, ``postgres.dsn``. With ``storage.replicas``, a
    shard is read on its replica instead."""
    shards = settings.storage.shards
    replicas = settings.storage.replicas
    if dsn_flag:
        return settings.postgres.dsn
    if not shards:
        return replicas[0] if replicas else settings.postgres.dsn
    if entity is not None:
        _source, key = entity
        partition = kafka_partition(key.encode(), settings.kafka.partitions)
        return (replicas or shards)[shard_of(partition, len(shards))]
    if settings.storage.query_dsn:
        return settings.storage.query_dsn
    if len(shards) == 1:
        return (replicas or shards)[0]
    raise UserError(
        f"this query reads every shard ({len(shards)} in storage.shards): set "
        "storage.query_dsn (NEV_STORAGE_QUERY_DSN) and run nev-ingest migrate to build it"
    )


def execute_sections(
    args: argparse.Namespace,
    build: Callable[[str], Sections],
    entity: Entity | None = None,
    *,
    if_empty: dict[str, str] | None = None,
    reads: tuple[str, ...] = (),
    if_unknown: tuple[Callable[[str], Statement], str] | None = None,
) -> int:
    """Run each titled statement of ``build(schema)`` and print them in ``args.format`` (or
    their plans with ``--explain``). One untitled statement prints as a plain result.
    ``if_empty`` maps a title to a note for stderr when that section has no rows (what was
    asked for does not exist; the exit status stays 0, as for an unknown VIN). ``reads``:
    relations the login must be allowed to read (or their ``_scoped`` views) though the
    statements do not read them - where row-level access would hide the rows asked about
    (answering 0 of them), the query is refused as the server refuses a table it may not read.
    ``if_unknown``: (a statement of ``schema`` with a row when what was asked about exists, the
    note for stderr when it has none), run only when every result is empty: no rows of an
    unknown id say so, in every format, where no rows of a known one do not.

    ``entity`` (raw source, Kafka record key) says that every statement reads only rows that
    entity's frames wrote: with shards it runs on that entity's shard alone."""
    settings = settings_from_args(args, database_flags(args))
    zone(args)  # a one-line error for a bad --tz, before any statement uses it
    statements = build(settings.storage.schema)
    results: list[tuple[str, QueryResult | list[str], bool]] = []
    dsn = target_dsn(settings, entity, dsn_flag=bool(args.dsn))
    with _connect(settings, dsn, args.tz) as conn:
        # an OEM or charging login on TimescaleDB reads the _scoped views (storage.queries_scoped)
        scoped = unreadable_with_scoped(conn, settings.storage.schema)
        statements = [
            (t, through_scoped(st, settings.storage.schema, scoped)) for t, st in statements
        ]
        try:
            for relation in reads:
                if not readable(conn, settings.storage.schema, relation):
                    raise UserError(
                        _denied(f"permission denied for table {relation}", conn.info.user)
                    )
            for title, statement in statements:
                results.append(
                    (
                        title,
                        queries.explain(conn, statement)
                        if args.explain
                        else queries.run(conn, statement),
                        statement.limited,
                    )
                )
            unknown = None
            empty = all(isinstance(r, QueryResult) and not r.rows for _, r, _ in results)
            if if_unknown is not None and empty:
                probe, unknown = if_unknown
                found = through_scoped(
                    probe(settings.storage.schema), settings.storage.schema, scoped
                )
                if queries.run(conn, found).rows:
                    unknown = None
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
        except psycopg.errors.InsufficientPrivilege as exc:
            # An OEM or charging operator's login (nev-ingest roles) may read only its own
            # kind of rows: a query of another kind is refused by the server, not a bug.
            what = exc.diag.message_primary or "permission denied"
            raise UserError(_denied(what, conn.info.user)) from None
        except psycopg.errors.UndefinedObject as exc:
            # On the query database every read goes through the reader's own user mapping
            # (postgres_fdw): a login nobody made one for is a setup step, not a bug. Any
            # other undefined object is one, and keeps its traceback.
            if not (exc.diag.message_primary or "").startswith("user mapping not found"):
                raise
            raise UserError(_unmapped(conn.info.user)) from None
    # A reader that goes away (| head) ends the command quietly (ingest.cli.output).
    for n, (title, result, limited) in enumerate(results):
        if isinstance(result, QueryResult):
            _print(result, args.format, title, first=n == 0)
            if not result.rows and title in (if_empty or {}):
                note((if_empty or {})[title])
            limit = getattr(args, "limit", None)
            if limited and limit is not None and len(result.rows) >= limit:
                # JSON and CSV readers see no row count: say that rows may be missing.
                where = f"{title}: " if title else ""
                note(
                    f"{where}{row_count(len(result.rows))}, the --limit: there may be more "
                    "(raise --limit or narrow the query)"
                )
        else:
            if title:
                print(f"== {title}")
            for line in result:
                print(line)
    if unknown is not None:
        note(unknown)
    return 0


def _denied(what: str, login: str) -> str:
    return (
        f"login {login}: {what}; this query needs a regulator login (nev-ingest roles "
        "grant LOGIN --as regulator); OEM logins read their vehicles only, charging logins "
        "their connectors only"
    )


def _unmapped(login: str) -> str:
    return (
        f"no user mapping for {login} on the query database: as its owner, CREATE USER "
        f"MAPPING FOR {login} SERVER nev_shard_<i> for each shard (docs/storage.md, "
        '"Reading the query database"), or use a login that has them'
    )


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


def _print(result: QueryResult, fmt: str, title: str = "", *, first: bool = True) -> None:
    """One result; a titled one (a section of a report) says its title: a ``section`` key in
    JSON, a leading ``section`` column in CSV, a ``== title`` line above a table."""
    rows = [[_cell(v) for v in row] for row in result.rows]
    columns = result.columns
    out = sys.stdout
    if fmt == "json":
        for row in rows:
            obj = dict(zip(columns, row, strict=True))
            out.write(orjson.dumps({"section": title, **obj} if title else obj).decode() + "\n")
        return
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        lead = [title] if title else []
        if title and not first:
            out.write("\n")
        writer.writerow((["section"] if title else []) + columns)
        writer.writerows(
            lead + [orjson.dumps(v).decode() if isinstance(v, list) else v for v in row]
            for row in rows
        )
        return
    if title:
        out.write(("" if first else "\n") + f"== {title}\n")
    if not rows:
        if title:
            out.write("(none)\n")
        else:
            note("(no rows)")
        return
    text = [columns] + [
        [
            "" if v is None else orjson.dumps(v).decode() if isinstance(v, list) else str(v)
            for v in row
        ]
        for row in rows
    ]
    widths = [max(len(r[i]) for r in text) for i in range(len(columns))]
    for n, r in enumerate(text):
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")
        if n == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")
    note(f"({row_count(len(rows))})" if not title else f"({title}: {row_count(len(rows))})")
