"""``nev-ingest alerts list|ack`` against the real PostgreSQL."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import psycopg
import pytest

from alerts import RuleEngine, RuleSet
from devtools.sim.scenarios import thermal_runaway
from ingest.cli import main
from tests.unit.alerts_entities_support import charger

pytestmark = pytest.mark.integration

MIGRATION = Path(__file__).parents[2] / "storage" / "migrations" / "0050_alerts.sql"


@pytest.fixture
def dsn(postgres_dsn: str) -> Iterator[str]:
    """A fresh migrated database holding the alerts of one generated thermal runaway and of
    one hot charging connector."""
    base = postgres_dsn
    name = f"alerts_cli_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"'.encode())
        db = urlsplit(base)._replace(path=f"/{name}").geturl()  # the CLI takes URLs
        try:
            with psycopg.connect(db) as conn:
                conn.execute(MIGRATION.read_bytes())
                changes = RuleEngine(RuleSet.default()).evaluate(thermal_runaway())
                hot = [charger(0, temp=95), charger(30, temp=96)]
                changes += RuleEngine(RuleSet.default(), entity_kind="charger").evaluate(hot)
                for c in changes:
                    a = c.alert
                    if c.type == "raised":
                        conn.execute(
                            "INSERT INTO alerts (entity_kind, entity_id, rule_id, rule_version, "
                            "severity, title, opened_at, last_seen_at) "
                            "VALUES (%s, %s, %s, %s, %s, %s, to_timestamp(%s), to_timestamp(%s))",
                            (a.entity_kind, a.entity_id, a.rule_id, a.rule_version, a.severity,
                             a.title, a.opened_ms / 1000, a.last_seen_ms / 1000),
                        )  # fmt: skip
                conn.execute("UPDATE alerts SET cleared_at = now() WHERE rule_id = 'max_temp_high'")
            yield db
        finally:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)'.encode())


def test_list_shows_open_alerts_newest_first(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alerts", "list", "--dsn", dsn]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["ID", "OPENED", "(+08:00)"]
    rules = [line.split()[6] for line in lines[1:]]
    assert "thermal_event" in rules and "gb38031_thermal_runaway" in rules
    assert "connector_over_temp" in rules
    assert "max_temp_high" not in rules  # cleared
    assert main(["alerts", "list", "--dsn", dsn, "--all", "--format", "json"]) == 0
    every = [orjson.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert "max_temp_high" in {r["rule_id"] for r in every}


def test_list_works_whatever_date_style_the_database_defaults_to(
    dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # psycopg reads times only in ISO: the CLI sets its own session's DateStyle
    name = urlsplit(dsn).path.lstrip("/")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE \"{name}\" SET DateStyle = 'SQL, DMY'".encode())
    assert main(["alerts", "list", "--dsn", dsn, "--all", "--format", "json"]) == 0
    assert "thermal_event" in capsys.readouterr().out


def test_list_filters_by_entity_kind(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alerts", "list", "--dsn", dsn, "--kind", "charger", "--format", "json"]) == 0
    got = [orjson.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(r["entity_kind"], r["rule_id"]) for r in got] == [("charger", "connector_over_temp")]
    assert main(["alerts", "list", "--dsn", dsn, "--kind", "vehicle"]) == 0
    assert "connector_over_temp" not in capsys.readouterr().out


def test_list_filters_by_severity(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alerts", "list", "--dsn", dsn, "--severity", "critical", "--format", "json"]) == 0
    got = [orjson.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert {r["rule_id"] for r in got} == {"gb38031_thermal_runaway", "thermal_event"}


def test_ack_records_who_and_is_reported_per_id(
    dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["alerts", "list", "--dsn", dsn, "--format", "json", "--severity", "critical"]) == 0
    ids = [orjson.loads(x)["id"] for x in capsys.readouterr().out.splitlines()]
    assert (
        main(
            [
                "alerts",
                "ack",
                str(ids[0]),
                "--by",
                "duty-officer",
                "--note",
                "fire brigade called",
                "--dsn",
                dsn,
            ]
        )
        == 0
    )
    assert capsys.readouterr().out == f"alert {ids[0]}: acknowledged by duty-officer\n"
    assert main(["alerts", "ack", str(ids[0]), "999999", "--by", "someone", "--dsn", dsn]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"alert {ids[0]}: already acknowledged by duty-officer",
        "alert 999999: no such alert (see `nev-ingest alerts list --all`)",
    ]
    assert main(["alerts", "list", "--dsn", dsn, "--unacked", "--format", "json"]) == 0
    assert ids[0] not in {orjson.loads(x)["id"] for x in capsys.readouterr().out.splitlines()}


def test_an_unreachable_database_is_a_one_line_error_saying_what_to_set(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("NEV_POSTGRES_DSN", f"postgresql://nobody@127.0.0.1:{port}/nev")
    assert main(["alerts", "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nev-ingest: error: cannot connect to the database")
    assert "set --dsn, NEV_POSTGRES_DSN or [postgres] dsn in --config" in err
    assert len(err.splitlines()) == 1


def test_reads_the_alerts_of_storage_schema_as_migrate_created_them(
    postgres_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two schemas in one database, each migrated by `nev-ingest migrate`: `alerts` lists and
    acknowledges the alerts of the schema `storage.schema` names, not a table of `public`."""
    name = f"alerts_schema_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"'.encode())
        db = urlsplit(postgres_dsn)._replace(path=f"/{name}").geturl()
        try:
            for schema, vin in (("nev", "LNEVSCHEMA0000001"), ("fleet_b", "LNEVSCHEMA0000002")):
                set_schema = f"storage.schema={schema}"
                assert main(["migrate", "--dsn", db, "--set", set_schema]) == 0
                with psycopg.connect(db) as conn:
                    conn.execute(
                        f"INSERT INTO {schema}.alerts (entity_kind, entity_id, rule_id, "
                        "rule_version, severity, title, opened_at, last_seen_at) "
                        "VALUES ('vehicle', %s, 'r', 1, 'critical', 't', now(), now())".encode(),
                        (vin,),
                    )
            capsys.readouterr()
            assert main(["alerts", "list", "--dsn", db, "--format", "json"]) == 0
            listed = [orjson.loads(x) for x in capsys.readouterr().out.splitlines()]
            assert [r["entity_id"] for r in listed] == ["LNEVSCHEMA0000001"]
            other = ["--set", "storage.schema=fleet_b"]
            assert main(["alerts", "list", "--dsn", db, "--format", "json", *other]) == 0
            listed = [orjson.loads(x) for x in capsys.readouterr().out.splitlines()]
            assert [r["entity_id"] for r in listed] == ["LNEVSCHEMA0000002"]
            ident = str(listed[0]["id"])
            assert main(["alerts", "ack", ident, "--by", "duty", "--dsn", db, *other]) == 0
            assert capsys.readouterr().out == f"alert {ident}: acknowledged by duty\n"
        finally:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)'.encode())


def test_the_dsn_s_own_sslmode_is_kept(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    # postgres.sslmode (default "prefer") must not override the URL's own: with
    # ?sslmode=require against a server without TLS the command refuses, as query, keys and
    # migrate do; it used to fall back to plain text (and ack wrote over it).
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SHOW ssl").fetchone()
        assert row is not None and row[0] == "off", "this test needs a server without TLS"
    assert main(["alerts", "list", "--dsn", f"{dsn}?sslmode=require"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nev-ingest: error: cannot connect to the database")
    assert "SSL" in err


def test_a_dsn_s_options_with_spaces_reach_the_server(
    dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # libpq reads %20 as a space and a + as a +: the DSN's query must not be re-encoded with +
    options = "options=-c%20statement_timeout%3D5s"
    assert main(["alerts", "list", "--dsn", f"{dsn}?{options}", "--format", "json"]) == 0, (
        capsys.readouterr().err
    )
