"""Storage upkeep with two shards, one of them down or hung (``StorageSink.maintain``, which every
worker runs every few minutes): the shard that is up still gets its partitions ahead made, and
the failure of the other (refused, or out of its time) is raised after that, naming it. Shard 0
is this test's own cluster, which it stops or freezes (SIGSTOP); shard 1 a fresh database on
the shared cluster."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import AsyncIterator

import asyncpg
import pytest

from ingest.config.load import load_settings
from ingest.pipeline import storage_sink
from ingest.pipeline.metrics import PipelineMetrics
from ingest.pipeline.storage_sink import StorageSink
from tests.integration import pipeline_support as ps
from tests.integration.private_services import PrivateCluster

pytestmark = pytest.mark.integration

_CHILDREN = """
SELECT c.relname FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
JOIN pg_class p ON p.oid = i.inhparent
JOIN pg_namespace n ON n.oid = p.relnamespace
WHERE n.nspname = 'nev' AND p.relname = 'vehicle_telemetry'
ORDER BY c.relname
"""


async def partitions(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return [r[0] for r in await conn.fetch(_CHILDREN)]
    finally:
        await conn.close()


async def drop(dsn: str, table: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP TABLE nev."{table}"')
    finally:
        await conn.close()


def server_processes(postmaster: int) -> list[int]:
    children = subprocess.run(
        ["pgrep", "-P", str(postmaster)], capture_output=True, text=True, check=False
    ).stdout.split()
    return [postmaster, *map(int, children)]


def signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


class Shards:
    """Two migrated shards, a sink started on them, and shard 1's partitions before upkeep
    with the one furthest ahead dropped."""

    def __init__(self, sink: StorageSink, up: str, before: list[str]) -> None:
        self.sink, self.up, self.before = sink, up, before

    async def made_again(self) -> bool:
        after = await partitions(self.up)
        # A superset: should midnight UTC pass meanwhile, upkeep also makes the next day's.
        return set(self.before) <= set(after)


@pytest.fixture
async def shards(fresh_database: str, cluster: PrivateCluster) -> AsyncIterator[Shards]:
    down, up = cluster.dsn, fresh_database
    for dsn in (down, up):
        await ps.migrate_database(dsn)
    before = await partitions(up)
    assert len(before) > 2, "migrate makes the plain partitions around now"
    environ = {"NEV_POSTGRES_DSN": down, "NEV_STORAGE_SHARDS": f"{down},{up}"}
    sink = StorageSink.from_settings(load_settings(environ=environ), metrics=PipelineMetrics())
    await sink.start()
    try:
        await drop(up, before[-1])  # the partition furthest ahead, which upkeep makes again
        assert not set(before) <= set(await partitions(up))
        yield Shards(sink, up, before)
    finally:
        await sink.close()


async def test_a_shard_down_does_not_stop_the_others_upkeep(
    shards: Shards, cluster: PrivateCluster
) -> None:
    await asyncio.to_thread(cluster.stop)
    with pytest.raises(Exception) as caught:
        await shards.sink.maintain()
    assert await shards.made_again()  # shard 1's upkeep ran all the same
    assert "storage maintenance of shard 0" in getattr(caught.value, "__notes__", [])


async def test_a_hung_shard_is_given_up_on_in_its_time(
    shards: Shards, cluster: PrivateCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage_sink, "UPKEEP_SHARD_TIMEOUT_S", 2.0)
    assert cluster.state.pid is not None
    frozen = server_processes(cluster.state.pid)
    signal_all(frozen, signal.SIGSTOP)  # a server that takes connections and never answers
    try:
        with pytest.raises(TimeoutError) as caught:
            await shards.sink.maintain()
    finally:
        signal_all(frozen, signal.SIGCONT)
    assert await shards.made_again()
    assert "storage maintenance of shard 0" in getattr(caught.value, "__notes__", [])
