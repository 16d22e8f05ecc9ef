"""``nev-ingest migrate``: create or update the schema, show its status, run upkeep once.

The database and every size/interval come from the configuration (``[postgres]``,
``[storage]``; ``--dsn``/``--schema``/``--mode`` override). With ``storage.shards`` every shard
is migrated (each a complete schema), then the query database (``storage.query_dsn``) is made
to span them (``storage.fdw``); ``--dsn`` migrates that one database only. Safe to run from
several places at once (an advisory lock serialises them) and as often as you like (it only
does what is missing). ``--maintain`` also runs one pass of the plain-PostgreSQL upkeep
(partitions ahead, retention, summary tables) - what the service does periodically, for cron or
after a pause.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from ingest.cli.args import add_database_arguments, database_flags
from ingest.config import Settings
from ingest.config.fields import mask_dsn
from ingest.config.load import add_config_arguments, settings_from_args
from ingest.errors import UserError
from ingest.pipeline.schema_check import check_map
from ingest.wiring import (
    pool_params,
    query_pool_params,
    shard_pool_params,
    storage_params,
    unreachable_database,
)
from storage import (
    MigrationError,
    MigrationReport,
    PoolParams,
    SchemaMode,
    fdw,
    migrate,
    run_maintenance,
)
from storage.connect import connect
from storage.migrate import schema_status
from storage.roles_names import RoleNames
from storage.shard_map import ShardFacts, is_new, read_facts, record_identity

__all__ = ["open_connection", "register", "role_names"]


def register(subparsers: Any) -> None:
    """Add the ``migrate`` subcommand."""
    p = subparsers.add_parser(
        "migrate",
        help="create or update the database schema (idempotent, safe to run concurrently)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    add_database_arguments(p)
    p.add_argument(
        "--mode",
        choices=[m.value for m in SchemaMode],
        help="flavour (overrides postgres.schema_mode; auto detects timescaledb)",
    )
    p.add_argument(
        "--status",
        action="store_true",
        help="change nothing: show the flavour and versions; exit 1 when migrations are pending",
    )
    p.add_argument(
        "--maintain", action="store_true", help="then run one upkeep pass (plain PostgreSQL)"
    )
    p.add_argument(
        "--reshard",
        action="store_true",
        help='change the storage.shards map by the procedure in docs/storage.md ("Changing '
        'N"): first migrate the new, empty shards, then, once the partitions were moved, record '
        "each shard's new place; without it a shard configured at another index or count than "
        "recorded is refused",
    )
    p.add_argument("--format", choices=("text", "json"), default="text")
    add_config_arguments(p)
    p.set_defaults(func=_main)


def _settings(args: argparse.Namespace) -> Settings:
    flags = database_flags(args)
    if args.mode:
        flags["postgres.schema_mode"] = args.mode
    return settings_from_args(args, flags)


async def open_connection(
    settings: Settings,
    application: str,
    params: PoolParams | None = None,
    *,
    fix: str = "set --dsn / NEV_POSTGRES_DSN (with shards: NEV_STORAGE_SHARDS, "
    "NEV_STORAGE_QUERY_DSN)",
) -> Any:
    """One asyncpg connection to ``params`` (default: the configured database), or a one-line
    ``UserError`` that ends with ``fix`` (the command's way to name the database)."""
    params = params or pool_params(settings, application)
    try:
        return await connect(params)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise UserError(
            f"cannot connect to {mask_dsn(params.dsn)} ({type(exc).__name__}: {exc}); "
            f"{unreachable_database(params.dsn)} or {fix}"
        ) from None


def _main(args: argparse.Namespace) -> int:
    if args.dsn and args.reshard:
        # --dsn migrates one database outside the map (nothing checked, nothing recorded):
        # --reshard, which records the map, would be ignored and the operator told nothing.
        raise UserError(
            "--reshard records the storage.shards map, --dsn migrates one database outside "
            "it: drop --dsn (the shards come from storage.shards / NEV_STORAGE_SHARDS)"
        )
    settings = _settings(args)
    return asyncio.run(_run(args, settings))


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    app = "nev-ingest migrate"
    # --dsn names one database: exactly that one is migrated, as before shards existed.
    targets = [pool_params(settings, app)] if args.dsn else shard_pool_params(settings, app)
    query = None if args.dsn else query_pool_params(settings, app)
    label = len(targets) > 1 or query is not None
    # --reshard: the new shards migrated before the map check, each printed once
    prepared: dict[int, _Done] = {}
    if not args.dsn:  # --dsn: one database out of the map, nothing to compare it with
        # Read once: migrating a new shard changes none of its facts (no place is recorded,
        # no offsets written), so the check can judge what was read before.
        facts = await _facts(settings, targets)
        if args.reshard and not args.status:
            prepared = await _prepare_new(args, settings, targets, facts, label)
        try:
            check_map(
                facts, [p.dsn for p in targets], bool(settings.storage.shards), reshard=args.reshard
            )
        except UserError:
            for index, done in prepared.items():  # what was done stays done: say so first
                _print(args, *_labels(index, label), done)
            raise
    status = 0
    for index, params in enumerate(targets):
        prefix, extra = _labels(index, label)
        if args.status:
            status = max(status, await _status(args, settings, params, prefix, extra))
            continue
        identity = None if args.dsn else (index, len(targets))
        done = await _migrate(args, settings, params, prefix, identity, prepared.get(index))
        _print(args, prefix, extra, done)
    if query is not None and not args.status:
        await _query_database(args, settings, targets, query)
    return status


def _labels(index: int, label: bool) -> tuple[str, dict[str, Any]]:
    """How the lines (text) and the object (JSON) of database ``index`` name it."""
    return (f"shard {index}: ", {"shard": index}) if label else ("", {})


@dataclass(slots=True)
class _Done:
    """What migrating one database did (printed once, after its place is recorded)."""

    report: MigrationReport
    granted: list[str]
    lines: list[str]
    maintenance: list[str] | None = None  # None: no upkeep pass run yet


async def _status(
    args: argparse.Namespace,
    settings: Settings,
    target: PoolParams,
    prefix: str,
    extra: dict[str, Any],
) -> int:
    """--status: describe one database; 1 when it is not migrated or migrations are pending."""
    conn = await open_connection(settings, target.application_name, target)
    try:
        status = await schema_status(conn, storage_params(settings).schema)
    finally:
        await conn.close()
    out: dict[str, Any] = {
        **extra,
        "schema": status.schema,
        "mode": status.mode.value if status.mode else None,
        "applied": list(status.applied),
        "pending": list(status.pending),
    }
    if args.format == "json":
        print(orjson.dumps(out).decode())
    elif status.mode is None:
        print(f"{prefix}schema {status.schema}: not migrated (run nev-ingest migrate)")
    else:
        pending = ", ".join(status.pending) or "none"
        print(
            f"{prefix}schema {status.schema}: {status.mode.value}, versions "
            f"{', '.join(f'{v:04d}' for v in status.applied)}; pending: {pending}"
        )
    return 1 if status.mode is None or status.pending else 0


async def _migrate(
    args: argparse.Namespace,
    settings: Settings,
    target: PoolParams,
    prefix: str,
    identity: tuple[int, int] | None,
    done: _Done | None = None,
) -> _Done:
    """Migrate one database (unless ``done``: --reshard migrated it before the map check),
    record ``identity`` ((index, N) in the shard map) and with --maintain run one upkeep
    pass, each once."""
    params = storage_params(settings)
    conn = await open_connection(settings, target.application_name, target)
    try:
        if done is None:
            report = await migrate(conn, params)
            granted = await _roles(conn, settings, report.mode)
            done = _Done(report, granted, _summarise(report.settings) + granted)
        if identity is not None and await record_identity(conn, params.schema, *identity):
            done.lines.append(f"shard identity: shard {identity[0]} of {identity[1]}")
        if args.maintain and done.maintenance is None:
            ran = await run_maintenance(conn, params, done.report.mode)
            done.maintenance = (
                ["skipped: another upkeep pass holds the lock"]
                if ran.skipped
                else _summarise(ran.lines())
            )
    except MigrationError as exc:
        raise UserError(f"{prefix}{exc}") from None
    except asyncpg.PostgresError as exc:
        # Outside a migration file: the schema's creation, the roles' grants, the policies,
        # the upkeep. Mostly rights (the login may not CREATE in the database).
        raise _refused(prefix, exc) from None
    finally:
        await conn.close()
    return done


def _print(args: argparse.Namespace, prefix: str, extra: dict[str, Any], done: _Done) -> None:
    """One database's outcome: one JSON object, or its lines."""
    report, maintenance = done.report, done.maintenance or []
    if args.format == "json":
        print(
            orjson.dumps(
                {
                    **extra,
                    "schema": report.schema,
                    "mode": report.mode.value,
                    "applied": report.applied,
                    "version": report.current,
                    "settings": report.settings,
                    "roles": done.granted,
                    "maintenance": maintenance,
                }
            ).decode()
        )
        return
    applied = ", ".join(report.applied) if report.applied else "nothing to apply"
    print(
        f"{prefix}schema {report.schema} ({report.mode.value}): {applied}; "
        f"at version {report.current:04d}"
    )
    for line in done.lines + maintenance:
        print(f"  {line}")


async def _prepare_new(
    args: argparse.Namespace,
    settings: Settings,
    targets: list[PoolParams],
    facts: list[ShardFacts],
    label: bool,
) -> dict[int, _Done]:
    """--reshard: give the shards that are new (storage.shard_map.is_new) their schema first.
    A shard added by "Changing N" has no tables until it is migrated, and its partitions' rows
    must be moved into those tables before the map can hold; checking first would refuse the
    very step that lets the move happen. Nothing is recorded or printed here: a new shard's
    place is recorded once the whole map holds, and what was done printed then (or before a
    refusal), once."""
    prepared = {}
    for index, (params, found) in enumerate(zip(targets, facts, strict=True)):
        if is_new(found):
            prefix = _labels(index, label)[0]
            prepared[index] = await _migrate(args, settings, params, prefix, None)
    return prepared


async def _facts(settings: Settings, targets: list[PoolParams]) -> list[ShardFacts]:
    """What each configured database says about itself, in map order."""
    facts = []
    for params in targets:
        conn = await open_connection(settings, params.application_name, params)
        try:
            facts.append(await read_facts(conn, settings.storage.schema))
        except asyncpg.PostgresError as exc:
            raise _refused("", exc) from None
        finally:
            await conn.close()
    return facts


def _refused(prefix: str, exc: BaseException) -> UserError:
    said = " ".join(str(exc).split())  # one line: the server's text may carry a hint below
    if isinstance(
        exc, asyncpg.InsufficientPrivilegeError | asyncpg.InvalidAuthorizationSpecificationError
    ):
        what = (
            "migrate needs a login that may create schemas, tables, roles and (on the query "
            "database) the postgres_fdw extension there: the database's owner, or a superuser "
            "for the extension"
        )
    elif isinstance(exc, asyncpg.PostgresConnectionError | asyncpg.AdminShutdownError):
        what = "the connection was lost: run migrate again once the server answers"
    else:
        what = "run migrate again once that is fixed (what it applied stays applied)"
    return UserError(f"{prefix}the database refused ({type(exc).__name__}: {said}); {what}")


async def _query_database(
    args: argparse.Namespace, settings: Settings, shards: list[PoolParams], query: PoolParams
) -> None:
    """The query database over the (just migrated) shards: foreign servers, tables, views."""
    schema = settings.storage.schema
    first = await open_connection(settings, query.application_name, shards[0])
    try:
        functions = await fdw.shard_functions(first, schema)
        views = await fdw.shard_views(first, schema)
    except asyncpg.PostgresError as exc:
        raise _refused("shard 0: ", exc) from None
    finally:
        await first.close()
    conn = await open_connection(settings, query.application_name, query)
    try:
        # storage.replicas (one per shard, in order): the servers read the replicas
        replicas = settings.storage.replicas or (None,) * len(shards)
        links = [fdw.ShardLink(p.dsn, p.password, r) for p, r in zip(shards, replicas, strict=True)]
        report = await fdw.build(conn, schema, links, functions, views)
    except MigrationError as exc:
        raise UserError(str(exc)) from None
    except asyncpg.PostgresError as exc:
        # e.g. CREATE EXTENSION postgres_fdw, which needs a superuser or a trusted extension
        raise _refused("query database: ", exc) from None
    finally:
        await conn.close()
    if args.format == "json":
        out = {
            "query_database": mask_dsn(query.dsn),
            "schema": report.schema,
            "shards": report.shards,
            "views": report.views,
            "removed_shards": report.removed_shards,
            "left_out": report.left_out,
        }
        print(orjson.dumps(out).decode())
        return
    print(
        f"query database: schema {report.schema} unions {report.shards} shard(s) "
        f"in {len(report.views)} views (postgres_fdw)"
    )
    for name in report.removed_shards:
        print(f"  removed: {name} (no longer in storage.shards)")
    for name in report.left_out:
        print(
            f"  left out: view {name} (not known to be right as a union of the shards: "
            "storage/fdw_views.py classifies each view; query it on each shard)"
        )


def role_names(settings: Settings) -> RoleNames:
    """The ``[roles]`` names as ``storage.roles`` takes them."""
    r = settings.roles
    return RoleNames(r.owner, r.writer, r.regulator, r.operator, r.oem, r.charging, r.public)


async def _roles(conn: Any, settings: Settings, mode: SchemaMode) -> list[str]:
    """With roles.enabled: the roles, grants and row-level policies (storage.roles)."""
    if not settings.roles.enabled:
        return []
    from storage import roles

    done = await roles.apply(conn, settings.storage.schema, role_names(settings), mode)
    return [f"roles: {line}" for line in done.changes]


def _summarise(lines: list[str]) -> list[str]:
    """Partition lines counted per table (a fresh plain schema makes dozens)."""
    counts: dict[str, int] = {}
    out: list[str] = []
    for line in lines:
        head, sep, name = line.partition(": ")
        if sep and head.startswith("partition") and "_p" in name:
            key = f"{head}: {name.rsplit('_p', 1)[0]}"
            if key not in counts:
                out.append(key)
            counts[key] = counts.get(key, 0) + 1
        else:
            out.append(line)
    return [f"{line} x{counts[line]}" if line in counts else line for line in out]
