"""The shard map is checked against the databases at `run` and `migrate`: a reordered or resized
`storage.shards` list, offsets stored on the wrong shard, or one database listed twice under two
URLs is refused with one line per problem, before anything is written (storage.shard_map)."""

from __future__ import annotations

from urllib.parse import urlsplit

import psycopg
import pytest

from tests.conftest import ShardDatabases
from tests.integration.shard_map_support import migrate_cli, run_check, shards_set

pytestmark = pytest.mark.integration

TOPIC = "nev.vehicle.raw"


def _store_offsets(dsn: str, partitions: list[int]) -> None:
    with psycopg.connect(dsn) as conn:
        for p in partitions:
            conn.execute(
                "INSERT INTO nev.consumer_offsets (consumer_group, topic, partition, next_offset) "
                "VALUES ('nev-ingest', %s, %s, 1000)",
                (TOPIC, p),
            )


def _identity(dsn: str) -> list[tuple[int, int]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT shard_index, shard_count FROM nev.shard_identity").fetchall()
    return [(int(i), int(n)) for i, n in rows]


def test_a_reordered_shard_list_is_refused_by_run_and_migrate(
    fresh_shards: ShardDatabases, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = fresh_shards.shards
    rc, out, _ = migrate_cli(capsys, *shards_set(a, b))
    assert rc == 0 and "shard identity: shard 1 of 2" in out
    assert _identity(a) == [(0, 2)] and _identity(b) == [(1, 2)]
    _store_offsets(a, [0, 2])
    _store_offsets(b, [1, 3])
    assert run_check(a, b) == ""

    said = run_check(b, a)  # the same two databases, listed the other way round
    lines = said.splitlines()[1:]
    assert len(lines) == 2, said  # one per shard: its recorded place and foreign offsets
    assert lines[0].startswith("storage.shards[0] (") and "is shard 1 of 2" in lines[0]
    assert "configured as shard 0 of 2" in lines[0] and "partition(s) 1, 3" in lines[0]
    assert "restore the previous storage.shards order" in lines[0]
    assert lines[1].startswith("storage.shards[1] (") and "is shard 0 of 2" in lines[1]
    assert "partition(s) 0, 2" in lines[1] and "migrate --reshard" in lines[1]

    rc, _, err = migrate_cli(capsys, *shards_set(b, a))
    assert rc == 2 and "is shard 1 of 2" in err and "migrate --reshard" in err
    assert _identity(a) == [(0, 2)]  # nothing recorded over the old map


def test_offsets_on_the_wrong_shard_are_refused_without_a_recorded_identity(
    fresh_shards: ShardDatabases, capsys: pytest.CaptureFixture[str]
) -> None:
    # a deployment migrated before shard_identity existed: only its offsets tell the map
    a, b = fresh_shards.shards
    assert migrate_cli(capsys, *shards_set(a, b))[0] == 0
    for dsn in (a, b):
        with psycopg.connect(dsn) as conn:
            conn.execute("DELETE FROM nev.shard_identity")
    _store_offsets(a, [0, 2])
    _store_offsets(b, [1, 3])
    said = run_check(b, a)
    assert "storage.shards[0] (" in said and "partition(s) 1, 3" in said
    assert "storage.shards[1] (" in said and "partition(s) 0, 2" in said
    assert run_check(a, b) == ""


def test_a_new_shard_count_needs_the_procedure_then_migrate_reshard(
    fresh_shards: ShardDatabases, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = fresh_shards.shards
    assert migrate_cli(capsys, *shards_set(a))[0] == 0  # one shard: every partition on a
    assert _identity(a) == [(0, 1)]
    _store_offsets(a, [0, 1, 2, 3])
    rc, _, err = migrate_cli(capsys, *shards_set(a, b))
    assert rc == 2 and "is shard 0 of 1" in err and "configured as shard 0 of 2" in err
    # --reshard says the procedure was followed, but partitions 1 and 3 never moved to b
    rc, _, err = migrate_cli(capsys, *shards_set(a, b), "--reshard")
    assert rc == 2 and "partition(s) 1, 3" in err and "is shard 0 of 1" not in err
    with psycopg.connect(a) as conn:  # step 3 of the procedure, shortened (b gets none)
        conn.execute("DELETE FROM nev.consumer_offsets WHERE partition % 2 = 1")
    rc, out, _ = migrate_cli(capsys, *shards_set(a, b), "--reshard")
    assert rc == 0 and "shard 0: " in out and "shard identity: shard 0 of 2" in out
    assert _identity(a) == [(0, 2)] and _identity(b) == [(1, 2)]
    assert run_check(a, b) == ""


def test_one_database_under_two_urls_is_refused(
    fresh_shards: ShardDatabases, capsys: pytest.CaptureFixture[str]
) -> None:
    a = fresh_shards.shards[0]
    parts = urlsplit(a)
    assert parts.hostname == "127.0.0.1", "this test names the shard's server as localhost too"
    same = a.replace("@127.0.0.1:", "@localhost:", 1)
    rc, _, err = migrate_cli(capsys, *shards_set(a, same))
    assert rc == 2 and "storage.shards[1] (localhost:" in err
    assert "is the same database as storage.shards[0] (127.0.0.1:" in err
    assert "give each shard its own database" in err
    assert migrate_cli(capsys, *shards_set(a))[0] == 0
    said = run_check(a, same)
    # shard 1 gets one line, the duplicate, not its consequences (shard 0's identity); shard 0,
    # migrated alone, is told it was recorded as shard 0 of 1
    second = [line for line in said.splitlines() if line.startswith("storage.shards[1] (")]
    assert len(second) == 1 and "is the same database as storage.shards[0]" in second[0]
