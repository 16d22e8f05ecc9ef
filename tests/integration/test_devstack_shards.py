"""`devstack up --shards 2`: a second PostgreSQL cluster, the query database, and `env`.

Runs on the session's dev stack (the fixtures start Kafka and both clusters), so it costs no
extra JVM or initdb; what it checks is what `up --shards 2` adds on top of them.
"""

from __future__ import annotations

import shlex

import psycopg
import pytest

from devtools.devstack import ENV_QUERY_DSN, ENV_SHARDS, stack
from devtools.settings import load_dev_settings
from ingest.errors import UserError

pytestmark = pytest.mark.integration


def _exports(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        name, _, value = line.removeprefix("export ").partition("=")
        out[name] = shlex.split(value)[0]
    return out


def test_up_with_two_shards_gives_two_clusters_and_a_query_database(
    kafka_bootstrap: str, shard_cluster_dsns: tuple[str, str]
) -> None:
    settings = load_dev_settings()
    state = stack.up(settings, shards=2, report=False)
    first, second = state.services["postgres"], state.services["postgres-1"]
    assert first.running and second.running
    assert first.port != second.port
    assert first.extra["data_dir"] != second.extra["data_dir"]

    exported = _exports(stack.env_lines(settings))
    assert exported[ENV_SHARDS].split(",") == [first.url, second.url]
    # each shard DSN reaches its own cluster (two servers, not two databases of one)
    ports = set()
    for dsn in exported[ENV_SHARDS].split(","):
        with psycopg.connect(dsn) as conn:
            row = conn.execute("SELECT current_database(), current_setting('port')").fetchone()
            assert row is not None and row[0] == "nev"
            ports.add(row[1])
    assert len(ports) == 2
    with psycopg.connect(exported[ENV_QUERY_DSN]) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("nev_query",)
        assert conn.execute("SELECT current_setting('port')").fetchone() == (str(first.port),)

    # status lists the shard cluster; shrinking would drop its data, so it is refused
    assert ("postgres-1", True) in [(n, running) for n, running, _ in stack.status(settings)]
    with pytest.raises(UserError, match="has 2 shards"):
        stack.up(settings, shards=1, report=False)
    with pytest.raises(UserError, match="give 1 to 4"):
        stack.up(settings, shards=9, report=False)
