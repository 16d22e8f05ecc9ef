"""The scoped roles' way to the two views they read (migration 0087), on both engines: an OEM
login reads its VINs' rows of ``vehicle_pack_history_scoped`` and a charging login its
operators' rows of ``charging_sessions_scoped``; another OEM's or operator's rows stay invisible.

On TimescaleDB this is the only way: the hypertables under ``vehicle_pack_history`` and
``charging_sessions`` carry no row-level policy there, so the scoped roles get no grant on the
views (which read them with the caller's rights). On plain PostgreSQL the copies must answer
what the views answer under the policies. PGlite takes one connection, so its logins are taken
on with SET ROLE (current_user is what the predicates match, as after a real login)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import psycopg
import pytest

from storage import PoolParams, SchemaMode, StorageParams, migrate, queries
from storage.connect import connect
from storage.migration_files import discover
from storage.queries_chargers import Charger, sessions
from storage.queries_scoped import through_scoped, unreadable_with_scoped
from storage.roles import RoleNames, apply
from tests.integration.roles_support import (
    FAMILIES,
    OPERATORS,
    VINS,
    RolesDb,
    drop_named_roles,
    seeded_roles_db,
)

pytestmark = pytest.mark.integration

_LFV = sorted(v for v in VINS if v.startswith("LFV"))
_LSV = sorted(v for v in VINS if v.startswith("LSV"))


async def _column(conn: Any, sql: str) -> list[Any]:
    return sorted(r[0] for r in await conn.fetch(sql))


async def _rows(conn: Any, sql: str) -> list[tuple[Any, ...]]:
    return sorted((tuple(r) for r in await conn.fetch(sql)), key=repr)


@pytest.fixture
async def db(fresh_database: str, unique_name: Callable[[str], str]) -> AsyncIterator[RolesDb]:
    async with seeded_roles_db(fresh_database, unique_name) as rdb:
        yield rdb


async def test_plain_scoped_logins_read_their_rows_of_the_two_views(db: RolesDb) -> None:
    lfv, lsv = db.login("oem", "LFV"), db.login("oem", "LSV")
    charging = db.login("charging", OPERATORS[0])
    async with db.connect(lfv) as conn:
        assert await _column(conn, "SELECT vin FROM nev.vehicle_pack_history_scoped") == _LFV
        # the copy answers what the view answers under the policies, column for column
        assert await _rows(conn, "SELECT * FROM nev.vehicle_pack_history_scoped") == await _rows(
            conn, "SELECT * FROM nev.vehicle_pack_history"
        )
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT * FROM nev.charging_sessions_scoped")
    async with db.connect(lsv) as conn:
        assert await _column(conn, "SELECT vin FROM nev.vehicle_pack_history_scoped") == _LSV
    async with db.connect(charging) as conn:
        sessions = "SELECT operator_id FROM nev.charging_sessions_scoped"
        assert await _column(conn, sessions) == [OPERATORS[0]]
        assert await _rows(conn, "SELECT * FROM nev.charging_sessions_scoped") == await _rows(
            conn, "SELECT * FROM nev.charging_sessions"
        )
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT * FROM nev.vehicle_pack_history_scoped")

    async with db.connect() as conn:
        # 0087 re-makes the two views (CREATE OR REPLACE VIEW drops their options): run again
        # over a schema whose roles are in place, they keep the caller's rights
        await conn.execute("SET search_path = nev")
        async with conn.transaction():
            await conn.execute(discover()[87][SchemaMode.PLAIN].sql)
        options = await conn.fetch(
            "SELECT relname, reloptions FROM pg_class WHERE relnamespace = 'nev'::regnamespace "
            "AND relname = ANY($1::text[]) ORDER BY 1",
            ["charging_sessions", "vehicle_pack_history"],
        )
        assert [(r[0], r[1]) for r in options] == [
            ("charging_sessions", ["security_invoker=true"]),
            ("vehicle_pack_history", ["security_invoker=true"]),
        ]
    async with db.connect(lsv) as conn:
        assert await _column(conn, "SELECT vin FROM nev.vehicle_pack_history") == _LSV


@dataclass
class Ts:
    """A migrated TimescaleDB schema of its own with roles of its own; ``conn`` is its
    connection (a test may close it and open another: PGlite serves one at a time)."""

    dsn: str
    conn: Any
    schema: str
    names: RoleNames


@pytest.fixture
async def ts(timescale_dsn: str, unique_name: Callable[[str], str]) -> AsyncIterator[Ts]:
    """A migrated TimescaleDB schema with roles of its own; dropped afterwards."""
    schema = unique_name("ts")
    names = RoleNames(*(f"{schema}_{f}" for f in FAMILIES))
    t = Ts(
        timescale_dsn, await connect(PoolParams(dsn=timescale_dsn, schema=schema)), schema, names
    )
    try:
        report = await migrate(t.conn, StorageParams(schema=schema))
        assert report.mode is SchemaMode.TIMESCALE
        yield t
    finally:
        if t.conn.is_closed():
            t.conn = await connect(PoolParams(dsn=timescale_dsn, schema=schema))
        conn = t.conn
        await conn.execute("RESET ROLE")
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        logins = [f"{schema}_{x}" for x in ("lfv", "lsv", "cpo")]
        await drop_named_roles(conn, (*logins, *names.all()))
        await conn.close()


async def _seed(conn: Any, s: str) -> None:
    """A login naming a pack and a pack row of every VIN; an order of every operator."""
    await conn.execute(
        f"INSERT INTO {s}.vehicle_sessions (vin, ts, event, pack_codes) "
        "SELECT v, now() - interval '2 minutes', 'login', ARRAY['PACK' || v] "
        "FROM unnest($1::text[]) v",
        list(VINS),
    )
    await conn.execute(
        f"INSERT INTO {s}.battery_pack_telemetry (vin, ts, pack, first_cell, voltage_v) "
        "SELECT v, now() - interval '1 minute', 1, 1, 350 FROM unnest($1::text[]) v",
        list(VINS),
    )
    await conn.execute(
        f"INSERT INTO {s}.charging_session_events (operator_id, connector_id, ts, "
        "start_charge_seq, event, start_time, source, vin) "
        "SELECT o, 'C1', now(), o || '000000000000000001', 'order', now() - interval '1 hour', "
        "'tcec', $2 FROM unnest($1::text[]) o",
        list(OPERATORS),
        VINS[0],
    )


async def test_timescale_scoped_logins_read_their_rows_of_the_two_views(ts: Ts) -> None:
    conn, s, names = ts.conn, ts.schema, ts.names
    await apply(conn, s, names, SchemaMode.TIMESCALE)
    await _seed(conn, s)
    logins = {"lfv": (names.oem, "LFV"), "lsv": (names.oem, "LSV"), "cpo": (names.charging, "")}
    for suffix, (role, _) in logins.items():
        await conn.execute(f"CREATE ROLE {s}_{suffix} LOGIN IN ROLE {role}")
    await conn.execute(
        f"INSERT INTO {s}.account_scopes (login, family, vin_prefixes, operator_ids) VALUES "
        "($1, 'oem', '{LFV}', '{}'), ($2, 'oem', '{LSV}', '{}'), ($3, 'charging', '{}', $4)",
        f"{s}_lfv",
        f"{s}_lsv",
        f"{s}_cpo",
        [OPERATORS[0]],
    )

    async def as_login(suffix: str, sql: str) -> list[Any]:
        await conn.execute(f"SET ROLE {s}_{suffix}")
        try:
            return await _column(conn, sql)
        finally:
            await conn.execute("RESET ROLE")

    history = f"SELECT vin FROM {s}.vehicle_pack_history_scoped"
    assert await as_login("lfv", history) == _LFV
    assert await as_login("lsv", history) == _LSV
    sessions = f"SELECT operator_id FROM {s}.charging_sessions_scoped"
    assert await as_login("cpo", sessions) == [OPERATORS[0]]
    # the views themselves stay closed to them here: their hypertables carry no policy
    for suffix, sql in (
        ("lfv", f"SELECT * FROM {s}.vehicle_pack_history"),
        ("cpo", f"SELECT * FROM {s}.charging_sessions"),
        ("lfv", f"SELECT * FROM {s}.charging_sessions_scoped"),
        ("cpo", f"SELECT * FROM {s}.vehicle_pack_history_scoped"),
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await as_login(suffix, sql)


async def test_plain_query_sessions_reads_the_scoped_view_where_the_view_is_not_granted(
    db: RolesDb,
) -> None:
    """``nev-ingest query sessions`` as a charging login without a grant on charging_sessions,
    as on TimescaleDB (here by a REVOKE: the dev stack's TimescaleDB engine serves one login)."""
    login = db.login("charging", OPERATORS[0])
    async with db.connect() as conn:
        await conn.execute(f"REVOKE SELECT ON nev.charging_sessions FROM {db.names.charging}")
    for charger in OPERATORS:
        done = db.cli(
            "query",
            "sessions",
            "--charger",
            f"{charger}:C1",
            "--format",
            "json",
            NEV_POSTGRES_DSN=db.dsn_of(login),
        )
        rows = [json.loads(line) for line in done.stdout.splitlines()]
        # its own connector's order; the other operator's is not there
        mine = [f"{charger}:C1"] if charger == OPERATORS[0] else []
        assert [r["connector"] for r in rows] == mine


async def test_timescale_query_statements_read_the_scoped_views(ts: Ts) -> None:
    """The query tool's statements for a charging login on TimescaleDB read charging_sessions
    and charging_session_events through their _scoped views (PGlite serves one connection and
    one login: the login is taken on with SET ROLE on a psycopg connection, as the tool's)."""
    conn, s, names = ts.conn, ts.schema, ts.names
    await apply(conn, s, names, SchemaMode.TIMESCALE)
    await _seed(conn, s)
    login = f"{s}_cpo"
    await conn.execute(f"CREATE ROLE {login} LOGIN IN ROLE {names.charging}")
    await conn.execute(
        f"INSERT INTO {s}.account_scopes (login, family, operator_ids) VALUES ($1, 'charging', $2)",
        login,
        [OPERATORS[0]],
    )
    await conn.close()  # PGlite: one connection at a time (the fixture opens one again)
    start, end = datetime.now(UTC) - timedelta(days=1), datetime.now(UTC) + timedelta(hours=1)
    with psycopg.connect(ts.dsn, autocommit=True) as pg:
        pg.execute(f"SET ROLE {login}")
        scoped = unreadable_with_scoped(pg, s)
        assert {"charging_sessions", "charging_session_events"} <= scoped
        for charger, expected in ((OPERATORS[0], 1), (OPERATORS[1], 0)):
            by_charger = sessions(s, start, end, charger=Charger.parse(f"{charger}:C1", None))
            assert len(queries.run(pg, through_scoped(by_charger, s, scoped)).rows) == expected
        # both operators' orders name the VIN: the login's only
        by_vin = sessions(s, start, end, vin=VINS[0])
        rows = queries.run(pg, through_scoped(by_vin, s, scoped)).rows
        assert [r[0] for r in rows] == [f"{OPERATORS[0]}:C1"]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            queries.run(pg, by_vin)  # what the tool ran before: the view is not granted here
        pg.execute("RESET ROLE")
