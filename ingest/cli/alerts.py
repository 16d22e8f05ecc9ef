"""``nev-ingest alerts``: what operators do with alerts: list them, acknowledge them.

``alerts list`` shows open alerts (``--all`` for cleared ones too), newest first, filtered by
entity kind (vehicle, charger, battery), entity, rule or minimum severity, as a table or JSON
lines. ``alerts ack ID...`` records who
acknowledged which alert (an acknowledged alert stays open until its condition clears; the
engine never touches the acknowledgement). The database is the ``[postgres]`` configuration
(``--config``, ``NEV_POSTGRES_DSN``, ``--set postgres.dsn=...``) or ``--dsn``.

With ``storage.shards`` (and no ``--dsn``), alerts live in the shard of the partition that
raised them and their ids are per shard: ``list`` reads every shard and names an alert
``SHARD:ID``, which is what ``ack`` then takes. A shard that does not answer does not hide the
others' alerts: ``list`` shows what the reachable shards hold, prints one warning line per
unreachable ``storage.shards[i]`` and exits 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row

from alerts.model import SEVERITIES
from contract.clock import CHINA_TZ
from contract.kinds import ENTITY_KINDS
from ingest.cli.args import add_limit_argument, int_range, text
from ingest.config.load import add_config_arguments, settings_from_args
from ingest.errors import UserError
from ingest.pipeline.schema_check import dsn_place
from ingest.wiring import first_line, postgres_dsn

__all__ = ["register"]

MAX_ROWS = 100_000
_ID = int_range(1, 2**63 - 1)  # alerts.id is a bigint
_SHARD = int_range(0, 1023)
# An alert as `ack` takes it: (shard, id); shard None without shards.
AlertRef = tuple[int | None, int]


def _alert_ref(value: str) -> AlertRef:
    """``ID``, or ``SHARD:ID`` as ``alerts list`` shows it with shards."""
    shard, colon, ident = value.rpartition(":")
    return (_SHARD(shard) if colon else None, _ID(ident))


def register(subparsers: Any) -> None:
    """Add the ``alerts`` subcommand (``list``, ``ack``)."""
    p = subparsers.add_parser("alerts", help="list and acknowledge battery-safety alerts")
    sub = p.add_subparsers(dest="alerts_command", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="open alerts, newest first (--all: cleared too)")
    ls.add_argument("--all", action="store_true", help="include cleared alerts")
    ls.add_argument("--kind", choices=ENTITY_KINDS, help="one entity kind")
    ls.add_argument(
        "--entity", type=text(64), help="one entity id: VIN, operator_id:connector_id, pack code"
    )
    ls.add_argument("--rule", type=text(64), help="one rule id")
    ls.add_argument("--severity", choices=SEVERITIES, help="this severity or worse")
    ls.add_argument("--unacked", action="store_true", help="only alerts nobody acknowledged")
    add_limit_argument(ls, most=MAX_ROWS, default=50)
    ls.add_argument("--format", choices=("table", "json"), default="table")
    ls.set_defaults(func=_list)
    ack = sub.add_parser("ack", help="acknowledge alerts by id")
    ack.add_argument("ids", nargs="+", type=_alert_ref, metavar="ID")
    ack.add_argument("--by", type=text(128), required=True, help="who acknowledges (name or login)")
    ack.add_argument("--note", type=text(2000), help="one line kept with the acknowledgement")
    ack.set_defaults(func=_ack)
    for sp in (ls, ack):
        sp.add_argument("--dsn", help="PostgreSQL DSN (overrides postgres.dsn)")
        add_config_arguments(sp)


def _databases(args: argparse.Namespace) -> tuple[str, list[tuple[int | None, Any]]]:
    """``storage.schema`` and (shard, postgres settings) of every database holding alerts: the
    shards of ``storage.shards`` (none with ``--dsn``), else the one of ``postgres.dsn``
    (shard None)."""
    settings = settings_from_args(args, {"postgres.dsn": args.dsn} if args.dsn else None)
    pg, schema = settings.postgres, settings.storage.schema
    if args.dsn or not settings.storage.shards:
        return schema, [(None, pg)]
    shards = enumerate(settings.storage.shards)
    return schema, [(i, dataclasses.replace(pg, dsn=d)) for i, d in shards]


class _Unreachable(UserError):
    """A database of ``alerts`` did not answer (its message names it and the setting)."""


def _where(shard: int | None, pg: Any) -> str:
    """The database as a message names it: the setting it comes from and where it points
    (host and database, never the credentials)."""
    at = dsn_place(pg.dsn)
    return f"storage.shards[{shard}] ({at})" if shard is not None else f"the database ({at})"


def _fix(shard: int | None) -> str:
    if shard is None:
        return "set --dsn, NEV_POSTGRES_DSN or [postgres] dsn in --config"
    return (
        f"bring that database back, or correct storage.shards[{shard}] (NEV_STORAGE_SHARDS, "
        "[storage] shards in --config)"
    )


def _connect(pg: Any, schema: str, shard: int | None) -> psycopg.Connection[dict[str, Any]]:
    extra: dict[str, Any] = {"password": pg.password} if pg.password else {}
    try:
        # postgres_dsn adds the TLS keys where the URL has none: a keyword argument would
        # override the URL's own (a ?sslmode=verify-full in the DSN dropped to "prefer").
        conn = psycopg.connect(
            postgres_dsn(pg),
            row_factory=dict_row,
            connect_timeout=max(1, round(pg.connect_timeout_s)),
            **extra,
        )
    except (psycopg.OperationalError, psycopg.ProgrammingError) as exc:
        # ProgrammingError: libpq refuses an option of the URL's query it does not know
        # (asyncpg passes it to the server as a setting), before any connection.
        first = first_line(exc)
        # without shards the DSN is the user's own (--dsn or postgres.dsn): not echoed back
        name = "the database" if shard is None else _where(shard, pg)
        raise _Unreachable(f"cannot connect to {name}: {first} ({_fix(shard)})") from exc
    # The tables live in storage.schema (`nev-ingest migrate` puts them there) and the
    # statements below name them unqualified, as the service's sessions do (storage/connect.py):
    # set after connecting, not as a startup option, which would replace a DSN's own
    # `options` and which poolers such as PgBouncer refuse.
    # DateStyle ISO: psycopg parses times only in ISO; a database or role defaulting to another
    # (ALTER DATABASE ... SET DateStyle = 'SQL, DMY') made the first timestamptz raise.
    conn.execute(
        "SELECT set_config('search_path', %s, false), set_config('DateStyle', 'ISO', false)",
        [f"{schema}, public"],
    )
    conn.commit()
    return conn


def _run(
    conn: psycopg.Connection[dict[str, Any]],
    sql: str,
    params: list[Any],
    where: str,
    schema: str,
) -> list[dict[str, Any]]:
    try:
        with conn.cursor() as cur:
            cur.execute(sql.encode(), params)
            return cur.fetchall() if cur.description else []
    except psycopg.errors.UndefinedTable as exc:
        raise UserError(
            f"no alerts table in schema {schema} of {where}: run `nev-ingest migrate` first"
        ) from exc


def _list(args: argparse.Namespace) -> int:
    where, params = ["true"], []
    if not args.all:
        where.append("cleared_at IS NULL")
    if args.kind:
        where.append("entity_kind = %s")
        params.append(args.kind)
    if args.entity:
        where.append("entity_id = %s")
        params.append(args.entity)
    if args.rule:
        where.append("rule_id = %s")
        params.append(args.rule)
    if args.severity:
        where.append("severity = ANY(%s)")
        params.append(list(SEVERITIES[SEVERITIES.index(args.severity) :]))
    if args.unacked:
        where.append("acked_at IS NULL")
    params.append(args.limit)
    rows: list[dict[str, Any]] = []
    sql = (
        "SELECT id, entity_kind, entity_id, rule_id, severity, title, opened_at, last_seen_at, "
        "cleared_at, peak_value, frame_count, late, acked_at, acked_by, ack_note FROM alerts "
        f"WHERE {' AND '.join(where)} ORDER BY opened_at DESC, id DESC LIMIT %s"
    )
    schema, databases = _databases(args)
    missing = 0
    for shard, pg in databases:
        try:
            with _connect(pg, schema, shard) as conn:
                got = _run(conn, sql, params, _where(shard, pg), schema)
        except (_Unreachable, psycopg.OperationalError) as exc:
            if shard is None:
                raise
            # An outage of one shard is when operators need the others' open alerts most:
            # list those, and say which shard's are missing (exit 1). OperationalError: the
            # shard went away between connecting and answering, the same outage.
            said = (
                exc
                if isinstance(exc, _Unreachable)
                else f"{_where(shard, pg)} failed: {first_line(exc)}"
            )
            print(f"warning: {said}; its alerts are not listed", file=sys.stderr)
            missing += 1
            continue
        if shard is not None:  # ids are per shard: SHARD:ID names one
            got = [{**r, "id": f"{shard}:{r['id']}"} for r in got]
        rows.extend(got)
    rows.sort(key=lambda r: r["opened_at"], reverse=True)
    del rows[args.limit :]
    status = 1 if missing else 0
    if args.format == "json":
        for r in rows:
            print(orjson.dumps(r, default=str).decode())
        return status
    if not rows:
        print("no alerts" if args.all else "no open alerts")
        return status
    print(
        f"{'ID':>6}  {'OPENED (+08:00)':<19}  {'SEVERITY':<8}  {'KIND':<7}  {'ENTITY':<17}  "
        f"{'RULE':<26}  STATE"
    )
    for r in rows:
        state = "open" if r["cleared_at"] is None else f"cleared {_local(r['cleared_at'])}"
        if r["acked_at"] is not None:
            state += f", acked by {r['acked_by']}"
        print(
            f"{r['id']:>6}  {_local(r['opened_at'])}  {r['severity']:<8}  "
            f"{r['entity_kind']:<7}  {r['entity_id']:<17}  {r['rule_id']:<26}  {state}"
        )
    return status


def _local(dt: datetime) -> str:
    return dt.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")


def _ack(args: argparse.Namespace) -> int:
    schema, listed = _databases(args)
    databases = dict(listed)
    sharded = None not in databases
    refs: list[AlertRef] = args.ids
    wrong = [r for r in refs if (r[0] is None) == sharded or (sharded and r[0] not in databases)]
    if wrong:
        shard, ident = wrong[0]
        given = f"{shard}:{ident}" if shard is not None else str(ident)
        raise UserError(
            f"alert {given}: with storage.shards give SHARD:ID as `alerts list` shows it "
            f"(shards 0..{len(databases) - 1})"
            if sharded
            else f"alert {given}: give the ID alone (this database has no shards)"
        )
    names = {r: f"{r[0]}:{r[1]}" if sharded else str(r[1]) for r in refs}
    acked: set[AlertRef] = set()
    by_ref: dict[AlertRef, str] = {}
    for shard, pg in databases.items():
        ids = [i for s, i in refs if s == shard]
        if not ids:
            continue
        where = _where(shard, pg)
        with _connect(pg, schema, shard) as conn:
            done = _run(
                conn,
                "UPDATE alerts SET acked_at = now(), acked_by = %s, ack_note = %s, "
                "updated_at = now() WHERE id = ANY(%s) AND acked_at IS NULL RETURNING id",
                [args.by, args.note, ids],
                where,
                schema,
            )
            known = _run(
                conn, "SELECT id, acked_by FROM alerts WHERE id = ANY(%s)", [ids], where, schema
            )
        acked.update((shard, r["id"]) for r in done)
        by_ref.update(((shard, r["id"]), r["acked_by"]) for r in known)
    for ref in refs:
        if ref in acked:
            print(f"alert {names[ref]}: acknowledged by {args.by}")
        elif ref in by_ref:
            print(f"alert {names[ref]}: already acknowledged by {by_ref[ref]}")
        else:
            print(f"alert {names[ref]}: no such alert (see `nev-ingest alerts list --all`)")
    return 0 if all(ref in by_ref for ref in refs) else 1
