"""The storage CLI's pure parts: settings -> storage parameters, time arguments, summaries."""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from ingest.cli.migrate import _refused, _summarise
from ingest.cli.query import parse_duration, parse_time
from ingest.cli.query_run import _print, day, zone
from ingest.config import PostgresSettings
from ingest.config.load import load_settings
from ingest.errors import UserError
from ingest.wiring import pool_params, postgres_dsn, storage_params, writer_params
from storage import Dedupe, LoaderKind, SchemaMode
from storage.queries import QueryResult, Statement

pytestmark = pytest.mark.unit

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2025, 7, 1, 12, 0, tzinfo=SHANGHAI)


def test_settings_map_onto_storage_parameters() -> None:
    settings = load_settings(
        environ={
            "NEV_STORAGE_SCHEMA": "fleet_a",
            "NEV_STORAGE_RETENTION_DAYS": "0",
            "NEV_STORAGE_RAW_FRAMES_RETENTION_DAYS": "3",
            "NEV_STORAGE_CHUNK_INTERVAL_MIN": "45",
            "NEV_STORAGE_COMPRESS_AFTER_H": "12",
            "NEV_STORAGE_PARTITION_INTERVAL_H": "6",
            "NEV_STORAGE_DEDUPE": "staging",
            "NEV_POSTGRES_SCHEMA_MODE": "plain",
            "NEV_POSTGRES_LOADER": "unnest",
            "NEV_KAFKA_GROUP_ID": "ingest-a",
        }
    )
    params = storage_params(settings)
    assert params.schema == "fleet_a" and params.mode is SchemaMode.PLAIN
    assert params.timescale.retention["vehicle_telemetry"] is None  # 0 = forever
    assert params.timescale.retention["raw_frames"] == timedelta(days=3)
    assert params.plain.retention == params.timescale.retention
    chunks = params.timescale.chunk_intervals()
    assert chunks["battery_pack_telemetry"] == timedelta(minutes=45)
    assert chunks["vehicle_sessions"] > timedelta(minutes=45)  # sparse tables keep the arithmetic
    assert params.timescale.compress_after == timedelta(hours=12)
    assert params.plain.partition_interval == timedelta(hours=6)
    writer = writer_params(settings)
    assert (writer.schema, writer.consumer_group) == ("fleet_a", "ingest-a")
    assert writer.dedupe is Dedupe.STAGING and writer.loader is LoaderKind.UNNEST
    assert pool_params(settings, "x").server_settings()["search_path"] == "fleet_a, public"


def test_fleet_size_drives_the_chunk_interval() -> None:
    small = storage_params(
        load_settings(
            environ={
                "NEV_STORAGE_FLEET_VEHICLES": "20000",
                "NEV_STORAGE_FLEET_CONNECTORS": "20000",
                "NEV_STORAGE_FLEET_PACKS": "0",
            }
        )
    )
    big = storage_params(load_settings(environ={}))
    assert (
        small.timescale.chunk_intervals()["vehicle_telemetry"]
        > big.timescale.chunk_intervals()["vehicle_telemetry"]
    )


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("5min", 300), ("2h", 7200), ("1.5d", 129600)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


def test_bad_duration() -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("5 weeks")


def test_times_are_read_in_the_zone_unless_they_say_otherwise() -> None:
    assert parse_time("2025-07-01", SHANGHAI, NOW) == datetime(2025, 7, 1, tzinfo=SHANGHAI)
    assert parse_time("2025-07-01T08:30", SHANGHAI, NOW).utcoffset() == timedelta(hours=8)
    explicit = parse_time("2025-07-01T08:30+00:00", SHANGHAI, NOW)
    assert explicit == datetime(2025, 7, 1, 8, 30, tzinfo=UTC)
    assert parse_time("6h", SHANGHAI, NOW) == NOW - timedelta(hours=6)
    with pytest.raises(UserError, match="ISO date"):
        parse_time("last tuesday", UTC, NOW)


@pytest.mark.parametrize("tz", ["x/" * 3000 + "y", "/etc/passwd", "Asia/Beijing"])
def test_a_zone_that_is_none_is_a_one_line_error(tz: str) -> None:
    with pytest.raises(UserError, match="not a time zone name"):
        zone(argparse.Namespace(tz=tz))


def test_a_day_given_as_a_time_is_the_day_in_the_zone() -> None:
    # 20:00 UTC on the 6th is 04:00 on the 7th in China: --day, daily --from/--to mean the 7th.
    assert day("2026-12-06T20:00+00:00", SHANGHAI, "--day") == date(2026, 12, 7)
    assert day("2026-12-06T20:00", SHANGHAI, "--day") == date(2026, 12, 6)
    assert day("2026-12-06", SHANGHAI, "--day") == date(2026, 12, 6)


def test_partition_lines_are_counted_per_table() -> None:
    lines = [
        "partition created: vehicle_telemetry_p202507010000",
        "partition created: vehicle_telemetry_p202507020000",
        "partition created: raw_frames_p202507010000",
        "vehicle_telemetry: chunk interval 10 min",
    ]
    assert _summarise(lines) == [
        "partition created: vehicle_telemetry x2",
        "partition created: raw_frames x1",
        "vehicle_telemetry: chunk interval 10 min",
    ]


def test_the_dsn_s_own_query_is_kept_as_written_and_tls_keys_added() -> None:
    # A + in the URL is a + to libpq and a space to asyncpg, %20 a space to both: decoding and
    # encoding the user's query again changed what reached the server (options, passwords).
    own = "options=-c%20statement_timeout%3D5s&password=pa+ss"
    pg = PostgresSettings(dsn=f"postgresql://nev@db/nev?{own}", sslrootcert="/etc/ca x.pem")
    assert postgres_dsn(pg) == (
        f"postgresql://nev@db/nev?{own}&sslmode=prefer&sslrootcert=%2Fetc%2Fca%20x.pem"
    )
    kept = PostgresSettings(dsn="postgresql://nev@db/nev?sslmode=disable", sslmode="verify-full")
    assert postgres_dsn(kept) == "postgresql://nev@db/nev?sslmode=disable"  # the URL's wins
    # empty items (which both drivers refuse) are dropped, a blank TLS key gets the setting
    odd = PostgresSettings(dsn="postgresql://nev@db/nev?application_name=x&&sslmode=&")
    assert postgres_dsn(odd) == "postgresql://nev@db/nev?application_name=x&sslmode=prefer"
    plain = PostgresSettings(dsn="postgresql://nev@db/nev?")
    assert postgres_dsn(plain) == "postgresql://nev@db/nev?sslmode=prefer"
    # no host in the URL (a socket given as a parameter): the // stays, which libpq needs
    socket = "postgresql:///nev?host=/run/postgresql&sslmode=disable"
    assert postgres_dsn(PostgresSettings(dsn=socket)) == socket
    assert postgres_dsn(PostgresSettings(dsn="postgresql:///nev")) == (
        "postgresql:///nev?sslmode=prefer"
    )


def test_a_statement_says_whether_it_takes_the_row_limit() -> None:
    # query's "--limit reached" notice is only for statements that take the limit
    assert Statement("SELECT 1\nLIMIT %s", (5,)).limited
    assert not Statement("SELECT count(*) FROM t", ()).limited


@pytest.mark.parametrize(
    ("exc", "advice"),
    [
        (asyncpg.InsufficientPrivilegeError("permission denied"), "migrate needs a login"),
        (asyncpg.ConnectionDoesNotExistError("gone"), "the connection was lost"),
        (asyncpg.DeadlockDetectedError("deadlock\nDETAIL: two"), "run migrate again once"),
    ],
)
def test_migrate_s_refusal_advice_fits_the_error(exc: Exception, advice: str) -> None:
    message = str(_refused("shard 1: ", exc))
    assert message.startswith(f"shard 1: the database refused ({type(exc).__name__}: ")
    assert advice in message and "\n" not in message


@pytest.mark.parametrize(("n", "expected"), [(0, "(no rows)"), (1, "(1 row)"), (2, "(2 rows)")])
def test_the_table_says_its_row_count_in_words(
    n: int, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _print(QueryResult(["v"], [(i,) for i in range(n)]), "table")
    assert capsys.readouterr().err.strip().splitlines()[-1] == expected
