"""A benchmark's topics are deleted when it closes its dev stack (``BenchEnv.close``), and a
failed delete is reported without keeping its databases: left behind, benchmark topics of 12
partitions each filled the dev broker until it ran out of open files."""

from __future__ import annotations

import socket
from collections.abc import Callable

import psycopg
import pytest

from devtools.devstack.topics import topic_partitions
from ingest.config.load import load_settings
from loadtest.bench_support import BenchEnv

pytestmark = pytest.mark.integration


async def test_close_deletes_the_topics_the_run_made(
    kafka_bootstrap: str, postgres_dsn: str, unique_name: Callable[[str], str]
) -> None:
    env = BenchEnv(load_settings(environ={}), kafka_bootstrap, postgres_dsn, [])
    base = unique_name("bench")
    made = {f"{base}.vehicle", f"{base}.dlq"}
    other = unique_name("other")  # not the run's: close leaves it
    await env.make_topics({f"{base}.vehicle": 2, f"{base}.dlq": 1, other: 1})
    env.topics.remove(other)
    assert made | {other} <= set(await topic_partitions(kafka_bootstrap))

    await env.close()

    listed = set(await topic_partitions(kafka_bootstrap))
    assert not made & listed, f"left behind: {sorted(made & listed)}"
    assert other in listed


async def test_a_failed_delete_is_reported_and_the_databases_dropped(
    postgres_dsn: str, unique_name: Callable[[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as s:  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        away = f"127.0.0.1:{s.getsockname()[1]}"
    database = unique_name("bench")
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    env = BenchEnv(load_settings(environ={}), away, postgres_dsn, [database], ["bench.gone"])

    await env.close()

    assert "bench: could not delete the run's 1 topics at " + away in capsys.readouterr().err
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
        assert found.fetchone() is None
