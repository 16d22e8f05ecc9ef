"""Shards on the real stack: two PostgreSQL clusters and a query database.

`nev-ingest migrate` makes each shard a complete schema and the query database a union of
them (postgres_fdw, idempotently); fleet-wide `nev-ingest query` reads the union through the
query database; a query about one vehicle goes to the shard its Kafka key hashes to.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest

from ingest.cli import main
from ingest.decoders.pack_code import encode_date_code
from storage.fdw_views import RECREATED_VIEWS
from storage.shards import shard_of_key
from tests.conftest import ShardDatabases

pytestmark = pytest.mark.integration

# an hour ago: migrate made the plain partitions of the days around now
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
PARTITIONS = 12  # kafka.partitions, the default: what the router hashes keys into


def _flags(db: ShardDatabases) -> list[str]:
    return [
        "--set",
        f"storage.shards={','.join(db.shards)}",
        "--set",
        f"storage.query_dsn={db.query}",
    ]


def _vin_on(shard: int, tag: str) -> str:
    """A VIN (17 characters) whose Kafka key hashes to a partition of ``shard`` (of 2)."""
    for n in range(1000):
        vin = f"LSHARD{tag}{n:010d}"[:17]
        if shard_of_key(vin.encode(), PARTITIONS, 2) == shard:
            return vin
    raise AssertionError("no VIN found")


def _query_db_state(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    """Everything migrate makes in the query database, by name and definition."""
    with psycopg.connect(dsn) as conn:
        relations = conn.execute(
            "SELECT n.nspname, c.relname, c.relkind, "
            "CASE WHEN c.relkind = 'v' THEN pg_get_viewdef(c.oid) END "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname IN ('nev', 'shard_0', 'shard_1') AND c.relkind IN ('v', 'f') "
            "ORDER BY 1, 2"
        ).fetchall()
        servers = conn.execute(
            "SELECT srvname, srvoptions FROM pg_foreign_server ORDER BY 1"
        ).fetchall()
        functions = conn.execute(
            "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'nev' ORDER BY 1"
        ).fetchall()
    return {"relations": relations, "servers": servers, "functions": functions}


def _migrate(db: ShardDatabases, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(["migrate", *_flags(db)]) == 0
    return capsys.readouterr().out


def test_migrate_makes_every_shard_and_the_query_database_and_is_idempotent(
    fresh_shards: ShardDatabases, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _migrate(fresh_shards, capsys)
    assert "shard 0: schema nev (plain): 0001_core" in out
    assert "shard 1: schema nev (plain): 0001_core" in out
    assert "query database: schema nev unions 2 shard(s)" in out
    first = _query_db_state(fresh_shards.query)

    again = _migrate(fresh_shards, capsys)
    assert "shard 0: schema nev (plain): nothing to apply" in again
    assert "shard 1: schema nev (plain): nothing to apply" in again
    assert _query_db_state(fresh_shards.query) == first  # run twice = the same state

    names = {(schema, name, kind) for schema, name, kind, _ in first["relations"]}
    for table in ("vehicle_telemetry", "latest_state", "alerts"):
        assert ("nev", table, "v") in names
        assert ("shard_0", table, "f") in names and ("shard_1", table, "f") in names
    private = {"schema_migrations", "consumer_offsets", "alerts_outbox", "account_scopes"}
    assert not any(name in private for _, name, _ in names)
    servers = dict(first["servers"])
    for server in ("nev_shard_0", "nev_shard_1"):
        assert "async_capable=true" in servers[server]
    # each shard is a complete schema of its own, on its own cluster
    assert ("pack_place_kind",) in first["functions"]  # what `query pack CODE` calls
    for dsn in fresh_shards.shards:
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT to_regclass('nev.consumer_offsets')").fetchone() != (None,)
    capsys.readouterr()
    assert main(["migrate", "--status", *_flags(fresh_shards)]) == 0
    status = capsys.readouterr().out
    assert "shard 0: schema nev: plain" in status and "shard 1: schema nev: plain" in status


def _put(dsn: str, vin: str, soc: int) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO nev.vehicle_telemetry "
            "(vin, ts, edition, command, soc_pct, extremes_derived, fault_count) "
            "VALUES (%s, %s, 2016, 2, %s, false, 0)",
            (vin, T0, soc),
        )
        conn.execute(
            "INSERT INTO nev.latest_state (entity_kind, entity_id, ts, soc_pct) "
            "VALUES ('vehicle', %s, %s, %s)",
            (vin, T0, soc),
        )


def _rows(args: list[str], capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    capsys.readouterr()
    assert main([*args, "--format", "json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_fleet_queries_read_the_union_and_one_vehicle_reads_its_shard(
    fresh_shards: ShardDatabases, capsys: pytest.CaptureFixture[str]
) -> None:
    _migrate(fresh_shards, capsys)
    shard0, shard1 = fresh_shards.shards
    on0, on1 = _vin_on(0, "A"), _vin_on(1, "B")
    _put(shard0, on0, 40)
    _put(shard1, on1, 60)
    # a stray row of on0 on the wrong shard: the union shows it, the routed query must not
    _put(shard1, on0, 99)
    flags = _flags(fresh_shards)

    fleet = _rows(["query", "latest", "--prefix", "LSHARD", *flags], capsys)
    assert sorted((r["entity_id"], r["soc_pct"]) for r in fleet) == [
        (on0, 40),
        (on0, 99),
        (on1, 60),
    ]
    assert [r["soc_pct"] for r in _rows(["query", "latest", on0, *flags], capsys)] == [40]
    assert [r["soc_pct"] for r in _rows(["query", "latest", on1, *flags], capsys)] == [60]
    window = [
        "--from",
        (T0 - timedelta(hours=1)).isoformat(),
        "--to",
        (T0 + timedelta(hours=1)).isoformat(),
    ]
    track = _rows(["query", "track", on0, *window, *flags], capsys)
    assert [r["soc_pct"] for r in track] == [40]
    track = _rows(["query", "track", on1, *window, *flags], capsys)
    assert [r["soc_pct"] for r in track] == [60]

    # a pack's history joins vehicles' sessions of every shard and calls pack_place_kind,
    # which migrate copied into the query database
    code = "ABCPE01TRACE01" + encode_date_code(date(2024, 5, 1)) + "0000001"
    capsys.readouterr()
    assert main(["query", "pack", code, "--format", "json", *flags]) == 0

    # the query database scans the shards concurrently (async foreign scans over the union)
    with psycopg.connect(fresh_shards.query) as conn:
        plan = "\n".join(
            r[0] for r in conn.execute("EXPLAIN SELECT * FROM nev.vehicle_telemetry").fetchall()
        )
    assert plan.count("Async Foreign Scan") == 2


def test_a_fleet_query_over_shards_without_a_query_database_says_what_to_set(
    fresh_shards: ShardDatabases, capsys: pytest.CaptureFixture[str]
) -> None:
    only_shards = ["--set", f"storage.shards={','.join(fresh_shards.shards)}"]
    assert main(["query", "latest", "--prefix", "LSHARD", *only_shards]) == 2
    assert "set storage.query_dsn" in capsys.readouterr().err


def test_a_shard_left_out_of_the_list_leaves_the_query_database(
    fresh_shards: ShardDatabases, capsys: pytest.CaptureFixture[str]
) -> None:
    _migrate(fresh_shards, capsys)
    capsys.readouterr()
    one = ["--set", f"storage.shards={fresh_shards.shards[0]}", "--reshard"]
    assert main(["migrate", *one, "--set", f"storage.query_dsn={fresh_shards.query}"]) == 0
    out = capsys.readouterr().out
    assert "unions 1 shard(s)" in out and "removed: nev_shard_1" in out
    state = _query_db_state(fresh_shards.query)
    assert [row[0] for row in state["servers"]] == ["nev_shard_0"]
    assert not any(schema == "shard_1" for schema, *_ in state["relations"])
    views = [
        d
        for schema, name, kind, d in state["relations"]
        if kind == "v" and name not in RECREATED_VIEWS  # those read the union views
    ]
    assert views and all("shard_0." in d and "shard_1." not in d for d in views)


def test_migrate_points_the_query_database_at_the_replicas_and_keeps_it_there(
    fresh_shards: ShardDatabases, capsys: pytest.CaptureFixture[str]
) -> None:
    # Stand-ins for the replicas: each shard's own database under another host name (the dev
    # stack runs no standby by default); what matters is the address the servers keep.
    replicas = [d.replace("@127.0.0.1:", "@localhost:") for d in fresh_shards.shards]
    assert replicas != list(fresh_shards.shards)
    flags = [*_flags(fresh_shards), "--set", f"storage.replicas={','.join(replicas)}"]
    on0 = _vin_on(0, "R")
    _migrate_with(flags, capsys)
    _put(fresh_shards.shards[0], on0, 42)
    for _ in range(2):  # the daily migrate --maintain must not point them back at the primaries
        hosts = {
            name: dict(o.split("=", 1) for o in options)["host"]
            for name, options in _query_db_state(fresh_shards.query)["servers"]
        }
        assert hosts == {"nev_shard_0": "localhost", "nev_shard_1": "localhost"}
        with psycopg.connect(fresh_shards.query) as conn:
            got = conn.execute("SELECT soc_pct FROM nev.latest_state WHERE entity_id = %s", (on0,))
            assert got.fetchall() == [(42,)]
        _migrate_with([*flags, "--maintain"], capsys)


def _migrate_with(flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["migrate", *flags]) == 0, capsys.readouterr().err
