"""``nev-ingest migrate``: create or update the schema, show its status, run upkeep once.

The database and every size/interval come from the configuration (``[postgres]``,
``[storage]``; ``--dsn``/``--schema``/``--mode`` override). Safe to run from several places at
once (an advisory lock serialises them) and as often as you like (it only does what is
missing). ``--maintain`` also runs one pass of the plain-PostgreSQL upkeep (partitions ahead,
retention, summary tables) - what the service does periodically, for cron or after a pause.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import asyncpg
import orjson

from ingest.cli.args import add_database_arguments, database_flags
from ingest.config import Settings
from ingest.config.fields import mask_dsn
from ingest.config.load import add_config_arguments, settings_from_args
from ingest.errors import UserError
from ingest.wiring import pool_params, storage_params
from storage import (
    MigrationError,
    SchemaMode,
    migrate,
    run_maintenance,
)
from storage.connect import connect
from storage.migrate import schema_status

__all__ = ["register"]


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
    p.add_argument("--format", choices=("text", "json"), default="text")
    add_config_arguments(p)
    p.set_defaults(func=_main)


def _settings(args: argparse.Namespace) -> Settings:
    flags = database_flags(args)
    if args.mode:
        flags["postgres.schema_mode"] = args.mode
    return settings_from_args(args, flags)


async def open_connection(settings: Settings, application: str) -> Any:
    """One asyncpg connection to the configured database, or a one-line ``UserError``."""
    params = pool_params(settings, application)
    try:
        return await connect(params)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise UserError(
            f"cannot connect to {mask_dsn(settings.postgres.dsn)} ({type(exc).__name__}: {exc}); "
            "start the dev stack (nev-ingest devstack up) or set --dsn / NEV_POSTGRES_DSN"
        ) from None


def _main(args: argparse.Namespace) -> int:
    settings = _settings(args)
    return asyncio.run(_run(args, settings))


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    params = storage_params(settings)
    conn = await open_connection(settings, "nev-ingest migrate")
    try:
        if args.status:
            status = await schema_status(conn, params.schema)
            out: dict[str, Any] = {
                "schema": status.schema,
                "mode": status.mode.value if status.mode else None,
                "applied": list(status.applied),
                "pending": list(status.pending),
            }
            if args.format == "json":
                print(orjson.dumps(out).decode())
            elif status.mode is None:
                print(f"schema {status.schema}: not migrated (run nev-ingest migrate)")
            else:
                pending = ", ".join(status.pending) or "none"
                print(
                    f"schema {status.schema}: {status.mode.value}, versions "
                    f"{', '.join(f'{v:04d}' for v in status.applied)}; pending: {pending}"
                )
            return 1 if status.mode is None or status.pending else 0
        try:
            report = await migrate(conn, params)
        except MigrationError as exc:
            raise UserError(str(exc)) from None
        lines = _summarise(report.settings)
        maintenance: list[str] = []
        if args.maintain:
            done = await run_maintenance(conn, params, report.mode)
            maintenance = (
                ["skipped: another upkeep pass holds the lock"]
                if done.skipped
                else _summarise(done.lines())
            )
    finally:
        await conn.close()
    if args.format == "json":
        print(
            orjson.dumps(
                {
                    "schema": report.schema,
                    "mode": report.mode.value,
                    "applied": report.applied,
                    "version": report.current,
                    "settings": report.settings,
                    "maintenance": maintenance,
                }
            ).decode()
        )
        return 0
    applied = ", ".join(report.applied) if report.applied else "nothing to apply"
    print(
        f"schema {report.schema} ({report.mode.value}): {applied}; at version {report.current:04d}"
    )
    for line in lines + maintenance:
        print(f"  {line}")
    return 0


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
