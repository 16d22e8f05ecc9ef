"""The dev stack's PostgreSQL cluster and TimescaleDB engine answer real clients."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import psycopg
import pytest

pytestmark = pytest.mark.integration


async def test_write_and_read_a_row_on_postgres(fresh_database: str) -> None:
    conn = await asyncpg.connect(fresh_database)
    try:
        await conn.execute("CREATE TABLE t (vin text PRIMARY KEY, ts timestamptz, soc int2)")
        ts = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        # Binary COPY: the write path of the storage writer.
        await conn.copy_records_to_table("t", records=[("LSVAU2180N2183294", ts, 87)])
        row = await conn.fetchrow("SELECT vin, ts, soc FROM t")
    finally:
        await conn.close()
    assert row is not None
    assert tuple(row) == ("LSVAU2180N2183294", ts, 87)
    # The same row through psycopg (queries, migrations), in a new session: it is committed.
    with psycopg.connect(fresh_database) as pg:
        assert pg.execute("SELECT soc FROM t").fetchone() == (87,)


def test_cluster_is_tuned_for_ingest(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn) as pg:
        settings: dict[str, str] = dict(
            pg.execute(
                "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)",
                (["jit", "synchronous_commit", "wal_compression", "listen_addresses"],),
            ).fetchall()
        )
    assert settings["jit"] == "off"
    assert settings["synchronous_commit"] == "on"  # durability is part of exactly-once
    assert settings["listen_addresses"] == "127.0.0.1"


async def test_hypertable_on_the_timescaledb_engine(
    timescale_dsn: str, unique_name: Callable[[str], str]
) -> None:
    schema = unique_name("ts")
    conn = await asyncpg.connect(timescale_dsn, ssl=False)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        await conn.execute(
            f"CREATE TABLE {schema}.telemetry (vin text NOT NULL, ts timestamptz NOT NULL,"
            " speed_kmh real)"
        )
        created = await conn.fetchval(
            "SELECT created FROM create_hypertable("
            f"'{schema}.telemetry', by_range('ts', INTERVAL '1 hour'))"
        )
        assert created is True
        base = datetime(2026, 1, 1, tzinfo=UTC)
        # The engine has no COPY FROM STDIN: load with INSERT ... SELECT unnest().
        await conn.execute(
            f"INSERT INTO {schema}.telemetry SELECT * FROM unnest($1::text[], $2::timestamptz[],"
            " $3::real[])",
            ["V1"] * 6,
            [base + timedelta(minutes=30 * i) for i in range(6)],
            [float(i) for i in range(6)],
        )
        chunks = await conn.fetchval(
            "SELECT count(*) FROM timescaledb_information.chunks"
            " WHERE hypertable_schema = $1 AND hypertable_name = 'telemetry'",
            schema,
        )
        buckets = await conn.fetch(
            f"SELECT time_bucket(INTERVAL '1 hour', ts) AS b, count(*) FROM {schema}.telemetry"
            " GROUP BY b ORDER BY b"
        )
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await conn.close()
    assert chunks == 3  # six half-hour rows -> three one-hour chunks
    assert [row["count"] for row in buckets] == [2, 2, 2]
