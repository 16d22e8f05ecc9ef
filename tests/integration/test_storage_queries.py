"""``nev-ingest migrate`` and every ``nev-ingest query`` end to end, on plain PostgreSQL and on
the TimescaleDB engine: the rows a regulator gets back for data written by the writer."""

from __future__ import annotations

import asyncio
import json
import struct
import uuid
import zoneinfo
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import psycopg
import pytest

from devtools.sim.synthetic import frame_rows, vin
from ingest.cli import main
from storage import OffsetRange, PoolParams, StorageWriter, WriterParams, queries

pytestmark = pytest.mark.integration

FLEET = "LQTEST"
END = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=5)
START = END - timedelta(hours=2)
FRAMES = 2 * 360  # one every 10 s


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


async def load(dsn: str, schema: str) -> None:
    writer = await StorageWriter.open(
        PoolParams(dsn=dsn, schema=schema), WriterParams(consumer_group="q", schema=schema)
    )
    try:
        off = 0
        vins = [vin(i, FLEET) for i in range(3)] + [vin(0, "LOTHER")]
        for k0 in range(0, FRAMES, 120):
            frames = [
                frame_rows(
                    v,
                    START + timedelta(seconds=10 * k),
                    seq=k,
                    alarm_level=3 if k % 60 == 0 and i == 0 else 0,
                )
                for k in range(k0, k0 + 120)
                for i, v in enumerate(vins)
            ]
            await writer.write_batch(
                frames, {("q", 0): OffsetRange(off or None, off + len(frames))}
            )
            off += len(frames)
    finally:
        await writer.close()


@pytest.fixture(params=["plain", "timescale"])
def target(
    request: pytest.FixtureRequest,
    unique_name: Callable[[str], str],
    capsys: pytest.CaptureFixture[str],
) -> tuple[str, str]:
    """(dsn, schema) migrated with `nev-ingest migrate` and loaded with 2 h of 4 vehicles."""
    if request.param == "plain":
        dsn, schema = request.getfixturevalue("fresh_database"), "nev"
    else:
        # libpq (psycopg) needs a password when asked; the engine accepts any
        dsn = request.getfixturevalue("timescale_dsn").replace("postgres@", "postgres:pglite@", 1)
        schema = unique_name("q")
    code, out, _ = cli(capsys, "migrate", "--dsn", dsn, "--schema", schema, "--format", "json")
    assert code == 0
    assert json.loads(out)["mode"] == request.param
    return dsn, schema


def test_every_query(target: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    dsn, schema = target
    asyncio.run(load(dsn, schema))
    # the service's periodic upkeep: on plain PostgreSQL it fills the summary tables
    code, out, _ = cli(capsys, "migrate", "--maintain", "--dsn", dsn, "--schema", schema)
    assert code == 0 and ("summary buckets recomputed" in out) == (schema == "nev")
    db = ("--dsn", dsn, "--schema", schema, "--tz", "UTC")
    window = ("--from", START.isoformat(), "--to", END.isoformat())
    car = vin(0, FLEET)

    code, out, _ = cli(capsys, "query", "track", car, *window, *db, "--format", "json")
    track = lines(out)
    assert code == 0 and len(track) == FRAMES
    assert track[0]["ts"] == START.isoformat(timespec="seconds")
    assert track[1]["odometer_km"] > track[0]["odometer_km"]
    assert {"longitude", "latitude", "soc_pct", "speed_kmh"} <= set(track[0])
    assert [t["signature_missing"] for t in track] == [False] * FRAMES  # 2016 frames: false

    code, out, _ = cli(capsys, "query", "latest", "--prefix", FLEET, *db, "--format", "json")
    latest = lines(out)
    assert [r["entity_id"] for r in latest] == [vin(i, FLEET) for i in range(3)]
    assert {r["ts"] for r in latest} == {
        (END - timedelta(seconds=10)).isoformat(timespec="seconds")
    }
    code, out, _ = cli(capsys, "query", "latest", vin(0, "LOTHER"), *db, "--format", "json")
    assert [r["entity_id"] for r in lines(out)] == [vin(0, "LOTHER")]

    code, out, _ = cli(capsys, "query", "alarms", "--level", "3", *window, *db, "--format", "json")
    alarms = lines(out)
    assert len(alarms) == FRAMES // 60 and {a["vin"] for a in alarms} == {car}
    assert alarms[0]["ts"] > alarms[-1]["ts"] and {a["max_level"] for a in alarms} == {3}
    code, out, _ = cli(capsys, "query", "alarms", "--level", "4", *window, *db, "--format", "json")
    assert out == ""

    day_window = ("--from", START.date().isoformat(), "--to", END.date().isoformat())
    code, out, _ = cli(
        capsys, "query", "daily", "--prefix", FLEET, *day_window, *db, "--format", "json"
    )
    daily = lines(out)
    assert {d["vin"] for d in daily} == {vin(i, FLEET) for i in range(3)}
    mine = [d for d in daily if d["vin"] == car]
    assert sum(d["frames"] for d in mine) == FRAMES
    assert sum(d["alarm_frames"] for d in mine) == FRAMES // 60
    odometers = [t["odometer_km"] for t in track]
    if len(mine) == 1:  # the window did not cross midnight
        assert mine[0]["distance_km"] == pytest.approx(odometers[-1] - odometers[0], abs=1e-3)
    assert all(d["energy_out_kwh"] > 0 for d in mine)

    code, out, _ = cli(
        capsys, "query", "pack", car, "--every", "1h", *window, *db, "--format", "csv"
    )
    rows = out.splitlines()
    assert (
        rows[0]
        == "bucket,pack,frames,max_spread_mv,mean_spread_mv,cell_min_mv,cell_max_mv,max_temp_c"
    )
    assert sum(int(r.split(",")[2]) for r in rows[1:]) == FRAMES
    assert {r.split(",")[3] for r in rows[1:]} == {"39"}  # synthetic cells span 3300..3339 mV
    # A day's bucket starts at midnight where the reader is (not 08:00, UTC's midnight, in
    # China); --limit bounds the rows.
    china = ("--tz", "Asia/Shanghai")
    code, out, _ = cli(
        capsys, "query", "pack", car, "--every", "1d", *window, *db, *china, "--format", "json"
    )
    days = lines(out)
    assert code == 0 and days and sum(d["frames"] for d in days) == FRAMES
    # (compared in China time: the TimescaleDB test engine returns times in UTC whatever --tz)
    china_tz = ZoneInfo("Asia/Shanghai")
    starts = {datetime.fromisoformat(d["bucket"]).astimezone(china_tz).time() for d in days}
    assert starts == {time(0)}
    code, out, err = cli(
        capsys,
        "query",
        "pack",
        car,
        "--every",
        "1m",
        *window,
        *db,
        "--limit",
        "3",
        "--format",
        "json",
    )
    assert code == 0 and len(lines(out)) == 3
    assert "3 rows, the --limit: there may be more" in err  # JSON itself cannot say so

    code, out, err = cli(capsys, "query", "track", car, *window, *db, "--limit", "2")
    assert (
        out.splitlines()[0].startswith("ts ") and len(out.splitlines()) == 4 and "(2 rows)" in err
    )
    code, out, _ = cli(capsys, "query", "track", car, *window, *db, "--explain")
    assert code == 0 and "Index" in out


@pytest.fixture
def python_only_zone(tmp_path: Path) -> Iterator[str]:
    """A time zone Python knows and no PostgreSQL does: a UTC zone file of our own, named
    Nev/Test, first on Python's zone path (not the system's files, which differ by release)."""
    header = b"TZif2" + b"\0" * 15 + struct.pack(">6l", 0, 0, 0, 0, 1, 4)
    utc = header + struct.pack(">lBB", 0, 0, 0) + b"UTC\0"
    (tmp_path / "Nev").mkdir()
    (tmp_path / "Nev" / "Test").write_bytes(utc + utc + b"\n<UTC>0\n")
    zoneinfo.reset_tzpath(to=[str(tmp_path), *zoneinfo.TZPATH])
    try:
        yield "Nev/Test"
    finally:
        zoneinfo.reset_tzpath()
        zoneinfo.ZoneInfo.clear_cache()


def test_errors_say_what_to_do(
    fresh_database: str, capsys: pytest.CaptureFixture[str], python_only_zone: str
) -> None:
    code, _, err = cli(capsys, "query", "latest", "X", "--dsn", fresh_database)
    assert code == 2 and "migrated?" in err and "nev-ingest migrate" in err
    code, _, err = cli(
        capsys, "query", "track", "X", "--from", "yesterday", "--dsn", fresh_database
    )
    assert code == 2 and "ISO date" in err
    # A zone Python does not know, and one only Python knows: one line each, no traceback.
    code, _, err = cli(
        capsys, "query", "latest", "X", "--tz", "Asia/Beijing", "--dsn", fresh_database
    )
    assert code == 2 and "--tz Asia/Beijing: not a time zone name" in err
    code, _, err = cli(
        capsys, "query", "latest", "X", "--tz", python_only_zone, "--dsn", fresh_database
    )
    assert code == 2 and "the database server knows no such time zone" in err
    code, _, err = cli(capsys, "migrate", "--status", "--dsn", fresh_database)
    assert code == 1
    code, _, err = cli(capsys, "migrate", "--dsn", "postgresql://nobody@127.0.0.1:1/none")
    assert code == 2 and "cannot connect" in err


def test_migrate_by_a_login_without_rights_is_a_one_line_error(
    fresh_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    login = f"nev_norights_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(fresh_database, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {login} LOGIN".encode())
        try:
            dsn = (
                urlsplit(fresh_database)
                ._replace(netloc=f"{login}@{urlsplit(fresh_database).netloc.split('@')[-1]}")
                .geturl()
            )
            code, _, err = cli(capsys, "migrate", "--dsn", dsn)
        finally:
            admin.execute(f"DROP ROLE {login}".encode())
    assert code == 2 and "the database refused (InsufficientPrivilegeError" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_migrate_of_a_query_database_without_the_extension_right_is_a_one_line_error(
    postgres_dsn: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The owner of a shard and of a query database, no superuser: the shard migrates, the
    # query database's CREATE EXTENSION postgres_fdw is refused (the extension is not trusted).
    tag = uuid.uuid4().hex[:8]
    login, shard, query = f"nev_owner_{tag}", f"nev_shard_{tag}", f"nev_query_{tag}"
    server = urlsplit(postgres_dsn).netloc.split("@")[-1]
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {login} LOGIN CREATEROLE".encode())
        try:
            for db in (shard, query):
                admin.execute(f"CREATE DATABASE {db} OWNER {login}".encode())
            monkeypatch.setenv("NEV_STORAGE_SHARDS", f"postgresql://{login}@{server}/{shard}")
            monkeypatch.setenv("NEV_STORAGE_QUERY_DSN", f"postgresql://{login}@{server}/{query}")
            code, out, err = cli(capsys, "migrate")
        finally:
            for db in (shard, query):
                admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)".encode())
            admin.execute(f"DROP OWNED BY {login}".encode())
            admin.execute(f"DROP ROLE {login}".encode())
    assert "schema nev" in out  # the shard was migrated first
    assert code == 2 and "query database: the database refused" in err, err
    assert "postgres_fdw" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


# Berlin leaves summer time on 2026-10-25 at 01:00 UTC: 02:10 happens twice, at 00:10 UTC
# (CEST) and at 01:10 UTC (CET).
TWICE = ("2026-10-25 00:10+00", "2026-10-25 01:10+00")


@pytest.mark.parametrize(
    ("every", "tz", "times", "starts"),
    [
        (timedelta(days=1), "Europe/Berlin", ["2026-07-15 00:30+02"], ["2026-07-15 00:00+02"]),
        (timedelta(days=1), "Europe/Berlin", ["2026-01-15 00:30+01"], ["2026-01-15 00:00+01"]),
        (timedelta(days=1), "Asia/Shanghai", ["2026-07-15 07:59+08"], ["2026-07-15 00:00+08"]),
        (timedelta(days=1), "Europe/Berlin", list(TWICE), ["2026-10-25 00:00+02"]),
        # the repeated hour: two buckets of an hour, not one of two hours' frames
        (
            timedelta(hours=1),
            "Europe/Berlin",
            list(TWICE),
            ["2026-10-25 00:00+00", "2026-10-25 01:00+00"],
        ),
        (timedelta(minutes=5), "Europe/Berlin", list(TWICE), list(TWICE)),
        # in summer time, 6 h buckets start at 00:00, 06:00 ... there (from midnight of the
        # window's first day, not of some winter day)
        (
            timedelta(hours=6),
            "Europe/Berlin",
            ["2026-07-15 00:30+02", "2026-07-15 06:30+02"],
            ["2026-07-15 00:00+02", "2026-07-15 06:00+02"],
        ),
    ],
)
def test_pack_buckets_start_where_the_reader_expects(
    fresh_database: str, every: timedelta, tz: str, times: list[str], starts: list[str]
) -> None:
    # query pack's own statement, over a table of the same name and the columns it reads
    first = datetime.fromisoformat(times[0])  # the window: the day before to the day after
    statement = queries.pack(
        "buckets", "LTEST000000000001", first - timedelta(days=1), first + timedelta(days=2),
        every=every, tz=tz, limit=100,
    )  # fmt: skip
    with psycopg.connect(fresh_database) as conn:
        conn.execute(
            "CREATE SCHEMA buckets; CREATE TABLE buckets.battery_pack_telemetry (vin text, "
            "ts timestamptz, pack smallint, cell_min_mv integer, cell_max_mv integer, "
            "probe_max_c smallint)"
        )
        for at in times:
            conn.execute(
                "INSERT INTO buckets.battery_pack_telemetry "
                "VALUES ('LTEST000000000001', %s, 1, 3300, 3350, 30)",
                (at,),
            )
        got = [r[0] for r in conn.execute(statement.sql.encode(), statement.params)]
        want = [r[0] for r in conn.execute(
            "SELECT unnest(%s::timestamptz[]) ORDER BY 1", (starts,)
        )]  # fmt: skip
    assert got == want
