"""``nev-ingest query`` through the logins of ``nev-ingest roles``: a query of rows the login's
role may not read says so in one line (which relation, which login, what to do), never with a
traceback; a query an OEM's login may run reads only what it needs (its vehicles online)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import pytest

from tests.integration.roles_support import (
    OPERATORS,
    VINS,
    RolesDb,
    seeded_roles_db,
)
from tests.integration.test_queries_entities import code

pytestmark = pytest.mark.integration


@pytest.fixture
async def db(fresh_database: str, unique_name: Callable[[str], str]) -> AsyncIterator[RolesDb]:
    async with seeded_roles_db(fresh_database, unique_name) as rdb:
        yield rdb


def _refused(db: RolesDb, login: str, *query: str) -> str:
    done = db.cli("query", *query, check=False, NEV_POSTGRES_DSN=db.dsn_of(login))
    assert done.returncode == 2, (query, done.stderr)
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, (
        query,
        done.stderr,
    )
    assert "permission denied for" in done.stderr and f"login {login}" in done.stderr
    assert "--as regulator" in done.stderr
    return done.stderr


async def test_a_query_of_rows_the_login_may_not_read_is_one_line(db: RolesDb) -> None:
    oem = db.login("oem", "LFV")
    connector = f"{OPERATORS[0]}:C1"
    for query in (
        ("pack", code(1)),
        ("swaps",),
        ("charger", connector),
        ("sessions", "--charger", connector),
        ("online", "--kind", "charger"),
        ("online", "--kind", "battery", "--quality"),
    ):
        _refused(db, oem, *query)
    assert "charger_connectors" in _refused(db, oem, "charger", connector)
    charging = db.login("charging", OPERATORS[0])
    assert "vehicle_stats_1h" in _refused(db, charging, "daily")
    assert "alarm_events" in _refused(db, charging, "alarms")


async def test_an_oem_sees_its_vehicles_online(db: RolesDb) -> None:
    oem = db.login("oem", "LFV")
    done = db.cli(
        "query", "online", "--kind", "vehicle", "--format", "json", check=False,
        NEV_POSTGRES_DSN=db.dsn_of(oem),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    summary = next(r for r in rows if r["section"] == "summary")
    mine = [v for v in VINS if v.startswith("LFV")]
    assert (summary["entities"], summary["online"]) == (len(mine), len(mine))
