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
    summary = _online_summary(db, db.login("oem", "LFV"), "vehicle")
    mine = [v for v in VINS if v.startswith("LFV")]
    assert (summary["entities"], summary["online"]) == (len(mine), len(mine))


def _online_summary(db: RolesDb, login: str, kind: str) -> dict[str, object]:
    done = db.cli(
        "query", "online", "--kind", kind, "--format", "json", check=False,
        NEV_POSTGRES_DSN=db.dsn_of(login),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    summary: dict[str, object] = next(r for r in rows if r["section"] == "summary")
    return summary


async def test_online_of_a_kind_the_login_may_not_read_is_refused_not_zero(db: RolesDb) -> None:
    # latest_state's row-level access shows an OEM its vehicles and a charging operator its
    # connectors only: `online` of another kind answered 0 entities, as if none existed.
    async with db.connect() as conn:
        await conn.execute(
            "INSERT INTO nev.latest_state (entity_kind, entity_id, ts) "
            "VALUES ('battery', 'PACK0001', now())"
        )
    oem = db.login("oem", "LFV")
    assert "pack_telemetry" in _refused(db, oem, "online", "--kind", "battery")
    charging = db.login("charging", OPERATORS[0])
    assert "pack_telemetry" in _refused(db, charging, "online", "--kind", "battery")
    assert "vehicle_telemetry" in _refused(db, charging, "online", "--kind", "vehicle")
    assert _online_summary(db, charging, "charger")["entities"] == 1  # its own connector
    regulator = db.login("regulator")
    assert _online_summary(db, regulator, "battery")["entities"] == 1
