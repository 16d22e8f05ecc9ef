"""Helpers of the role tests: a fresh database migrated with roles of the test's own names
(roles are cluster-wide, the dev cluster is shared), logins made with ``nev-ingest roles
grant``, rows seeded for every kind of owner, and dropping it all again."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from storage.roles import RoleNames

ROOT = Path(__file__).parents[2]
FAMILIES = ("owner", "writer", "regulator", "operator", "oem", "charging", "public")

# Two OEMs' vehicles (WMI LFV, LSV) and a third maker's; two charging operators.
VINS = ("LFVAA000000000001", "LFVAA000000000002", "LSVBB000000000003", "LGXCC000000000004")
OPERATORS = ("MA01H3BQ1", "MA5GRX2T0")


@dataclass
class RolesDb:
    """A migrated database with roles named ``<prefix>_<family>``; ``logins`` are dropped at
    the end with the group roles."""

    dsn: str
    names: RoleNames
    prefix: str
    logins: list[str] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)  # more NEV_* of every command

    def environ(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEV_")}
        env["NEV_POSTGRES_DSN"] = self.dsn
        env.update(self.settings)
        env["NEV_ROLES_ENABLED"] = "true"
        for family in FAMILIES:
            env[f"NEV_ROLES_{family.upper()}"] = self.names.family(family)
        env.update(extra)
        return env

    def cli(self, *args: str, check: bool = True, **extra: str) -> subprocess.CompletedProcess[str]:
        """``nev-ingest ARGS`` against this database (as the cluster's superuser)."""
        done = subprocess.run(
            [sys.executable, "-m", "ingest", *args],
            env=self.environ(**extra),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check:
            assert done.returncode == 0, done.stderr[-2000:]
        return done

    def login(self, family: str, *scope: str, as_dsn: str = "") -> str:
        """A new login granted ``family`` (with ``scope``) by ``nev-ingest roles grant``, run
        as the superuser or on ``as_dsn``."""
        name = f"{self.prefix}_l{len(self.logins)}_{family}"
        self.logins.append(name)
        args = ["roles", "grant", name, "--as", family]
        if scope:
            args += ["--scope", ",".join(scope)]
        self.cli(*args, NEV_POSTGRES_DSN=as_dsn or self.dsn)
        return name

    def dsn_of(self, login: str, dsn: str = "") -> str:
        """``dsn`` (default: this database) as ``login``."""
        parts = urlsplit(dsn or self.dsn)
        host = parts.netloc.rsplit("@", 1)[-1]
        return urlunsplit(parts._replace(netloc=f"{login}@{host}"))

    @asynccontextmanager
    async def connect(self, login: str | None = None) -> AsyncIterator[Any]:
        conn = await asyncpg.connect(self.dsn_of(login) if login else self.dsn)
        try:
            yield conn
        finally:
            await conn.close()


async def drop_roles(db: RolesDb) -> None:
    """Drop the test's logins and group roles (what they own or were granted here first)."""
    roles = [*db.logins, *(db.names.family(f) for f in FAMILIES)]
    async with db.connect() as conn:
        existing = [
            r[0]
            for r in await conn.fetch(
                "SELECT rolname FROM pg_roles WHERE rolname = ANY($1::text[])", roles
            )
        ]
        if existing:
            # REASSIGN also takes the database back from a test that gave it to a login
            await conn.execute(f"REASSIGN OWNED BY {', '.join(existing)} TO current_user")
            await conn.execute(f"DROP OWNED BY {', '.join(existing)}")
        for role in existing:
            await conn.execute(f"DROP ROLE {role}")


async def drop_named_roles(conn: Any, roles: Iterable[str]) -> None:
    """Drop those of ``roles`` that exist, each after what it owns or was granted in
    ``conn``'s database (a TimescaleDB test's schema and roles on its one connection)."""
    for role in roles:
        if await conn.fetchval("SELECT count(*) FROM pg_roles WHERE rolname = $1", role):
            await conn.execute(f"DROP OWNED BY {role}")
            await conn.execute(f"DROP ROLE {role}")


def roles_fixture(fresh_database: str, unique_name: Callable[[str], str]) -> RolesDb:
    prefix = unique_name("r")
    names = RoleNames(*(f"{prefix}_{f}" for f in FAMILIES))
    return RolesDb(dsn=fresh_database, names=names, prefix=prefix)


@asynccontextmanager
async def seeded_roles_db(
    fresh_database: str, unique_name: Callable[[str], str]
) -> AsyncIterator[RolesDb]:
    """A database migrated with roles of the test's own, holding rows of every owner; the
    roles are dropped again after."""
    rdb = roles_fixture(fresh_database, unique_name)
    try:
        rdb.cli("migrate")
        async with rdb.connect() as conn:
            await seed(conn)
        yield rdb
    finally:
        await drop_roles(rdb)


async def seed(conn: Any) -> None:
    """Rows of every owner: vehicles of LFV/LSV/LGX, connectors of two operators, a pack, an
    hourly aggregate, an open alert. Written by the (superuser) test connection."""
    vins, ops = list(VINS), list(OPERATORS)
    for sql, arg in (
        (_VEHICLES, vins),
        (_LATEST_VEHICLES, vins),
        (_SESSIONS, vins),
        (_PACKS_OF_VEHICLES, vins),
        (_STATS, vins),
        (_CHARGER_TELEMETRY, ops),
        (_CHARGING_ORDERS, ops),
        (_LATEST_CHARGERS, ops),
        (_ALERT, VINS[0]),
    ):
        await conn.execute(sql, arg)
    await conn.execute(
        "INSERT INTO nev.pack_telemetry (pack_code, ts, edition, command, fault_count) "
        "VALUES ('PACK0001', now(), 2025, 2, 0)"
    )


_VEHICLES = """
INSERT INTO nev.vehicle_telemetry (vin, ts, edition, command, extremes_derived, fault_count,
                                   longitude, latitude, position_valid)
SELECT v, now() - interval '1 minute', 2016, 2, false, 0,
       116.397428 + i * 0.001, 39.909187 + i * 0.001, true
FROM unnest($1::text[]) WITH ORDINALITY AS u(v, i)"""
_LATEST_VEHICLES = """
INSERT INTO nev.latest_state (entity_kind, entity_id, ts, longitude, latitude, position_valid,
                              soc_pct, charging_state)
SELECT 'vehicle', v, now() - interval '1 minute', 116.397428 + i * 0.001,
       39.909187 + i * 0.001, true, 60, 3
FROM unnest($1::text[]) WITH ORDINALITY AS u(v, i)"""
_SESSIONS = """
INSERT INTO nev.vehicle_sessions (vin, ts, event, pack_codes)
SELECT v, now() - interval '2 minutes', 'login', ARRAY['PACK' || v] FROM unnest($1::text[]) v"""
_PACKS_OF_VEHICLES = """
INSERT INTO nev.battery_pack_telemetry (vin, ts, pack, first_cell, voltage_v)
SELECT v, now() - interval '1 minute', 1, 1, 350 FROM unnest($1::text[]) AS v"""
_STATS = """
INSERT INTO nev.vehicle_stats_1h (vin, bucket, frames, first_ts, last_ts, alarm_frames,
                                  severe_alarm_frames)
SELECT v, date_trunc('hour', now()), 1, now(), now(), 0, 0 FROM unnest($1::text[]) AS v"""
_CHARGER_TELEMETRY = """
INSERT INTO nev.charger_telemetry (operator_id, connector_id, ts, source, power_kw)
SELECT o, 'C1', now() - interval '1 minute', 'tcec', 60 FROM unnest($1::text[]) AS o"""
_CHARGING_ORDERS = """
INSERT INTO nev.charging_session_events (operator_id, connector_id, ts, start_charge_seq, event,
                                         start_time, source)
SELECT o, 'C1', now(), o || '000000000000000001', 'order', now() - interval '1 hour', 'tcec'
FROM unnest($1::text[]) AS o"""
_LATEST_CHARGERS = """
INSERT INTO nev.latest_state (entity_kind, entity_id, ts, operator_id, connector_status)
SELECT 'charger', o || ':C1', now(), o, 3 FROM unnest($1::text[]) AS o"""
_ALERT = """
INSERT INTO nev.alerts (entity_kind, entity_id, rule_id, rule_version, severity, title,
                        opened_at, last_seen_at)
VALUES ('vehicle', $1, 'test_rule', 'v1', 'major', 'test', now(), now())"""
