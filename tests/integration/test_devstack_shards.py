"""`devstack up --shards 2`: a second PostgreSQL cluster, the query database, `env`, `status`
and `down`, in a private state directory (its own Kafka, with a small heap: `env` needs one)."""

from __future__ import annotations

import shlex
from pathlib import Path

import psycopg
import pytest

from devtools.devstack import ENV_QUERY_DSN, ENV_SHARDS, stack
from devtools.devstack.process import is_running
from devtools.settings import DevSettings, DevstackSettings
from ingest.errors import UserError

pytestmark = pytest.mark.integration


def _exports(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        name, _, value = line.removeprefix("export ").partition("=")
        out[name] = shlex.split(value)[0]
    return out


def _port_and_database(dsn: str) -> tuple[str, str]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT current_setting('port'), current_database()").fetchone()
    assert row is not None
    return (str(row[0]), str(row[1]))


def test_up_with_two_shards_runs_two_clusters_and_a_query_database(tmp_path: Path) -> None:
    settings = DevSettings(
        devstack=DevstackSettings(state_dir=str(tmp_path / "ds"), kafka_heap="256m")
    )
    homes: set[Path] = set()
    try:
        state = stack.up(settings, shards=2, report=False)
        first, second = state.services["postgres"], state.services["postgres-1"]
        homes |= {Path(first.extra["data_dir"]).parent, Path(second.extra["data_dir"]).parent}
        assert first.running and second.running and len(homes) == 2

        exported = _exports(stack.env_lines(settings))
        shards = exported[ENV_SHARDS].split(",")
        assert shards == [first.url, second.url]
        # two servers (two ports), each with the service's database; nev_query on the first
        assert {_port_and_database(dsn) for dsn in shards} == {
            (str(first.port), "nev"),
            (str(second.port), "nev"),
        }
        assert _port_and_database(exported[ENV_QUERY_DSN]) == (str(first.port), "nev_query")
        assert ("postgres-1", True) in [(n, up) for n, up, _ in stack.status(settings)]
        assert "postgres-1" in stack.core_services(settings)

        with pytest.raises(UserError, match="has 2 shards"):
            stack.up(settings, shards=1, report=False)  # would drop shard 1's data
        with pytest.raises(UserError, match="give 1 to 4"):
            stack.up(settings, shards=9, report=False)

        stack.down(settings, report=False)
        assert second.pid is not None and second.started is not None
        assert not is_running(second.pid, second.started)
        with pytest.raises(UserError, match="not running"):
            stack.env_lines(settings)
        # a plain `up` brings the same two shards back, on the same addresses
        again = stack.up(settings, report=False)
        assert again.services["postgres-1"].running
        assert _exports(stack.env_lines(settings))[ENV_SHARDS] == exported[ENV_SHARDS]
    finally:
        stack.down(settings, report=False, purge=True)


def test_a_shard_cluster_started_alone_does_not_make_a_sharded_stack(tmp_path: Path) -> None:
    # what the test fixture does: start postgres-1 for a test, not for the developer's env
    settings = DevSettings(devstack=DevstackSettings(state_dir=str(tmp_path / "ds")))
    try:
        state = stack.up(settings, only=("postgres", "postgres-1"), report=False)
        assert stack.core_services(settings) == ("postgres", "kafka")
        assert stack.shard_services(state) == ("postgres",)
    finally:
        stack.down(settings, report=False, purge=True)
