"""Versioned, forward-only migrations (storage/migrations/, see ``storage.migration_files``).

A version is a file both flavours run (``0001_core.sql``), what each flavour adds to it, or
both (``0002_timeseries.sql`` + ``.plain.sql`` + ``.timescale.sql``: the tables written once,
partitioning/hypertables apart). Each applied version is a row of
``<schema>.schema_migrations`` (version, name, mode, checksum, time). Every version runs in its
own transaction with ``search_path = <schema>, public``, so the SQL is unqualified and one
database can hold several isolated schemas (tests do that on the single-connection engine).

``migrate`` sets the session's search_path (schema first, then the extension's schema) and
holds a session advisory lock for the whole run, so any number of processes may
run it at once: the first applies, the others wait and then find nothing to do. After the
files it reconciles what configuration decides (chunk intervals, policies; plain: partitions),
which is idempotent and runs every time.

The flavour is decided once: ``auto`` uses TimescaleDB when the extension is installed or can
be created, plain PostgreSQL otherwise; the choice is recorded with the first migration and
every later run follows it (a forced mode that contradicts the record is an error).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import asyncpg

from storage import policies
from storage.errors import MigrationError, SchemaError
from storage.migration_files import CONCRETE, MIGRATIONS_DIR, Migration, discover
from storage.params import SchemaMode, StorageParams, check_identifier

__all__ = [
    "LOCK_KEY",
    "MIGRATIONS_DIR",
    "Migration",
    "MigrationReport",
    "SchemaStatus",
    "discover",
    "migrate",
    "plan",
    "require_current",
    "schema_status",
]

log = logging.getLogger(__name__)

# One key for every schema of the database: CREATE EXTENSION is database-wide, and migrations
# are rare enough that serialising all of them costs nothing.
LOCK_KEY: Final = 0x6E65_7600_0001  # "nev\0" + 1


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """What ``migrate`` did."""

    schema: str
    mode: SchemaMode
    applied: list[str] = field(default_factory=list)  # "0002_timeseries" ...
    current: int = 0  # highest version now applied
    settings: list[str] = field(default_factory=list)  # policy/partition changes made


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """The state of a schema as the writer and the queries need it."""

    schema: str
    mode: SchemaMode | None  # None: never migrated
    applied: tuple[int, ...]
    pending: tuple[str, ...]  # files not applied yet for that mode


def plan(mode: SchemaMode, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The files of ``mode`` (plain or timescale), in version order."""
    if mode not in CONCRETE:
        raise ValueError(f"plan() needs a concrete mode, not {mode.value}")
    return [files[mode] for _, files in sorted(discover(directory).items())]


def _q(schema: str) -> str:
    return check_identifier(schema)


async def _bootstrap(conn: Any, schema: str) -> None:
    await conn.execute(
        f"""
        CREATE SCHEMA IF NOT EXISTS {_q(schema)};
        CREATE TABLE IF NOT EXISTS {_q(schema)}.schema_migrations (
            version     integer PRIMARY KEY,
            name        text        NOT NULL,
            mode        text        NOT NULL,
            checksum    text        NOT NULL,
            applied_at  timestamptz NOT NULL DEFAULT now(),
            duration_ms integer     NOT NULL
        );
        """
    )


async def _recorded(conn: Any, schema: str) -> tuple[SchemaMode | None, dict[int, str]]:
    exists = await conn.fetchval(
        "SELECT to_regclass($1) IS NOT NULL", f"{schema}.schema_migrations"
    )
    if not exists:
        return None, {}
    rows = await conn.fetch(
        f"SELECT version, mode, checksum FROM {_q(schema)}.schema_migrations ORDER BY version"
    )
    modes = {r["mode"] for r in rows}
    if len(modes) > 1:
        raise MigrationError(f"schema {schema} records several modes {sorted(modes)}: repair it")
    mode = SchemaMode(modes.pop()) if modes else None
    return mode, {r["version"]: r["checksum"] for r in rows}


async def _timescale_installed(conn: Any) -> bool:
    return bool(
        await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'")
    )


async def _extension_schema(conn: Any) -> str:
    """Where timescaledb's functions live (public unless someone installed it elsewhere)."""
    found = await conn.fetchval(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'timescaledb'"
    )
    return check_identifier(str(found), "extension schema") if found else "public"


async def _create_timescale(conn: Any) -> str | None:
    """Create the extension; the error text when the server cannot, else None."""
    try:
        async with conn.transaction():
            # public, whatever the session's search_path: where every tool expects it
            await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb WITH SCHEMA public")
    except asyncpg.PostgresError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


async def _decide_mode(conn: Any, wanted: SchemaMode, recorded: SchemaMode | None) -> SchemaMode:
    if recorded is not None:
        if wanted not in (SchemaMode.AUTO, recorded):
            raise MigrationError(
                f"this schema was built for {recorded.value} and schema_mode is {wanted.value}; "
                "use another schema (or database) to change flavour, or set schema_mode = "
                f"{recorded.value} (or auto)"
            )
        if recorded is SchemaMode.TIMESCALE and not await _timescale_installed(conn):
            problem = await _create_timescale(conn)
            if problem:
                raise MigrationError(f"schema is TimescaleDB but the extension is gone: {problem}")
        return recorded
    if wanted is SchemaMode.PLAIN:
        return SchemaMode.PLAIN
    if await _timescale_installed(conn):
        return SchemaMode.TIMESCALE
    available = await conn.fetchval(
        "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
    )
    if available:
        problem = await _create_timescale(conn)
        if problem is None:
            return SchemaMode.TIMESCALE
        if wanted is SchemaMode.TIMESCALE:
            raise MigrationError(
                f"cannot create the timescaledb extension ({problem}); it needs "
                "shared_preload_libraries = 'timescaledb' and a role allowed to create it"
            )
        log.warning(
            "timescaledb is available but could not be created (%s); using plain PostgreSQL",
            problem,
        )
        return SchemaMode.PLAIN
    if wanted is SchemaMode.TIMESCALE:
        raise MigrationError(
            "schema_mode = timescale but this server has no timescaledb extension; install "
            "it or set schema_mode = plain"
        )
    return SchemaMode.PLAIN


async def migrate(
    conn: Any,
    params: StorageParams,
    *,
    now: datetime | None = None,
    directory: Path = MIGRATIONS_DIR,
) -> MigrationReport:
    """Apply the pending migrations of ``params.schema`` and reconcile its settings.

    ``conn`` is an asyncpg connection outside any transaction (``storage.connect.connect``
    prepares one for the engine); it is the only connection used (the single-connection test
    engine needs that), and holds the advisory lock throughout.
    """
    schema = _q(params.schema)
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
    try:
        await _bootstrap(conn, schema)
        recorded, done = await _recorded(conn, schema)
        mode = await _decide_mode(conn, params.mode, recorded)
        path = f"{schema}, {await _extension_schema(conn)}"
        await conn.execute(f"SET search_path = {path}")
        applied: list[str] = []
        for mig in plan(mode, directory):
            if mig.version in done:
                if not mig.matches(done[mig.version]):
                    log.warning(
                        "migration %s changed after it was applied; forward-only: the change "
                        "is NOT applied, add a new migration instead",
                        mig.name,
                    )
                continue
            started = time.perf_counter()
            try:
                async with conn.transaction():
                    await conn.execute(f"SET LOCAL search_path = {path}")
                    await conn.execute(mig.sql)
                    await conn.execute(
                        f"INSERT INTO {schema}.schema_migrations "
                        "(version, name, mode, checksum, duration_ms) VALUES ($1, $2, $3, $4, $5)",
                        mig.version,
                        mig.name,
                        mode.value,
                        mig.checksum,
                        int((time.perf_counter() - started) * 1000),
                    )
            except asyncpg.PostgresError as exc:
                hint = ""
                if "license" in str(exc):
                    # Seen on PGlite-TimescaleDB restarted on an existing data directory: the
                    # TSL module (compression, continuous aggregates) is not loaded.
                    hint = (
                        " - this TimescaleDB has its TSL features (compression, continuous "
                        "aggregates) off; on PGlite-TimescaleDB restart it on a fresh data "
                        "directory, on a server set timescaledb.license = 'timescale'"
                    )
                raise MigrationError(
                    f"{mig.path.name} failed ({type(exc).__name__}: {exc}); nothing of it was "
                    f"applied, earlier versions stay{hint}"
                ) from exc
            log.info("applied migration %s (%s)", mig.name, mode.value)
            applied.append(mig.name)
        changes = await policies.apply(conn, params, mode, now=now)
        current = max(discover(directory), default=0)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    return MigrationReport(schema, mode, applied, current, changes)


async def schema_status(conn: Any, schema: str, directory: Path = MIGRATIONS_DIR) -> SchemaStatus:
    """Which mode and versions ``schema`` has, and what is still pending."""
    mode, done = await _recorded(conn, _q(schema))
    pending = tuple(
        m.name for m in plan(mode or SchemaMode.PLAIN, directory) if m.version not in done
    )
    return SchemaStatus(schema, mode, tuple(sorted(done)), pending)


async def require_current(conn: Any, schema: str, directory: Path = MIGRATIONS_DIR) -> SchemaStatus:
    """``schema_status``, or ``SchemaError`` with what to do when the schema is not current."""
    status = await schema_status(conn, schema, directory)
    if status.mode is None:
        raise SchemaError(f"schema {schema} has no tables yet: run `nev-ingest migrate`")
    if status.pending:
        raise SchemaError(
            f"schema {schema} lacks migrations {', '.join(status.pending)}: "
            "run `nev-ingest migrate`"
        )
    return status
