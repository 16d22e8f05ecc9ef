"""Storage upkeep with two shards, one of them down (``StorageSink.maintain``, which every worker
runs every few minutes): the shard that is up still gets its partitions ahead made, and the
failure of the one that is down is raised after that, naming it. Shard 0 is this test's own
cluster, which it stops; shard 1 a fresh database on the shared cluster."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from ingest.config.load import load_settings
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


async def test_a_shard_down_does_not_stop_the_others_upkeep(
    fresh_database: str, cluster: PrivateCluster
) -> None:
    down, up = cluster.dsn, fresh_database
    for dsn in (down, up):
        await ps.migrate_database(dsn)
    before = await partitions(up)
    assert len(before) > 2, "migrate makes the plain partitions around now"
    newest = before[-1]  # the partition furthest ahead, which upkeep makes again
    environ = {"NEV_POSTGRES_DSN": down, "NEV_STORAGE_SHARDS": f"{down},{up}"}
    sink = StorageSink.from_settings(load_settings(environ=environ), metrics=PipelineMetrics())
    await sink.start()
    try:
        await drop(up, newest)
        await asyncio.to_thread(cluster.stop)
        with pytest.raises(Exception) as caught:
            await sink.maintain()
        assert await partitions(up) == before  # shard 1's upkeep ran all the same
        assert "storage maintenance of shard 0" in getattr(caught.value, "__notes__", [])
    finally:
        await sink.close()
