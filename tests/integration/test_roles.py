"""Database roles on the real PostgreSQL: ``nev-ingest migrate`` with roles.enabled creates them
(a second run changes nothing), and each role, used through a login that ``nev-ingest roles
grant`` made, can do its job and nothing more: rows an OEM or charging operator does not own
stay invisible, the public role sees ~1 km cells and no VINs, nobody but the owner changes the
schema."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from storage import PoolParams, SchemaMode, StorageParams, partitions, run_maintenance
from storage.connect import connect
from storage.tables import CHARGER_FAULTS
from tests.integration.roles_support import (
    OPERATORS,
    VINS,
    RolesDb,
    drop_roles,
    roles_fixture,
    seed,
    seeded_roles_db,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def db(fresh_database: str, unique_name: Callable[[str], str]) -> AsyncIterator[RolesDb]:
    """A database migrated with roles of the test's own, holding rows of every owner."""
    async with seeded_roles_db(fresh_database, unique_name) as rdb:
        yield rdb


async def _denied(conn: Any, sql: str) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await conn.execute(sql)


async def _plan(conn: Any, sql: str) -> str:
    return "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {sql}"))


async def _column(conn: Any, sql: str) -> list[Any]:
    return sorted(r[0] for r in await conn.fetch(sql))


_SNAPSHOT = """
SELECT c.relname, c.relowner::regrole::text, coalesce(c.relacl::text, ''), c.relrowsecurity,
       coalesce(array_to_string(c.reloptions, ','), '')
FROM pg_class c WHERE c.relnamespace = 'nev'::regnamespace ORDER BY 1
"""


async def _snapshot(conn: Any) -> list[Any]:
    rel = [tuple(r) for r in await conn.fetch(_SNAPSHOT)]
    pol = [
        tuple(r)
        for r in await conn.fetch(
            "SELECT tablename, policyname, roles::text, qual FROM pg_policies "
            "WHERE schemaname = 'nev' ORDER BY 1, 2"
        )
    ]
    return [rel, pol]


async def test_migrate_creates_nologin_group_roles_and_a_second_run_changes_nothing(
    db: RolesDb,
) -> None:
    async with db.connect() as conn:
        roles = {
            r["rolname"]: r
            for r in await conn.fetch(
                "SELECT rolname, rolcanlogin, rolbypassrls FROM pg_roles "
                "WHERE rolname = ANY($1::text[])",
                list(db.names.all()),
            )
        }
        assert set(roles) == set(db.names.all())
        assert not any(r["rolcanlogin"] for r in roles.values())
        assert [n for n, r in roles.items() if r["rolbypassrls"]] == [db.names.writer]
        owners = await _column(
            conn,
            "SELECT DISTINCT relowner::regrole::text FROM pg_class "
            "WHERE relnamespace = 'nev'::regnamespace",
        )
        assert owners == [db.names.owner]
        before = await _snapshot(conn)
    again = json.loads(db.cli("migrate", "--format", "json").stdout)
    assert again["applied"] == [] and again["roles"] == []
    async with db.connect() as conn:
        assert await _snapshot(conn) == before


async def test_writer_cannot_read_views_change_the_schema_or_delete_telemetry(db: RolesDb) -> None:
    login = db.login("writer")
    async with db.connect(login) as conn:
        # every session of the login acts as the writer role (BYPASSRLS is not inherited)
        assert await conn.fetchval("SELECT current_user") == db.names.writer
        await conn.execute(
            "INSERT INTO nev.vehicle_telemetry (vin, ts, edition, command, extremes_derived, "
            "fault_count) VALUES ('LFVAA000000000009', now(), 2016, 2, false, 0)"
        )
        # rows are not filtered for it: replays and the rule engine see every vehicle
        assert await conn.fetchval("SELECT count(*) FROM nev.vehicle_telemetry") == len(VINS) + 1
        # BYPASSRLS: no policy in its plans at all (the hot path's cost of the policies is
        # nil), and COPY FROM, which refuses a table under row-level security, works
        plan = await _plan(conn, "SELECT * FROM nev.latest_state")
        assert "account_scopes" not in plan and "InitPlan" not in plan
        await conn.copy_records_to_table(
            "vehicle_telemetry",
            schema_name="nev",
            records=[("LSVBB000000000008", datetime.now(UTC), 2016, 2, False, 0)],
            columns=["vin", "ts", "edition", "command", "extremes_derived", "fault_count"],
        )
        for view in ("pack_places", "charging_sessions", "public_vehicle_positions"):
            await _denied(conn, f"SELECT * FROM nev.{view}")
        await _denied(conn, "SELECT * FROM nev.vehicle_telemetry_scoped")
        await _denied(conn, "SELECT * FROM nev.account_scopes")
        await _denied(conn, "DELETE FROM nev.vehicle_telemetry")
        await _denied(conn, "UPDATE nev.vehicle_telemetry SET soc_pct = 1")
        await _denied(conn, "TRUNCATE nev.vehicle_telemetry")
        await _denied(conn, "DROP TABLE nev.vehicle_telemetry")
        await _denied(conn, "ALTER TABLE nev.latest_state ADD COLUMN x int")
        await _denied(conn, "CREATE TABLE nev.mine (x int)")
        await _denied(conn, "DELETE FROM nev.alerts")


async def test_writer_joins_fault_codes_and_cannot_rewrite_them(db: RolesDb) -> None:
    # The conflict path of charger_faults (storage/tables.py) is an upsert: the writer needs
    # UPDATE of fault_codes, and only to append to it.
    login = db.login("writer")
    insert = (
        "INSERT INTO nev.charger_faults AS t VALUES ($1, '', $2, $3, $4, 'frame') "
        f"ON CONFLICT {CHARGER_FAULTS.on_conflict}"
    )
    pile, at = OPERATORS[0] + "P0000001", datetime.now(UTC).replace(microsecond=0)
    async with db.connect(login) as conn:
        await conn.execute(insert, pile[:9], at, pile, [9])
        await conn.execute(insert, pile[:9], at, pile, [10, 9])
        stored = await conn.fetchval(
            "SELECT fault_codes FROM nev.charger_faults WHERE charger_id = $1", pile
        )
        assert stored == [9, 10]
        # but it cannot erase, reorder, prepend to or move stored history (migration 0089's
        # trigger; moving is refused by the column grant too)
        for codes in ("{}", "{10,9}", "[0:2]={5,9,10}"):
            await _denied(conn, f"UPDATE nev.charger_faults SET fault_codes = '{codes}'")
        await _denied(conn, "UPDATE nev.charger_faults SET ts = ts + interval '1 second'")
        await _denied(conn, "UPDATE nev.charger_faults SET source = 'tcec'")
        await conn.execute("UPDATE nev.charger_faults SET fault_codes = fault_codes || 11::int8")
        stored = await conn.fetchval(
            "SELECT fault_codes FROM nev.charger_faults WHERE charger_id = $1", pile
        )
        assert stored == [9, 10, 11]
        await _denied(conn, "DELETE FROM nev.charger_faults")


async def test_regulator_reads_everything_and_writes_nothing(db: RolesDb) -> None:
    login = db.login("regulator")
    tables = (
        "vehicle_telemetry",
        "latest_state",
        "vehicle_sessions",
        "battery_pack_telemetry",
        "vehicle_stats_1h",
        "charger_telemetry",
        "charging_session_events",
        "pack_telemetry",
        "alerts",
        "vehicle_telemetry_scoped",  # not granted: a regulator reads the table itself
    )
    async with db.connect() as conn:
        everything = {t: await conn.fetchval(f"SELECT count(*) FROM nev.{t}") for t in tables[:-1]}
    async with db.connect(login) as conn:
        seen = {t: await conn.fetchval(f"SELECT count(*) FROM nev.{t}") for t in tables[:-1]}
        assert seen == everything and all(everything.values())
        for view in ("pack_places", "vehicle_pack_history", "charging_sessions", "pack_swaps"):
            await conn.fetch(f"SELECT * FROM nev.{view}")
        assert await conn.fetchval("SELECT count(*) FROM nev.vehicle_pack_history") == len(VINS)
        await _denied(conn, "SELECT * FROM nev.vehicle_telemetry_scoped")
        await _denied(conn, "SELECT * FROM nev.account_scopes")
        await _denied(conn, "SELECT * FROM nev.consumer_offsets")
        await _denied(conn, "INSERT INTO nev.pack_telemetry SELECT * FROM nev.pack_telemetry")
        await _denied(conn, "DELETE FROM nev.latest_state")
        await _denied(conn, "UPDATE nev.alerts SET acked_by = 'me'")
    ack = db.cli(
        "alerts", "ack", "1", "--by", "reg", check=False, NEV_POSTGRES_DSN=db.dsn_of(login)
    )
    assert ack.returncode != 0 and "permission denied" in ack.stderr


async def test_operator_acks_an_alert_and_cannot_write_telemetry(db: RolesDb) -> None:
    login = db.login("operator")
    async with db.connect() as conn:
        alert = await conn.fetchval("SELECT id FROM nev.alerts")
    db.cli("alerts", "ack", str(alert), "--by", "duty-officer", NEV_POSTGRES_DSN=db.dsn_of(login))
    async with db.connect() as conn:
        assert await conn.fetchval("SELECT acked_by FROM nev.alerts") == "duty-officer"
    async with db.connect(login) as conn:
        assert await conn.fetchval("SELECT count(*) FROM nev.vehicle_telemetry") == len(VINS)
        await _denied(conn, "UPDATE nev.alerts SET severity = 'info'")
        await _denied(conn, "DELETE FROM nev.alerts")
        await _denied(
            conn,
            "INSERT INTO nev.vehicle_telemetry (vin, ts, edition, command, extremes_derived, "
            "fault_count) VALUES ('LFVAA000000000009', now(), 2016, 2, false, 0)",
        )


async def test_an_oem_sees_only_its_vehicles(db: RolesDb) -> None:
    lfv = db.login("oem", "LFV")
    lsv = db.login("oem", "LSV")
    mine = sorted(v for v in VINS if v.startswith("LFV"))
    async with db.connect(lfv) as conn:
        # the scope is read once per query (an InitPlan), not once per row
        plan = await _plan(conn, "SELECT * FROM nev.latest_state")
        assert "InitPlan" in plan and "account_scopes" in plan
        for sql in (
            "SELECT vin FROM nev.vehicle_telemetry",
            "SELECT vin FROM nev.vehicle_telemetry_scoped",
            "SELECT vin FROM nev.vehicle_sessions",
            "SELECT vin FROM nev.battery_pack_telemetry",
            "SELECT vin FROM nev.vehicle_stats_1h",
            "SELECT vin FROM nev.vehicle_pack_history",
            "SELECT entity_id FROM nev.latest_state",  # no chargers either
        ):
            assert await _column(conn, sql) == mine, sql
        assert await _column(conn, "SELECT login FROM nev.account_scopes") == [lfv]
        for table in ("charger_telemetry", "pack_telemetry", "alerts", "pack_places"):
            await _denied(conn, f"SELECT * FROM nev.{table}")
        await _denied(conn, "DELETE FROM nev.vehicle_telemetry")
    # the regulators' query tool, used by an OEM's login, shows its vehicles only
    out = db.cli(
        "query", "latest", "--prefix", "L", "--format", "json", NEV_POSTGRES_DSN=db.dsn_of(lfv)
    ).stdout
    assert sorted(json.loads(line)["entity_id"] for line in out.splitlines()) == mine
    async with db.connect(lsv) as conn:
        assert await _column(conn, "SELECT vin FROM nev.vehicle_telemetry") == [VINS[2]]
        assert await _column(conn, "SELECT entity_id FROM nev.latest_state") == [VINS[2]]


async def test_a_charging_operator_sees_only_its_connectors(db: RolesDb) -> None:
    login = db.login("charging", OPERATORS[0])
    async with db.connect(login) as conn:
        for sql in (
            "SELECT operator_id FROM nev.charger_telemetry",
            "SELECT operator_id FROM nev.charger_telemetry_scoped",
            "SELECT operator_id FROM nev.charging_session_events",
            "SELECT operator_id FROM nev.charging_sessions",
            "SELECT operator_id FROM nev.latest_state",  # its connectors, no vehicles
        ):
            assert await _column(conn, sql) == [OPERATORS[0]], sql
        for table in ("vehicle_telemetry", "vehicle_telemetry_scoped", "pack_telemetry"):
            await _denied(conn, f"SELECT * FROM nev.{table}")


async def test_public_statistics_see_1km_cells_and_no_vins(db: RolesDb) -> None:
    login = db.login("public")
    async with db.connect(login) as conn:
        cells = await conn.fetch("SELECT * FROM nev.public_vehicle_positions")
        assert sum(c["vehicles"] for c in cells) == len(VINS)
        for c in cells:
            assert not {"vin", "entity_id", "ts"} & set(c.keys())
            for degree in (c["longitude"], c["latitude"]):
                assert round(degree * 100, 6) == round(degree * 100)  # 0.01 degree grid
        # the seeded vehicles are 0.001 degree apart: a cell holds several
        assert len(cells) < len(VINS)
        hours = await conn.fetch("SELECT * FROM nev.public_fleet_stats_1h")
        assert [h["vehicles"] for h in hours] == [len(VINS)]
        status = await conn.fetch("SELECT * FROM nev.public_connector_status")
        assert sorted(s["operator_id"] for s in status) == sorted(OPERATORS)
        for table in ("vehicle_telemetry", "latest_state", "vehicle_stats_1h", "alerts"):
            await _denied(conn, f"SELECT * FROM nev.{table}")


async def test_roles_cli_rescopes_revokes_lists_and_refuses_mixed_scopes(db: RolesDb) -> None:
    login = db.login("oem", "LFV")
    db.cli("roles", "grant", login, "--as", "oem", "--scope", "lsv,LFV")
    listed = json.loads(db.cli("roles", "list", "--format", "json").stdout)
    assert listed["scopes"] == {login: ["LFV", "LSV"]}
    text = db.cli("roles", "list").stdout
    assert f"{db.names.oem}: {login}" in text and f"scope of {login}: LFV, LSV" in text
    assert listed["members"][db.names.oem] == [login]
    async with db.connect(login) as conn:
        assert len(await _column(conn, "SELECT vin FROM nev.vehicle_telemetry")) == 3
    mixed = db.cli(
        "roles", "grant", login, "--as", "charging", "--scope", OPERATORS[0], check=False
    )
    assert mixed.returncode != 0 and len(mixed.stderr.strip().splitlines()) == 1
    assert f"revoke {login} --as oem" in mixed.stderr
    wildcard = db.cli("roles", "grant", login, "--as", "oem", "--scope", "LF%", check=False)
    assert wildcard.returncode != 0 and "VIN characters" in wildcard.stderr
    db.cli("roles", "revoke", login, "--as", "oem")
    listed = json.loads(db.cli("roles", "list", "--format", "json").stdout)
    assert listed["scopes"] == {} and listed["members"][db.names.oem] == []
    async with db.connect(login) as conn:
        await _denied(conn, "SELECT * FROM nev.vehicle_telemetry")


async def test_migrate_as_a_createrole_user_that_is_not_superuser(
    fresh_database: str, unique_name: Callable[[str], str]
) -> None:
    rdb = roles_fixture(fresh_database, unique_name)
    migrator = f"{rdb.prefix}_migrator"
    rdb.logins.append(migrator)
    try:
        async with rdb.connect() as conn:
            await conn.execute(f"CREATE ROLE {migrator} LOGIN CREATEROLE")
            database = await conn.fetchval("SELECT current_database()")
            await conn.execute(f'ALTER DATABASE "{database}" OWNER TO {migrator}')
        as_migrator = rdb.dsn_of(migrator)
        refused = rdb.cli("migrate", check=False, NEV_POSTGRES_DSN=as_migrator)
        # PostgreSQL 15 lets only a superuser give BYPASSRLS: one line saying what to run
        assert refused.returncode != 0 and len(refused.stderr.strip().splitlines()) == 1
        assert f"CREATE ROLE {rdb.names.writer} NOLOGIN BYPASSRLS" in refused.stderr
        async with rdb.connect() as conn:
            await conn.execute(f"CREATE ROLE {rdb.names.writer} NOLOGIN BYPASSRLS")
        rdb.cli("migrate", NEV_POSTGRES_DSN=as_migrator)
        report = json.loads(
            rdb.cli("migrate", "--format", "json", NEV_POSTGRES_DSN=as_migrator).stdout
        )
        assert report["roles"] == []
        async with rdb.connect(migrator) as conn:
            assert await conn.fetchval(
                "SELECT pg_has_role(current_user, $1, 'MEMBER')", rdb.names.owner
            )
            assert (
                await conn.fetchval(
                    "SELECT relowner::regrole::text FROM pg_class "
                    "WHERE oid = 'nev.latest_state'::regclass"
                )
                == rdb.names.owner
            )
        # roles grant works as the migrator too
        login = rdb.login("oem", "LSV", as_dsn=as_migrator)
        async with rdb.connect() as conn:
            await seed(conn)
        async with rdb.connect(login) as conn:
            assert await _column(conn, "SELECT vin FROM nev.vehicle_telemetry") == [VINS[2]]
    finally:
        await drop_roles(rdb)


async def test_the_writers_upkeep_creates_partitions_and_leaves_retention_to_the_owner(
    db: RolesDb,
) -> None:
    login = db.login("writer")
    old = "vehicle_telemetry_p200001030000"  # the first slot: far past any retention
    async with db.connect() as conn:
        await conn.execute(
            f"CREATE TABLE nev.{old} PARTITION OF nev.vehicle_telemetry "
            "FOR VALUES FROM ('2000-01-03 00:00+00') TO ('2000-01-04 00:00+00')"
        )
        # 0088's recompute of the summaries made before it, as after an upgrade: the upkeep's
        await conn.execute(
            "INSERT INTO nev.vehicle_stats_recompute (cutover, done_from) VALUES (now(), now())"
        )
    later = datetime.now(UTC) + timedelta(days=30)  # beyond the partitions made ahead
    writer = await connect(PoolParams(dsn=db.dsn_of(login)))
    try:
        made = await partitions.ensure(
            writer, "nev", ["vehicle_telemetry"], [(later, later)], timedelta(hours=24)
        )
        assert len(made) == 1
        with pytest.raises(asyncpg.RaiseError, match="not a time-series table"):
            await writer.execute(
                "SELECT nev.create_partition('alerts', now(), now() + interval '1 day')"
            )
        report = await run_maintenance(writer, StorageParams(), SchemaMode.PLAIN)
        assert old in report.left_to_owner and report.dropped == []
        assert report.summary_rows is not None  # the summaries are the writer's to refresh
        assert report.recomputed is not None  # and to recompute, a step a pass
    finally:
        await writer.close()
    async with db.connect() as conn:
        owner = await conn.fetchval(
            f"SELECT relowner::regrole::text FROM pg_class c "
            f"WHERE c.oid = 'nev.{made[0]}'::regclass"
        )
        assert owner == db.names.owner
        report = await run_maintenance(conn, StorageParams(), SchemaMode.PLAIN)
        assert old in report.dropped  # the owner's run (nev-ingest migrate --maintain)
