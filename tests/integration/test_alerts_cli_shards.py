"""``nev-ingest alerts list|ack`` with ``storage.shards``: every shard is read, an alert is
named ``SHARD:ID`` (ids are per database), and ``ack`` acknowledges it on its own shard."""

from __future__ import annotations

import socket
from pathlib import Path

import orjson
import psycopg
import pytest

from ingest.cli import main
from tests.conftest import ShardDatabases

pytestmark = pytest.mark.integration

MIGRATION = Path(__file__).parents[2] / "storage" / "migrations" / "0050_alerts.sql"


@pytest.fixture
def shards(fresh_shards: ShardDatabases, monkeypatch: pytest.MonkeyPatch) -> ShardDatabases:
    """Two shards with the alerts table and one open alert each, both with id 1."""
    for i, dsn in enumerate(fresh_shards.shards):
        with psycopg.connect(dsn) as conn:
            conn.execute(MIGRATION.read_bytes())
            conn.execute(
                "INSERT INTO alerts (entity_kind, entity_id, rule_id, rule_version, severity, "
                "title, opened_at, last_seen_at) VALUES ('vehicle', %s, 'soc_low', 1, 'warning', "
                "'SOC low', now() - %s * interval '1 minute', now())",
                (f"LSVAU2180N218329{i}", i),
            )
    monkeypatch.setenv("NEV_STORAGE_SHARDS", ",".join(fresh_shards.shards))
    return fresh_shards


def _listed(capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, object]]:
    assert main(["alerts", "list", "--format", "json"]) == 0
    rows = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    return {str(r["id"]): r for r in rows}


def test_list_reads_every_shard_and_ack_goes_to_the_alerts_shard(
    shards: ShardDatabases, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = _listed(capsys)
    assert sorted(rows) == ["0:1", "1:1"]
    assert rows["1:1"]["entity_id"] == "LSVAU2180N2183291"
    # newest first across shards: shard 0's alert opened a minute after shard 1's
    assert list(_listed(capsys)) == ["0:1", "1:1"]

    assert main(["alerts", "ack", "1:1", "--by", "ops"]) == 0
    assert capsys.readouterr().out.strip() == "alert 1:1: acknowledged by ops"
    rows = _listed(capsys)
    assert rows["1:1"]["acked_by"] == "ops"
    assert rows["0:1"]["acked_by"] is None  # the same id on the other shard is untouched

    assert main(["alerts", "ack", "0:7", "--by", "ops"]) == 1
    assert "no such alert" in capsys.readouterr().out


def test_a_bare_id_with_shards_is_refused_in_one_line(
    shards: ShardDatabases, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["alerts", "ack", "1", "--by", "ops"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "give SHARD:ID" in err and "shards 0..1" in err
    assert main(["alerts", "ack", "5:1", "--by", "ops"]) == 2
    assert "shards 0..1" in capsys.readouterr().err


def test_list_shows_the_shards_that_answer_and_names_the_one_that_does_not(
    shards: ShardDatabases,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as s:  # a port nobody listens on: shard 1 is down
        s.bind(("127.0.0.1", 0))
        down = f"postgresql://nev@127.0.0.1:{s.getsockname()[1]}/nev_down"
    monkeypatch.setenv("NEV_STORAGE_SHARDS", f"{shards.shards[0]},{down}")
    assert main(["alerts", "list", "--format", "json"]) == 1
    out, err = capsys.readouterr()
    # shard 0's open alert is still listed during shard 1's outage
    assert [orjson.loads(line)["id"] for line in out.splitlines()] == ["0:1"]
    assert err.count("\n") == 1, err
    assert err.startswith("warning: cannot connect to storage.shards[1] (127.0.0.1:")
    assert "/nev_down)" in err and "NEV_STORAGE_SHARDS" in err
    assert "its alerts are not listed" in err and "NEV_POSTGRES_DSN" not in err


def test_a_shard_without_the_alerts_table_is_named(
    fresh_shards: ShardDatabases,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with psycopg.connect(fresh_shards.shards[0]) as conn:
        conn.execute(MIGRATION.read_bytes())  # shard 1 never migrated
    monkeypatch.setenv("NEV_STORAGE_SHARDS", ",".join(fresh_shards.shards))
    assert main(["alerts", "list"]) == 2
    err = capsys.readouterr().err
    name = fresh_shards.shards[1].rpartition("/")[2]
    assert "no alerts table in schema nev of storage.shards[1] (" in err
    assert f"/{name})" in err and "run `nev-ingest migrate`" in err
