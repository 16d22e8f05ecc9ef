"""A database that goes away under a writer pool: asyncpg's background restore of the pool's
connection floor (``postgres.pool_min_size``) fails at every attempt, and logged each one with
its traceback. It is one line of ours now (``logs.PoolFloorLine``), no traceback, saying what
to check; the pool keeps its floor."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator

import orjson
import psycopg
import pytest

from ingest.pipeline.logs import configure_logging
from storage.connect import PoolParams, create_pool
from tests.integration import pipeline_support as ps

pytestmark = pytest.mark.integration


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """The service's log configuration, written to a buffer; removed afterwards."""
    buf = io.StringIO()
    configure_logging("INFO", stream=buf)
    try:
        yield buf
    finally:
        root = logging.getLogger()
        for handler in list(root.handlers):
            if getattr(handler, "_nev_ingest", False):
                root.removeHandler(handler)


async def test_a_pool_floor_that_cannot_be_restored_logs_one_line(
    postgres_dsn: str, second_database: tuple[str, str], log_lines: io.StringIO
) -> None:
    name, dsn = second_database
    pool, _ = await create_pool(PoolParams(dsn=dsn, min_size=1, max_size=2))
    try:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )

        def floor_lines() -> list[dict[str, object]]:
            lines = [orjson.loads(line) for line in log_lines.getvalue().splitlines() if line]
            return [r for r in lines if str(r.get("logger", "")).startswith("asyncpg")]

        async def logged() -> bool:
            if not floor_lines():
                # The floor is restored when the pool notices the loss (an acquire does).
                with contextlib.suppress(Exception):
                    async with pool.acquire(timeout=5) as conn:
                        await conn.fetchval("SELECT 1")
            return bool(floor_lines())

        await ps.until(logged, timeout_s=60, what="asyncpg's pool to try its floor")
        (line, *_) = floor_lines()
        assert "exc" not in line, line.get("exc")
        message = str(line["msg"])
        assert "postgres.pool_min_size" in message and "check that the database" in message
    finally:
        pool.terminate()
