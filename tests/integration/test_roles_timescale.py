"""Database roles on PGlite-TimescaleDB, where they differ from plain PostgreSQL: TimescaleDB
refuses row-level security on a hypertable with compression, so the time series carry none and
scoped roles get no grant on them - they read ``<table>_scoped`` views instead - while
latest_state (a plain table) keeps its policies. PGlite takes one connection, so the logins are
taken on with SET ROLE (current_user is what the policies match, as after a real login)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest

from storage import PoolParams, SchemaMode, StorageParams, migrate
from storage.connect import connect
from storage.roles import RoleNames, apply
from storage.tables import CHARGER_FAULTS
from tests.integration.roles_support import FAMILIES, drop_named_roles

pytestmark = pytest.mark.integration

VINS = ("LFVAA000000000001", "LSVBB000000000002", "LGXCC000000000003")


@pytest.fixture
async def ts(
    timescale_dsn: str, unique_name: Callable[[str], str]
) -> AsyncIterator[tuple[Any, str, RoleNames]]:
    """A migrated TimescaleDB schema of its own with roles of its own; dropped afterwards."""
    schema = unique_name("ts")
    names = RoleNames(*(f"{schema}_{f}" for f in FAMILIES))
    conn = await connect(PoolParams(dsn=timescale_dsn, schema=schema))
    try:
        report = await migrate(conn, StorageParams(schema=schema))
        assert report.mode is SchemaMode.TIMESCALE
        yield conn, schema, names
    finally:
        await conn.execute("RESET ROLE")
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        logins = [f"{schema}_oem_login"]
        await drop_named_roles(conn, (*logins, *names.all()))
        await conn.close()


async def test_timescale_scoped_roles_read_views_and_latest_state_keeps_its_policies(
    ts: tuple[Any, str, RoleNames],
) -> None:
    conn, s, names = ts
    first = await apply(conn, s, names, SchemaMode.TIMESCALE)
    assert "row-level security: latest_state" in first.changes
    assert (await apply(conn, s, names, SchemaMode.TIMESCALE)).changes == []
    guarded = {
        r[0]
        for r in await conn.fetch(
            "SELECT relname FROM pg_class WHERE relnamespace = $1::regnamespace AND relrowsecurity",
            s,
        )
    }
    assert {"latest_state", "charger_connectors", "account_scopes"} <= guarded
    assert "vehicle_telemetry" not in guarded  # a compressed hypertable
    owners = {
        r[0]
        for r in await conn.fetch(
            "SELECT DISTINCT relowner::regrole::text FROM pg_class "
            "WHERE relnamespace = $1::regnamespace",
            s,
        )
    }
    assert owners == {names.owner}

    await conn.execute(
        f"INSERT INTO {s}.vehicle_telemetry (vin, ts, edition, command, extremes_derived, "
        "fault_count) SELECT v, now(), 2016, 2, false, 0 FROM unnest($1::text[]) v",
        list(VINS),
    )
    await conn.execute(
        f"INSERT INTO {s}.latest_state (entity_kind, entity_id, ts, longitude, latitude, "
        "position_valid) SELECT 'vehicle', v, now(), 116.4, 39.9, true FROM unnest($1::text[]) v",
        list(VINS),
    )
    login = f"{s}_oem_login"
    await conn.execute(f"CREATE ROLE {login} LOGIN IN ROLE {names.oem}")
    await conn.execute(
        f"INSERT INTO {s}.account_scopes (login, family, vin_prefixes) VALUES ($1, 'oem', $2)",
        login,
        ["LFV"],
    )

    await conn.execute(f"SET ROLE {login}")
    try:
        for table, column in (("vehicle_telemetry_scoped", "vin"), ("latest_state", "entity_id")):
            rows = await conn.fetch(f"SELECT {column} FROM {s}.{table}")
            assert [r[0] for r in rows] == [VINS[0]], table
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch(f"SELECT * FROM {s}.vehicle_telemetry")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch(f"SELECT * FROM {s}.vehicle_stats_1h")  # an aggregate: no RLS
    finally:
        await conn.execute("RESET ROLE")

    await conn.execute(f"SET ROLE {names.writer}")
    try:
        await conn.execute(
            f"INSERT INTO {s}.vehicle_telemetry (vin, ts, edition, command, extremes_derived, "
            "fault_count) VALUES ('LFVAA000000000009', now(), 2016, 2, false, 0)"
        )
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(f"DELETE FROM {s}.vehicle_telemetry")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch(f"SELECT * FROM {s}.pack_places")
        # the conflict path of charger_faults joins a later report's codes (an upsert)
        # (literals: asyncpg's introspection of an array parameter reads pg_range, which
        # PGlite does not let the role read)
        insert = (
            f"INSERT INTO {s}.charger_faults AS t VALUES ('MA01H3BQ2', '', "
            "'2026-12-07 08:00:00+00', 'MA01H3BQ2P0000001', '{codes}', 'frame') "
            f"ON CONFLICT {CHARGER_FAULTS.on_conflict}"
        )
        await conn.execute(insert.replace("{codes}", "{9}"))
        await conn.execute(insert.replace("{codes}", "{10,9}"))
        codes = await conn.fetchval(f"SELECT fault_codes::text FROM {s}.charger_faults")
        assert codes == "{9,10}"
    finally:
        await conn.execute("RESET ROLE")
    # The writer's UPDATE grant is table-wide here: migration 0089's trigger still keeps it from
    # erasing or moving stored faults, in a compressed chunk too, while the merge goes on.
    chunks = f"show_chunks('{s}.charger_faults')"
    assert await conn.fetchval(f"SELECT count(compress_chunk(c)) FROM {chunks} c") == 1
    # TimescaleDB copies that grant to the compressed hypertable and its chunks, where the
    # trigger is not: apply takes UPDATE back there, on a re-run too (which grants it again).
    assert (await apply(conn, s, names, SchemaMode.TIMESCALE)).changes == []
    catalog = (
        "FROM _timescaledb_catalog.hypertable h "
        "JOIN _timescaledb_catalog.hypertable z ON z.id = h.compressed_hypertable_id "
        "WHERE h.schema_name = $1 AND h.table_name = 'charger_faults'"
    )
    # the compressed hypertable (no columns of its own in this TimescaleDB: chunks carry them)
    whole = await conn.fetchval(f"SELECT format('%I.%I', z.schema_name, z.table_name) {catalog}", s)
    assert not await conn.fetchval(
        "SELECT has_table_privilege($1, $2, 'UPDATE')", names.writer, whole
    )
    chunk = await conn.fetchval(
        "SELECT format('%I.%I', k.schema_name, k.table_name) FROM _timescaledb_catalog.chunk k "
        f"WHERE k.hypertable_id = (SELECT z.id {catalog})",
        s,
    )
    await conn.execute(f"SET ROLE {names.writer}")
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(f"UPDATE {chunk} SET operator_id = 'OP9'")
        for change in ("fault_codes = '{}'", "ts = ts + interval '1 second'", "charger_id = 'X'"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(f"UPDATE {s}.charger_faults SET {change}")
        await conn.execute(insert.replace("{codes}", "{11}"))
        codes = await conn.fetchval(f"SELECT fault_codes::text FROM {s}.charger_faults")
        assert codes == "{9,10,11}"
    finally:
        await conn.execute("RESET ROLE")

    await conn.execute(f"SET ROLE {names.public}")
    try:
        cells = await conn.fetch(f"SELECT * FROM {s}.public_vehicle_positions")
        assert [(c["longitude"], c["latitude"], c["vehicles"]) for c in cells] == [
            (116.4, 39.9, len(VINS))
        ]
        await conn.fetch(f"SELECT * FROM {s}.public_fleet_stats_1h")  # over the aggregate
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch(f"SELECT * FROM {s}.latest_state")
    finally:
        await conn.execute("RESET ROLE")
