"""The query database over two real shards, read by the logins of ``nev-ingest roles``: each
reads the shards as the shard login its own user mapping names, so the shards' grants and row
scoping apply there as on a shard (an OEM sees its VINs through ``_scoped``); a login without a
mapping gets an error, not the migrating user's rows; the private tables are not imported; the
grants an operator gave on the views survive the next migrate (docs/storage.md, "Reading the
query database")."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest

from tests.conftest import ShardDatabases
from tests.integration.roles_support import RolesDb, drop_roles, roles_fixture, seed

pytestmark = pytest.mark.integration


@pytest.fixture
async def db(
    fresh_shards: ShardDatabases, unique_name: Callable[[str], str]
) -> AsyncIterator[tuple[RolesDb, str]]:
    """Two shards migrated with roles of the test's own and seeded alike, and the query
    database over them (its DSN)."""
    rdb = roles_fixture(fresh_shards.shards[0], unique_name)
    rdb.settings = {
        "NEV_STORAGE_SHARDS": ",".join(fresh_shards.shards),
        "NEV_STORAGE_QUERY_DSN": fresh_shards.query,
    }
    try:
        rdb.cli("migrate")
        for shard in fresh_shards.shards:
            conn = await asyncpg.connect(shard)
            try:
                await seed(conn)
            finally:
                await conn.close()
        yield rdb, fresh_shards.query
    finally:
        # what the logins hold in the other databases goes first: roles are cluster-wide
        for other in (fresh_shards.query, fresh_shards.shards[1]):
            await _drop_owned(other, rdb)
        await drop_roles(rdb)


async def _drop_owned(dsn: str, rdb: RolesDb) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        roles = [*rdb.logins, *(rdb.names.family(f) for f in ("regulator", "oem", "owner"))]
        for role in roles:
            if await conn.fetchval("SELECT count(*) FROM pg_roles WHERE rolname = $1", role):
                await conn.execute(f"DROP OWNED BY {role}")
    finally:
        await conn.close()


async def _fetch(dsn: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


async def _give(query: str, login: str, *, mapping: bool) -> None:
    """What docs/storage.md tells an operator to do for a login (as the query database's
    owner): a user mapping per shard, naming the login's shard login, and the grants. No
    password here: the dev cluster trusts local connections, which postgres_fdw accepts from a
    non-superuser only with password_required 'false' (a superuser's option)."""
    conn = await asyncpg.connect(query)
    try:
        if mapping:
            for server in ("nev_shard_0", "nev_shard_1"):
                await conn.execute(
                    f"CREATE USER MAPPING FOR {login} SERVER {server} "
                    f"OPTIONS (user '{login}', password_required 'false')"
                )
        await conn.execute(f"GRANT USAGE ON SCHEMA nev TO {login}")
        await conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA nev TO {login}")
    finally:
        await conn.close()


async def test_each_login_reads_the_shards_with_its_own_mapping_and_rights(
    db: tuple[RolesDb, str],
) -> None:
    rdb, query = db
    regulator = rdb.login("regulator")
    unmapped = rdb.login("regulator")
    oem = rdb.login("oem", "LFV")
    await _give(query, regulator, mapping=True)
    await _give(query, unmapped, mapping=False)
    await _give(query, oem, mapping=True)
    # the views are made anew: the grants above stay; every shard view is accounted for
    assert "left out" not in rdb.cli("migrate").stdout

    as_regulator = rdb.dsn_of(regulator, query)
    # every shard's rows: 4 vehicles and 2 connectors on each
    assert await _fetch(as_regulator, "SELECT count(*) FROM nev.latest_state") == [(12,)]
    # a regulator may not read these on a shard: they are not in the query database at all
    for private in ("account_scopes", "consumer_offsets", "alerts_outbox", "schema_migrations"):
        for schema in ("nev", "shard_0", "shard_1"):
            found = await _fetch(query, f"SELECT to_regclass('{schema}.{private}')")
            assert found == [(None,)], f"{schema}.{private}"

    with pytest.raises(asyncpg.PostgresError, match="user mapping not found"):
        await _fetch(rdb.dsn_of(unmapped, query), "SELECT count(*) FROM nev.latest_state")
    # nev-ingest query says so in one line, not a traceback
    done = rdb.cli(
        "query", "online", "--kind", "vehicle", "--dsn", rdb.dsn_of(unmapped, query), check=False
    )
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
    assert f"no user mapping for {unmapped} on the query database" in done.stderr

    as_oem = rdb.dsn_of(oem, query)
    for view in ("vehicle_telemetry_scoped", "vehicle_pack_history_scoped"):
        scoped = await _fetch(as_oem, f"SELECT vin FROM nev.{view} ORDER BY vin")
        assert [r[0] for r in scoped] == ["LFVAA000000000001"] * 2 + ["LFVAA000000000002"] * 2
    # a union of it would be wrong, and re-made it would need account_scopes: not there
    assert await _fetch(query, "SELECT to_regclass('nev.charging_sessions_scoped')") == [(None,)]
    # plain PostgreSQL: the shards' row-level security applies to the OEM's login too
    latest = await _fetch(as_oem, "SELECT DISTINCT entity_id FROM nev.latest_state ORDER BY 1")
    assert [r[0] for r in latest] == ["LFVAA000000000001", "LFVAA000000000002"]
    # the public statistics keep their owner's rights: every maker's vehicles (each seeded on
    # both shards, counted once), not the OEM's two
    cells = await _fetch(as_oem, "SELECT sum(vehicles)::int FROM nev.public_vehicle_positions")
    assert cells == [(4,)]
