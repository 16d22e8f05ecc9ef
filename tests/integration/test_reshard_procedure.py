"""docs/storage.md "Changing N", followed step by step with the real CLI and the documented
move script: from 1 shard to 2 and back, ending with `nev-ingest run`'s start check passing.
The new shard has no tables until `migrate --reshard` gives them (before it checks the map), so
the move has somewhere to go."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import psycopg
import pytest

from storage.shard_map import ShardFacts, read_facts
from tests.conftest import ShardDatabases
from tests.integration.shard_map_support import migrate_cli, run_check, shards_set

pytestmark = pytest.mark.integration

TOPIC = "nev.vehicle.raw"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "storage.md"


def _move_script() -> str:
    """The step-3 script exactly as docs/storage.md prints it."""
    text = DOCS.read_text()
    marker = text.find("# move-partitions.sh OLD NEW CONDITION")
    assert marker > 0, "docs/storage.md lost the move-partitions.sh script"
    start = text.rindex("```\n", 0, marker) + 4
    return text[start : text.index("\n```", marker) + 1]


def _move(old: str, new: str, condition: str) -> None:
    done = subprocess.run(
        ["bash", "-s", old, new, condition],
        input=_move_script(),
        text=True,
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def _written(dsn: str) -> None:
    """What a worker leaves on a single database: offsets, latest state, an open and a closed
    alert and an unsent alert message for each of partitions 0-3."""
    with psycopg.connect(dsn) as conn:
        for p in range(4):
            vin = f"LTESTRESHARD0000{p}"
            conn.execute(
                "INSERT INTO nev.consumer_offsets (consumer_group, topic, partition, next_offset,"
                " latest_from) VALUES ('nev-ingest', %s, %s, %s, %s)",
                (TOPIC, p, 1000 + p, 990 + p),
            )
            conn.execute(
                "INSERT INTO nev.latest_state (entity_kind, entity_id, ts, soc_pct, kafka_topic,"
                " kafka_partition) VALUES ('vehicle', %s, now(), %s, %s, %s)",
                (vin, 50 + p, TOPIC, p),
            )
            for cleared in (None, "2026-01-02T00:00:00Z"):
                conn.execute(
                    "INSERT INTO nev.alerts (entity_kind, entity_id, rule_id, rule_version,"
                    " severity, title, opened_at, last_seen_at, cleared_at, kafka_topic,"
                    " kafka_partition) VALUES ('vehicle', %s, 'soc_low', 'v1', 'warning', 't',"
                    " %s, %s, %s, %s, %s)",
                    (vin, cleared or "2026-02-01", cleared or "2026-02-01", cleared, TOPIC, p),
                )
    with psycopg.connect(dsn) as conn:  # interleaved, so that a send order is to keep
        for n in range(3):
            for p in range(4):
                conn.execute(
                    "INSERT INTO nev.alerts_outbox (kafka_partition, kafka_topic, msg_key,"
                    " msg_value) VALUES (%s, %s, 'k', %s)",
                    (p, TOPIC, f"{p}.{n}".encode()),
                )


def _rows(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(dsn) as conn:
        q = {
            "offsets": "SELECT partition, next_offset, latest_from FROM nev.consumer_offsets",
            "latest": "SELECT kafka_partition, soc_pct FROM nev.latest_state",
            "open": "SELECT kafka_partition FROM nev.alerts WHERE cleared_at IS NULL",
            "closed": "SELECT kafka_partition FROM nev.alerts WHERE cleared_at IS NOT NULL",
            "outbox": "SELECT DISTINCT kafka_partition FROM nev.alerts_outbox",
            "identity": "SELECT shard_index, shard_count FROM nev.shard_identity",
        }
        return {k: sorted(conn.execute(sql + " ORDER BY 1").fetchall()) for k, sql in q.items()}


def test_growing_from_one_shard_to_two_and_back_by_the_documented_steps(
    fresh_shards: ShardDatabases, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = fresh_shards.shards
    assert migrate_cli(capsys, *shards_set(a))[0] == 0
    _written(a)
    assert run_check(a) == ""

    # step 2: the new shard gets its tables, then the map is refused until the move
    rc, out, err = migrate_cli(capsys, *shards_set(a, b), "--reshard")
    assert rc == 2, out + err
    assert "shard 1: schema nev" in out, out
    assert "partition(s) 1, 3" in err and "move those partitions" in err, err
    assert _rows(b)["identity"] == [] and _rows(a)["identity"] == [(0, 1)]
    # step 3: the documented script; step 4: migrate --reshard again
    _move(a, b, "% 2 = 1")
    rc, out, err = migrate_cli(capsys, *shards_set(a, b), "--reshard")
    assert rc == 0, err
    on_a, on_b = _rows(a), _rows(b)
    assert on_a["identity"] == [(0, 2)] and on_b["identity"] == [(1, 2)]
    assert on_b["offsets"] == [(1, 1001, 991), (3, 1003, 993)]
    assert on_a["offsets"] == [(0, 1000, 990), (2, 1002, 992)]
    assert on_b["latest"] == [(1, 51), (3, 53)] and on_a["latest"] == [(0, 50), (2, 52)]
    assert on_b["open"] == [(1,), (3,)] and on_a["open"] == [(0,), (2,)]
    assert on_b["closed"] == [(1,), (3,)] and on_a["closed"] == [(0,), (2,)]
    assert on_b["outbox"] == [(1,), (3,)] and on_a["outbox"] == [(0,), (2,)]
    with psycopg.connect(b) as conn:  # in the order they were to be sent
        sent = conn.execute("SELECT msg_value FROM nev.alerts_outbox ORDER BY id").fetchall()
    assert [bytes(v).decode() for (v,) in sent] == ["1.0", "3.0", "1.1", "3.1", "1.2", "3.2"]
    assert run_check(a, b) == ""

    # shrinking: move shard 1's partitions back while it is still configured, then re-map
    _move(b, a, "% 2 = 1")
    rc, out, err = migrate_cli(capsys, *shards_set(a), "--reshard")
    assert rc == 0, err
    on_a = _rows(a)
    assert on_a["identity"] == [(0, 1)]
    assert [row[0] for row in on_a["offsets"]] == [0, 1, 2, 3]
    assert on_a["open"] == [(0,), (1,), (2,), (3,)] == on_a["closed"]
    assert len(on_a["latest"]) == 4 and _rows(b)["outbox"] == []
    assert run_check(a) == ""


def test_reshard_migrates_a_new_shard_once_and_reads_each_shard_once(
    fresh_shards: ShardDatabases,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Growing when no partition has to move (nothing written yet): migrate --reshard migrated
    # the new shard before the map check and again in its main loop (two JSON objects for
    # shard 1, its upkeep run twice), and read every shard's facts twice. The output contract
    # (docs/storage.md, "Changing N") is one object per shard.
    a, b = fresh_shards.shards
    assert migrate_cli(capsys, *shards_set(a))[0] == 0
    reads: list[str] = []

    async def counted(conn: Any, schema: str) -> ShardFacts:
        facts = await read_facts(conn, schema)
        reads.append(facts.database)
        return facts

    monkeypatch.setattr("ingest.cli.migrate.read_facts", counted)
    rc, out, err = migrate_cli(
        capsys, *shards_set(a, b), "--reshard", "--maintain", "--format", "json"
    )
    assert rc == 0, err
    printed = [orjson.loads(line) for line in out.splitlines()]
    assert [p["shard"] for p in printed] == [0, 1]
    assert printed[1]["applied"] and printed[1]["maintenance"]  # migrated, upkeep: once
    assert sorted(reads) == sorted(urlsplit(d).path.lstrip("/") for d in (a, b)), reads
    assert _rows(a)["identity"] == [(0, 2)] and _rows(b)["identity"] == [(1, 2)]
