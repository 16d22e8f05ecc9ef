"""Database roles, their grants and the row-level policies (docs/security.md, "Database roles and
row-level access").

``apply`` runs after the migrations (``nev-ingest migrate`` with ``roles.enabled``) and
reconciles, so re-running it changes nothing and a later migration's new tables get their
grants on the next run. What each group role (NOLOGIN; deployments grant them to logins) gets:

* owner - owns the schema and every object in it (reassigned here); the migrating login is
  made a member, which is what lets it run later migrations;
* writer - the service: INSERT into the time series, SELECT on the tables it replays rules
  from, read/write on its offsets, latest_state and the alert tables; no DDL, no DELETE of
  telemetry, no views. It has BYPASSRLS: COPY FROM refuses a table with row-level security
  otherwise, and the policies then cost its hot path nothing (not even a ``true`` qual). On
  plain PostgreSQL it also refreshes the summary tables and creates partitions through the
  owner's ``create_partition`` (storage.roles_partitions);
* regulator - SELECT on every table, view and aggregate except the service's own bookkeeping
  and the scope mapping; operator - a regulator who may also ack alerts;
* oem / charging - their rows only: row-level policies match ``account_scopes`` (login ->
  VIN prefixes / operator ids) with ``current_user``. TimescaleDB refuses row-level security on
  a hypertable with compression, so there they read ``<table>_scoped`` views (security
  barrier, the same predicate); the views exist on both flavours, one contract for clients.
  ``vehicle_pack_history`` and ``charging_sessions`` read such hypertables: their ``_scoped``
  copies (migration 0087, owner's rights) are granted here too;
* public - the ``public_*`` views of 0070 only (per ~1 km cell, no VINs).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import asyncpg

from storage.errors import MigrationError
from storage.migrate import LOCK_KEY
from storage.params import TIMESERIES_TABLES, SchemaMode, check_identifier
from storage.policies import AGGREGATE_VIEWS
from storage.roles_compressed import revoke_compressed_update
from storage.roles_names import PRIVATE_TABLES, RoleNames, RolesReport
from storage.roles_partitions import partition_function
from storage.roles_policies import (
    CHARGER_TABLES,
    CHARGING_VIEWS,
    OEM_VIEWS,
    VEHICLE_TABLES,
    Scope,
    apply_policies,
    scoped_views,
)

__all__ = ["RoleNames", "RolesReport", "apply"]

_ALERT_ACK_COLUMNS: Final = "acked_at, acked_by, ack_note, updated_at"


async def _role_exists(conn: Any, name: str) -> bool:
    return bool(await conn.fetchval("SELECT count(*) FROM pg_roles WHERE rolname = $1", name))


async def _create_role(conn: Any, name: str, attrs: str) -> bool:
    """CREATE ROLE unless it exists; True when created. Another database's migrate may create
    the same cluster-wide role at the same moment (advisory locks are per database)."""
    if await _role_exists(conn, name):
        return False
    try:
        await conn.execute(f"CREATE ROLE {name} {attrs}")
    except (asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError):
        return False
    return True


async def _ensure_roles(conn: Any, names: RoleNames, report: RolesReport) -> None:
    for name in names.all():
        if name == names.writer:
            continue
        try:
            if await _create_role(conn, name, "NOLOGIN"):
                report.changes.append(f"role created: {name}")
        except asyncpg.InsufficientPrivilegeError as exc:
            raise MigrationError(
                f"cannot create role {name} ({exc}); give the migrating user CREATEROLE, or "
                "create the roles of [roles] once as a superuser"
            ) from None
    await _ensure_writer(conn, names.writer, report)
    member = await conn.fetchval("SELECT pg_has_role(current_user, $1, 'MEMBER')", names.owner)
    if not member:
        await conn.execute(f"GRANT {names.owner} TO current_user")
        report.changes.append(f"membership: current user in {names.owner}")
    member = await conn.fetchval(
        "SELECT pg_has_role($1, $2, 'MEMBER')", names.operator, names.regulator
    )
    if not member:
        await conn.execute(f"GRANT {names.regulator} TO {names.operator}")
        report.changes.append(f"membership: {names.operator} in {names.regulator}")


async def _ensure_writer(conn: Any, writer: str, report: RolesReport) -> None:
    hint = (
        f"the writer role needs BYPASSRLS (COPY FROM refuses tables with row-level security): "
        f"as a superuser run CREATE ROLE {writer} NOLOGIN BYPASSRLS (or ALTER ROLE {writer} "
        "BYPASSRLS), then nev-ingest migrate again"
    )
    try:
        if await _create_role(conn, writer, "NOLOGIN BYPASSRLS"):
            report.changes.append(f"role created: {writer} (BYPASSRLS)")
            return
        if not await conn.fetchval("SELECT rolbypassrls FROM pg_roles WHERE rolname = $1", writer):
            await conn.execute(f"ALTER ROLE {writer} BYPASSRLS")
            report.changes.append(f"role altered: {writer} BYPASSRLS")
    except asyncpg.InsufficientPrivilegeError:
        raise MigrationError(hint) from None


_OWNED = """
SELECT c.oid::regclass::text AS name, c.relkind::text AS relkind,
       EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
               AND d.objid = c.oid AND d.deptype IN ('a', 'i')) AS linked
FROM pg_class c
WHERE c.relnamespace = $1::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
  AND c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = $2)
ORDER BY c.relkind = 'S', c.oid
"""
_FUNCTIONS = """
SELECT p.oid::regprocedure::text FROM pg_proc p
WHERE p.pronamespace = $1::regnamespace
  AND p.proowner <> (SELECT oid FROM pg_roles WHERE rolname = $2)
"""


async def _reassign(
    conn: Any, schema: str, owner: str, mode: SchemaMode, report: RolesReport
) -> None:
    """Give ``owner`` the schema and what is in it (new objects of later migrations too)."""
    if await conn.fetchval(
        "SELECT nspowner <> (SELECT oid FROM pg_roles WHERE rolname = $2) "
        "FROM pg_namespace WHERE nspname = $1",
        schema,
        owner,
    ):
        await conn.execute(f"ALTER SCHEMA {schema} OWNER TO {owner}")
        report.changes.append(f"owner: schema {schema}")
    caggs: set[str] = set()
    if mode is SchemaMode.TIMESCALE:
        rows = await conn.fetch(
            "SELECT view_name FROM timescaledb_information.continuous_aggregates "
            "WHERE view_schema = $1",
            schema,
        )
        caggs = {f"{schema}.{r['view_name']}" for r in rows}
    moved = 0
    for r in await conn.fetch(_OWNED, schema, owner):
        if r["relkind"] == "S" and r["linked"]:
            continue  # a serial's sequence moves with its table
        kind = "MATERIALIZED VIEW" if r["name"] in caggs else "TABLE"
        await conn.execute(f"ALTER {kind} {r['name']} OWNER TO {owner}")
        moved += 1
    for (signature,) in await conn.fetch(_FUNCTIONS, schema, owner):
        await conn.execute(f"ALTER ROUTINE {signature} OWNER TO {owner}")
        moved += 1
    if moved:
        report.changes.append(f"owner: {moved} object(s) of {schema} to {owner}")


_RELATIONS = """
SELECT c.relname, c.relkind::text AS relkind, c.relrowsecurity, c.relispartition,
       coalesce(c.relacl::text, '') AS acl,
       coalesce(array_to_string(c.reloptions, ','), '') AS options
FROM pg_class c
WHERE c.relnamespace = $1::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
"""


async def _relations(conn: Any, schema: str) -> dict[str, Any]:
    return {r["relname"]: r for r in await conn.fetch(_RELATIONS, schema)}


async def _views_invoker(
    conn: Any, schema: str, relations: dict[str, Any], caggs: set[str], report: RolesReport
) -> None:
    """Views read their tables with the caller's rights and policies (PostgreSQL 15+): a view
    owned by the owner would otherwise show a scoped login every row."""
    for name, r in sorted(relations.items()):
        if r["relkind"] != "v" or name in caggs:
            continue
        if name in AGGREGATE_VIEWS:  # plain: tables, never here
            # TimescaleDB since 0088: the union of two continuous aggregates where one was,
            # read with the owner's rights as the aggregate was (public_fleet_stats_1h and the
            # _scoped views read it as the owner; an invoker's rights would need the
            # aggregates granted to every reader)
            continue
        if name.startswith("public_") or name.endswith("_scoped"):
            continue  # these run with the owner's rights on purpose
        if "security_invoker=true" not in r["options"]:
            await conn.execute(f"ALTER VIEW {schema}.{name} SET (security_invoker = true)")
            report.changes.append(f"view {name}: security_invoker")


def _grants(
    names: RoleNames,
    relations: dict[str, Any],
    mode: SchemaMode,
    scoped: list[str],
    caggs: set[str],
) -> list[str]:
    """The GRANT statements (idempotent) for the relations that exist."""
    have = {n for n, r in relations.items() if not r["relispartition"]}

    def on(tables: Iterable[str]) -> str:
        return ", ".join(t for t in tables if t in have)

    out: list[str] = []

    def grant(privileges: str, tables: Iterable[str], role: str) -> None:
        listed = on(tables)
        if listed:
            out.append(f"GRANT {privileges} ON {listed} TO {role}")

    # A continuous aggregate reads its materialization table (TimescaleDB's internal schema)
    # with its owner's rights, and ALTER MATERIALIZED VIEW ... OWNER leaves that table's owner
    # (altering it is refused); a grant on the aggregate reaches it, so the owner gets one.
    grant("SELECT", sorted(caggs), names.owner)
    w = names.writer
    written = (*TIMESERIES_TABLES, "charger_connectors")
    grant("INSERT, SELECT", written, w)  # SELECT: the rule engine replays from them
    # A later batch's fault codes of a stored second join its row (storage/tables.py
    # CHARGER_FAULTS): ON CONFLICT DO UPDATE needs UPDATE of the column it sets, nothing more.
    # TimescaleDB passes a hypertable's grants on to its internal compressed table, which has
    # no such column (the column grant fails there): the table's UPDATE on that flavour. Either
    # way an update may only append codes (migration 0089's trigger): no erasing or moving.
    # The trigger is not on the compressed tables the grant reaches: apply revokes it there.
    faults_update = "UPDATE" if mode is SchemaMode.TIMESCALE else "UPDATE (fault_codes)"
    grant(faults_update, ("charger_faults",), w)
    grant("SELECT, INSERT, UPDATE", ("latest_state", "consumer_offsets", "alerts"), w)
    grant("SELECT, INSERT, DELETE", ("alerts_outbox",), w)
    # run's start checks the schema and the shard map (storage.shard_map)
    grant("SELECT", ("schema_migrations", "shard_identity"), w)
    grant("USAGE, SELECT", ("alerts_id_seq", "alerts_outbox_id_seq"), w)
    # 2025 signatures (0060): the worker reads the key registry, registers activation keys on
    # first use (never replaces or revokes one: that is `nev-ingest keys`, as the owner) and
    # records flagged outcomes.
    grant("SELECT, INSERT", ("device_keys", "signature_events"), w)
    grant("USAGE, SELECT", ("device_keys_id_seq",), w)
    if mode is SchemaMode.PLAIN:
        # the service's upkeep recomputes the summary tables (derived data, not telemetry)
        grant("SELECT, INSERT, DELETE", ("vehicle_stats_1m", "vehicle_stats_1h"), w)
        # and 0088's recompute of the buckets made before it, one step a pass (its progress)
        grant("SELECT, UPDATE, DELETE", ("vehicle_stats_recompute",), w)
    # The private tables are not the regulator's (the writer has its grants above; a scoped
    # login reads its own account_scopes row, through its policy).
    readable = sorted(
        n
        for n in have
        if relations[n]["relkind"] != "S" and n not in PRIVATE_TABLES and not n.endswith("_scoped")
    )
    grant("SELECT", readable, names.regulator)
    if "alerts" in have:
        out.append(f"GRANT UPDATE ({_ALERT_ACK_COLUMNS}) ON alerts TO {names.operator}")
    # A scoped role reads a table only where row-level security guards it.
    guarded = {n for n in have if relations[n]["relrowsecurity"]}
    vehicle = [t for t in (*VEHICLE_TABLES, "latest_state") if t in guarded]
    charger = [t for t in (*CHARGER_TABLES, "latest_state") if t in guarded]
    plain = mode is SchemaMode.PLAIN  # every table under the views is guarded there
    grant("SELECT", [*vehicle, "account_scopes", *(OEM_VIEWS if plain else ())], names.oem)
    grant(
        "SELECT", [*charger, "account_scopes", *(CHARGING_VIEWS if plain else ())], names.charging
    )
    # and the _scoped views: of the tables (storage.roles_policies) and of the two views
    # (migration 0087: the only way to them on TimescaleDB, where the views are not granted)
    oem_scoped = [v for v in scoped if v.startswith(VEHICLE_TABLES)]
    grant("SELECT", [*oem_scoped, *(f"{v}_scoped" for v in OEM_VIEWS)], names.oem)
    charging_scoped = [v for v in scoped if v.startswith(CHARGER_TABLES)]
    grant("SELECT", [*charging_scoped, *(f"{v}_scoped" for v in CHARGING_VIEWS)], names.charging)
    grant("SELECT", sorted(n for n in have if n.startswith("public_")), names.public)
    return out


async def _hypertables(conn: Any, schema: str, mode: SchemaMode) -> tuple[set[str], set[str]]:
    if mode is not SchemaMode.TIMESCALE:
        return set(), set()
    hyper = await conn.fetch(
        "SELECT hypertable_name FROM timescaledb_information.hypertables "
        "WHERE hypertable_schema = $1",
        schema,
    )
    caggs = await conn.fetch(
        "SELECT view_name FROM timescaledb_information.continuous_aggregates "
        "WHERE view_schema = $1",
        schema,
    )
    return {r[0] for r in hyper}, {r[0] for r in caggs}


async def apply(conn: Any, schema: str, names: RoleNames, mode: SchemaMode) -> RolesReport:
    """Create the roles of ``names``, make ``names.owner`` own ``schema``, grant each role its
    privileges and put the row-level policies in place; a second run changes nothing.

    ``conn`` is outside a transaction, connected as the migrating user (CREATEROLE, and the
    schema's current owner or a member of it). Raises ``MigrationError`` with what to do when a
    privilege is missing.
    """
    schema = check_identifier(schema)
    report = RolesReport()
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
    try:
        await _ensure_roles(conn, names, report)
        hypertables, caggs = await _hypertables(conn, schema, mode)
        before = await _relations(conn, schema)
        await _views_invoker(conn, schema, before, caggs, report)
        scope = Scope(schema, names)
        scoped = await scoped_views(conn, scope, before, report)
        await partition_function(conn, schema, names.writer, mode, report)
        await apply_policies(conn, scope, before, hypertables | caggs, report)
        # last: what this run created is the owner's too, so the next run finds nothing to do
        await _reassign(conn, schema, names.owner, mode, report)
        relations = await _relations(conn, schema)
        await conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO {', '.join(names.all()[1:])}")
        async with conn.transaction():
            await conn.execute(f"SET LOCAL search_path = {schema}")
            for statement in _grants(names, relations, mode, scoped, caggs):
                await conn.execute(statement)
            if mode is SchemaMode.TIMESCALE:
                # the grants just handed UPDATE to the compressed tables as well
                await revoke_compressed_update(conn, schema, names.writer)
        after = await _relations(conn, schema)
        changed = sorted(n for n in after if n in before and after[n]["acl"] != before[n]["acl"])
        changed += sorted(n for n in after if n not in before)
        if changed:
            report.changes.append(f"grants: {', '.join(changed)}")
    except asyncpg.InsufficientPrivilegeError as exc:
        raise MigrationError(
            f"roles: {exc}; run nev-ingest migrate as the schema's owner (or a member of "
            f"{names.owner}) with CREATEROLE"
        ) from None
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    return report
