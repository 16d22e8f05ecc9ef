"""Helpers of the issue-11 end-to-end proofs (tests/integration/test_e2e_*.py): read the
results back as an operator would (``nev-ingest query ... --format json`` in a process of its
own) and with plain SQL."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from tests.integration.kinds_support import Out, produce_records
from tests.integration.pipeline_support import SCHEMA, PipelineEnv, caught_up, until


def query(env: PipelineEnv, *argv: str) -> list[dict[str, Any]]:
    """``nev-ingest query ARGV --format json`` (times in UTC): one JSON object a line."""
    cmd = [sys.executable, "-m", "ingest", "query", *argv]
    cmd += ["--dsn", env.dsn, "--tz", "UTC", "--format", "json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return [orjson.loads(line) for line in done.stdout.splitlines()]


def sections(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """A report's rows by their ``section`` (``query pack``, ``query charger``)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        row = dict(row)
        out.setdefault(row.pop("section"), []).append(row)
    return out


def when(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


async def fetch(dsn: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` as tuples; ``{s}`` in it is the service's schema."""
    conn = await asyncpg.connect(dsn)
    try:
        return [tuple(r) for r in await conn.fetch(sql.format(s=SCHEMA), *args)]
    finally:
        await conn.close()


async def consume(env: PipelineEnv, records: list[Out], *, topics: tuple[str, ...] = ()) -> None:
    """Produce ``records`` in their order and wait until the running service stored the end
    offset of every raw topic (``topics``: of these only)."""
    assert await produce_records(env.kafka, records) == len(records)
    await until(
        lambda: caught_up(env, topics or env.raw_topics),
        timeout_s=90,
        what="every offset stored",
    )
