"""The query database: postgres_fdw over every shard, and views that union them.

Each shard is a complete database of its own (``storage.migrate``); fleet-wide SQL (Grafana,
regulators, ``nev-ingest query``) reads one more database, the query database, where

* ``nev_shard_<i>`` is a foreign server per shard (``async_capable``, so an ``Append`` over the
  shards scans them concurrently; ``fetch_size`` large, as fleet queries return many rows),
  with a user mapping for the migrating role built from the ``postgres.*`` settings;
* schema ``shard_<i>`` holds shard i's tables and views as foreign tables
  (``IMPORT FOREIGN SCHEMA``; partitions and chunks are the shard's business, not imported;
  nor are the private tables of ``storage.roles_names.PRIVATE_TABLES``, nor the shard views
  of ``storage.fdw_views.NOT_IN_QUERY_DATABASE``);
* schema ``<storage.schema>`` (``nev``) holds one view per shard table and per union-safe shard
  view, ``SELECT <columns> FROM shard_0.t UNION ALL SELECT <columns> FROM shard_1.t ...``; the
  views that aggregate or window across entities re-made from their own SQL over those
  (``storage.fdw_views``); and the shards' IMMUTABLE helper functions the queries call, so
  every query runs here unchanged.

Who reads what is decided on the shards, never here: the views are ``security_invoker`` (but the
``public_*`` ones, owner's rights as on a shard: counts only), so a foreign table is read through
the *caller's* own user mapping, as the shard login it names, under that login's grants and
row-level security on the shard (an OEM's ``_scoped`` rows). A login without a mapping gets
postgres_fdw's "user mapping not found", not the migrating user's rows. The foreign tables are
granted to PUBLIC for that reason: the mapping is the gate. Grants on the views (the operator's,
docs/storage.md) are kept across the rebuild.

``build`` rebuilds all of it in one transaction (readers see the old or the new set, never a
half) under the migrations' advisory lock: it is idempotent, and re-running it after a shard was
added or migrated picks the change up. The views are dropped and made again on every run, so a
user's view on top of them must be dropped first (the error says which).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import asyncpg
import psycopg
from psycopg.conninfo import conninfo_to_dict

from storage.errors import MigrationError
from storage.fdw_views import (
    NOT_IN_QUERY_DATABASE,
    RECREATED_VIEWS,
    ShardViews,
    shard_views,
    union_safe,
)
from storage.migrate import LOCK_KEY
from storage.params import check_identifier
from storage.roles_names import PRIVATE_TABLES

__all__ = [
    "FETCH_SIZE",
    "QueryDatabaseReport",
    "ShardLink",
    "build",
    "server_name",
    "shard_functions",
    "shard_schema",
    "shard_views",
]

log = logging.getLogger(__name__)

# Rows per remote fetch: postgres_fdw's default of 100 costs one round trip per 100 rows, which
# dominates a fleet-wide scan; 10,000 rows of telemetry are a few MB of the query's memory.
FETCH_SIZE: Final = 10_000
# Marks the views ``build`` owns, so a rerun replaces them and leaves anything else alone.
_VIEW_MARK: Final = "nev-ingest: union of the shards (nev-ingest migrate)"
# Nothing a query database user reads: the migrations' own table, the service's bookkeeping and
# the scope mapping (the regulator may not read them on a shard either, docs/security.md); and
# the shard views that can be neither unioned nor re-made here.
_NOT_IMPORTED: Final = (*PRIVATE_TABLES, *NOT_IN_QUERY_DATABASE)
# libpq options that belong to the user mapping, not the foreign server (postgres_fdw rule).
_USER_OPTIONS: Final = frozenset({"user", "password", "sslcert", "sslkey", "sslpassword"})
# libpq options that make no sense for a server-side connection (postgres_fdw sets them).
_DROPPED_OPTIONS: Final = frozenset({"client_encoding", "fallback_application_name"})


def server_name(index: int) -> str:
    return f"nev_shard_{index}"


def shard_schema(index: int) -> str:
    return f"shard_{index}"


@dataclass(frozen=True, slots=True)
class ShardLink:
    """How the query database reaches one shard: its libpq URL (TLS keys included), the
    password, if any (``postgres.password`` wins over one in the URL), and the URL of its read
    replica, if any (``storage.replicas``), which the foreign server then reads."""

    dsn: str
    password: str | None = None
    replica: str | None = None

    def _options(self, dsn: str, setting: str) -> dict[str, str]:
        try:
            parsed = conninfo_to_dict(dsn)
        except psycopg.ProgrammingError:  # never echo the DSN: it may hold a password
            raise MigrationError(
                f"a DSN of {setting} is not a valid libpq URL; fix {setting}"
            ) from None
        out = {k: str(v) for k, v in parsed.items() if v is not None and k not in _DROPPED_OPTIONS}
        if self.password:
            out["password"] = self.password
        return out

    def server_options(self) -> dict[str, str]:
        """The server's options on the shard itself (what the import reads)."""
        return self._server(self._options(self.dsn, "storage.shards"))

    def read_options(self) -> dict[str, str]:
        """The server's options for readers: the replica's host, port, dbname and TLS options
        when there is one, else the shard's."""
        if not self.replica:
            return self.server_options()
        return self._server(self._options(self.replica, "storage.replicas"))

    @staticmethod
    def _server(options: dict[str, str]) -> dict[str, str]:
        out = {k: v for k, v in options.items() if k not in _USER_OPTIONS}
        out["async_capable"] = "true"
        out["fetch_size"] = str(FETCH_SIZE)
        return out

    def user_options(self) -> dict[str, str]:
        options = self._options(self.dsn, "storage.shards")
        return {k: v for k, v in options.items() if k in _USER_OPTIONS}


@dataclass(frozen=True, slots=True)
class QueryDatabaseReport:
    """What ``build`` made: the shards it spans and the views of ``schema``."""

    schema: str
    shards: int
    views: list[str] = field(default_factory=list)
    removed_shards: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # shard views not known to be union-safe


def _lit(value: str) -> str:
    # DDL takes no bind parameters; standard_conforming_strings is on since PostgreSQL 9.1.
    return "'" + value.replace("'", "''") + "'"


async def shard_functions(conn: Any, schema: str) -> list[str]:
    """``CREATE OR REPLACE FUNCTION`` text of ``schema``'s IMMUTABLE functions on a shard: the
    pure helpers queries call (``pack_place_kind``); others touch the shard's own tables."""
    rows = await conn.fetch(
        "SELECT pg_get_functiondef(p.oid) FROM pg_proc p "
        "JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = $1 AND p.prokind = 'f' AND p.provolatile = 'i' ORDER BY p.proname",
        check_identifier(schema),
    )
    return [str(r[0]) for r in rows]


async def build(
    conn: Any,
    schema: str,
    shards: Sequence[ShardLink],
    functions: Sequence[str] = (),
    views: ShardViews | None = None,
) -> QueryDatabaseReport:
    """Make the query database behind ``conn`` span ``shards`` (shard i = ``shards[i]``).

    Every shard must be migrated already (its tables are imported as they are now); ``conn`` is
    an asyncpg connection outside a transaction, by a role that may create extensions.
    ``functions`` and ``views`` are shard 0's (``shard_functions``, ``shard_views``): without
    ``views`` no shard view is known, so every imported relation is taken for a table.
    """
    views = views or ShardViews()
    schema = check_identifier(schema)
    if not shards:
        raise MigrationError("the query database needs at least one shard")
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
    try:
        async with conn.transaction():
            await conn.execute("CREATE EXTENSION IF NOT EXISTS postgres_fdw")
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            grants = await _drop_views(conn, schema)
            removed = await _drop_shards_beyond(conn, len(shards))
            for index, link in enumerate(shards):
                await _link_shard(conn, index, link)
                await _import(conn, schema, index)
                if link.replica:
                    await _point_at(conn, index, link.read_options())
            imported = await _common_tables(conn, len(shards))
            for ddl in functions:
                await conn.execute(ddl)
            names = [n for n in imported if n not in views.names or union_safe(n)]
            for name in names:
                await _create_view(conn, schema, name, len(shards))
            for name, sql in views.definitions.items():  # RECREATED_VIEWS order
                await _recreate_view(conn, schema, name, sql)
            made = names + list(views.definitions)
            await _restore_grants(conn, schema, grants, set(made))
            left_out = sorted(set(imported) - set(made))
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    log.info("query database spans %d shard(s): %d views in %s", len(shards), len(made), schema)
    if left_out:
        log.warning("query database: shard views left out (not union-safe): %s", left_out)
    return QueryDatabaseReport(schema, len(shards), sorted(made), removed, left_out)


# Who was granted what on the views build made: (view, grantee or PUBLIC, privilege, grantable).
_GRANTS: Final = """
SELECT c.relname, coalesce(r.rolname, 'PUBLIC'), a.privilege_type, a.is_grantable
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
     aclexplode(c.relacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee
WHERE n.nspname = $1 AND c.relkind = 'v' AND obj_description(c.oid, 'pg_class') = $2
  AND a.grantee <> c.relowner
"""
_Grant = tuple[str, str, str, bool]


async def _drop_views(conn: Any, schema: str) -> list[_Grant]:
    """Drop the views build made; return the grants they carried, for the new ones."""
    grants = [
        (str(r[0]), str(r[1]), str(r[2]), bool(r[3]))
        for r in await conn.fetch(_GRANTS, schema, _VIEW_MARK)
    ]
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND c.relkind = 'v' AND obj_description(c.oid, 'pg_class') = $2",
        schema,
        _VIEW_MARK,
    )
    if not rows:
        return grants
    # In one statement: the re-made views read the union views, and both go.
    names = ", ".join(f"{schema}.{check_identifier(row[0], 'view')}" for row in rows)
    try:
        await conn.execute(f"DROP VIEW {names}")
    except asyncpg.DependentObjectsStillExistError as exc:
        raise MigrationError(
            f"query database: the views of {schema} are rebuilt by migrate but other objects "
            f"depend on them ({exc.detail or exc}); drop them, migrate, then create them again"
        ) from None
    return grants


def _role(name: str) -> str:
    return name if name == "PUBLIC" else '"' + name.replace('"', '""') + '"'


async def _restore_grants(conn: Any, schema: str, grants: list[_Grant], made: set[str]) -> None:
    """Give the re-made views the grants the dropped ones had: an operator's GRANT SELECT to a
    login survives the daily migrate (the views are made anew on every run)."""
    for view, grantee, privilege, grantable in grants:
        if view in made:
            option = " WITH GRANT OPTION" if grantable else ""
            await conn.execute(f"GRANT {privilege} ON {schema}.{view} TO {_role(grantee)}{option}")


async def _drop_shards_beyond(conn: Any, count: int) -> list[str]:
    """Servers and schemas of shards no longer configured (the shard list was shortened)."""
    rows = await conn.fetch(
        "SELECT srvname FROM pg_foreign_server WHERE srvname LIKE 'nev_shard_%'"
    )
    removed: list[str] = []
    for row in rows:
        suffix = str(row[0]).removeprefix("nev_shard_")
        if suffix.isdigit() and int(suffix) >= count:
            await conn.execute(f"DROP SCHEMA IF EXISTS {shard_schema(int(suffix))} CASCADE")
            await conn.execute(f"DROP SERVER {server_name(int(suffix))} CASCADE")
            removed.append(str(row[0]))
    return removed


async def _set_options(conn: Any, target: str, current: list[str], wanted: dict[str, str]) -> None:
    """ALTER ``target`` OPTIONS so that exactly ``wanted`` is set (ADD/SET/DROP as needed)."""
    have = {item.partition("=")[0] for item in current}
    actions = [
        f"{'SET' if key in have else 'ADD'} {key} {_lit(value)}" for key, value in wanted.items()
    ]
    actions += [f"DROP {key}" for key in sorted(have - wanted.keys())]
    if actions:
        await conn.execute(f"ALTER {target} OPTIONS ({', '.join(actions)})")


async def _point_at(conn: Any, index: int, options: dict[str, str]) -> None:
    server = server_name(index)
    current = await conn.fetchval(
        "SELECT coalesce(srvoptions, '{}') FROM pg_foreign_server WHERE srvname = $1", server
    )
    await _set_options(conn, f"SERVER {server}", list(current), options)


async def _link_shard(conn: Any, index: int, link: ShardLink) -> None:
    """Server ``index`` on the shard itself: the import reads its catalogs there, just
    migrated, with no replay lag. ``build`` then points it at the replica, if any, in the
    same transaction, so readers only ever see the replica's address."""
    server = server_name(index)
    await conn.execute(f"CREATE SERVER IF NOT EXISTS {server} FOREIGN DATA WRAPPER postgres_fdw")
    await _point_at(conn, index, link.server_options())
    await conn.execute(f"CREATE USER MAPPING IF NOT EXISTS FOR CURRENT_USER SERVER {server}")
    current = await conn.fetchval(
        "SELECT coalesce(umoptions, '{}') FROM pg_user_mappings "
        "WHERE srvname = $1 AND usename = current_user",
        server,
    )
    await _set_options(
        conn, f"USER MAPPING FOR CURRENT_USER SERVER {server}", list(current), link.user_options()
    )


async def _import(conn: Any, schema: str, index: int) -> None:
    target = shard_schema(index)
    await conn.execute(f"DROP SCHEMA IF EXISTS {target} CASCADE")
    await conn.execute(f"CREATE SCHEMA {target}")
    try:
        await conn.execute(
            f"IMPORT FOREIGN SCHEMA {schema} EXCEPT ({', '.join(_NOT_IMPORTED)}) "
            f"FROM SERVER {server_name(index)} INTO {target}"
        )
    except (asyncpg.PostgresError, OSError) as exc:
        raise MigrationError(
            f"query database: cannot import schema {schema} of shard {index} "
            f"({type(exc).__name__}: {exc}); check that the shard is up and migrated"
        ) from None
    # Anyone may name them: a read goes through the reader's own user mapping, as the shard
    # login it names, and the shard's grants and policies decide what comes back.
    await conn.execute(f"GRANT USAGE ON SCHEMA {target} TO PUBLIC")
    await conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {target} TO PUBLIC")


async def _tables(conn: Any, index: int) -> set[str]:
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND c.relkind = 'f'",
        shard_schema(index),
    )
    return {str(r[0]) for r in rows}


async def _common_tables(conn: Any, count: int) -> list[str]:
    """The tables every shard has; a shard with another set is at another schema version."""
    first = await _tables(conn, 0)
    if not first:
        raise MigrationError("query database: shard 0 has no tables; run nev-ingest migrate")
    for index in range(1, count):
        other = await _tables(conn, index)
        if other != first:
            differ = sorted(first ^ other)
            raise MigrationError(
                f"query database: shard {index} and shard 0 differ in {', '.join(differ[:5])}; "
                "migrate every shard to the same version (nev-ingest migrate), then again"
            )
    return sorted(first)


async def _create_view(conn: Any, schema: str, name: str, count: int) -> None:
    # Columns by name from shard 0, so a shard whose column order differs still lines up.
    columns = await conn.fetch(
        "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 "
        "AND NOT attisdropped ORDER BY attnum",
        f"{shard_schema(0)}.{name}",
    )
    select = ", ".join(f'"{c[0]}"' for c in columns)
    union = "\nUNION ALL\n".join(
        f"SELECT {select} FROM {shard_schema(i)}.{name}" for i in range(count)
    )
    await _make_view(conn, schema, name, union, f"union {name} over the shards")


async def _recreate_view(conn: Any, schema: str, name: str, sql: str) -> None:
    """``name`` from shard 0's definition (schema-qualified), over the union views."""
    assert name in RECREATED_VIEWS
    body = sql.rstrip().rstrip(";")
    await _make_view(conn, schema, name, body, f"make {name} over the union of the shards")


async def _make_view(conn: Any, schema: str, name: str, body: str, what: str) -> None:
    """``schema.name`` as ``body``, marked as the query database's own; ``what`` says in the
    error what could not be done."""
    await _refuse_foreign(conn, schema, name)
    # The caller's rights, so its own user mapping reaches the shards (an owner's-rights view
    # would read every shard as the migrating user for anyone granted it). The public_*
    # statistics keep their owner's rights, as on a shard: counts for a role without table
    # rights.
    invoker = "" if name.startswith("public_") else " WITH (security_invoker = true)"
    try:
        await conn.execute(f"CREATE VIEW {schema}.{name}{invoker} AS\n{body}")
    except asyncpg.PostgresError as exc:
        raise MigrationError(
            f"query database: cannot {what} ({exc}); migrate every shard to "
            "the same version (nev-ingest migrate), then again"
        ) from None
    await conn.execute(f"COMMENT ON VIEW {schema}.{name} IS {_lit(_VIEW_MARK)}")


async def _refuse_foreign(conn: Any, schema: str, name: str) -> None:
    existing = await conn.fetchval(
        "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND c.relname = $2",
        schema,
        name,
    )
    if existing is not None:
        raise MigrationError(
            f"query database: {schema}.{name} already exists and is not a view migrate made; "
            "give the query database a database of its own (storage.query_dsn)"
        )
