"""Edges of ``nev-ingest query`` on plain PostgreSQL and the TimescaleDB engine: a report
stored twice (binary frame and T/CEC push) in ``online --quality``, ``daily`` in a zone whose
days do not start on a whole UTC hour, an unknown connector, and ``swaps`` reading only its
range."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from storage import queries, queries_packs
from tests.integration.test_queries_entities import (
    OP,
    PILE,
    V2,
    Row,
    cli,
    h,
    insert,
    iso,
    latest_rows,
    m,
    pack_rows,
    target,
)

pytestmark = pytest.mark.integration

__all__ = ["target"]  # the flavours' fixture, shared with test_queries_entities


def _twice(connector: str, minute: int, source: str) -> Row:
    late = timedelta(seconds=2 if source == "frame" else 5)
    # The push's copy is stored at EndTime + Seq us (Seq 0001 the first): never the binary
    # frame's whole-second ts.
    ts = m(minute) + timedelta(microseconds=1 if source == "tcec" else 0)
    return (
        "charger_telemetry",
        (OP, connector, ts, m(minute) + late, PILE, 400.0, 100.0, 40.0, 1.0, 35, V2,
         60.0, None, None, source),
    )  # fmt: skip


def test_a_report_stored_twice_is_one_frame_of_quality(
    target: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Each minute's report of C0009 arrived as a binary frame and as a T/CEC push: two rows.
    dsn, schema = target
    insert(dsn, schema, [_twice("C0009", k, s) for k in range(60) for s in ("frame", "tcec")])
    db = ("--dsn", dsn, "--schema", schema, "--tz", "UTC", "--format", "json")
    code, out, _ = cli(capsys, "query", "online", "--kind", "charger", "--quality",
                       "--day", h(0).date().isoformat(), "--interval", "1m", *db)  # fmt: skip
    assert code == 0
    (row,) = map(json.loads, out.splitlines())
    assert (row["frames"], row["expected"], row["completeness_pct"]) == (60, 60, 100)
    assert (row["out_of_range"], row["skewed_frames"], row["max_skew_s"]) == (0, 0, 5)


def test_daily_refuses_a_zone_whose_days_start_off_the_hour(
    target: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    # vehicle_stats_1h buckets start on whole UTC hours: 00:00 in Kolkata (18:30 UTC) is
    # inside one, so its frames of 00:05-00:25 would count for the day before.
    dsn, schema = target
    db = ("--dsn", dsn, "--schema", schema, "--format", "json")
    days = ("--from", "2026-12-07", "--to", "2026-12-07")
    for tz, offset in (("Asia/Kolkata", "+05:30"), ("Asia/Kathmandu", "+05:45")):
        code, out, err = cli(capsys, "query", "daily", *days, "--tz", tz, *db)
        assert (code, out) == (2, "") and len(err.strip().splitlines()) == 1, err
        assert f"--tz {tz}: its offset on 2026-12-07 is UTC{offset}" in err
    code, _, err = cli(capsys, "query", "daily", *days, "--tz", "Asia/Shanghai", *db)
    assert code == 0, err


def test_an_unknown_connector_is_said_to_be_unknown(
    target: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    dsn, schema = target
    db = ("--dsn", dsn, "--schema", schema, "--tz", "UTC", "--format", "json")
    code, out, err = cli(capsys, "query", "charger", "ZZZZZZZZZ:NOPE", *db)
    # exit 0 and a note, as `query latest` of an unknown VIN ("(no rows)")
    assert (code, out) == (0, "")
    assert "no such connector ZZZZZZZZZ:NOPE" in err and len(err.strip().splitlines()) == 1
    insert(dsn, schema, [_twice("C0009", 0, "frame")])  # known by its telemetry alone: no row
    code, out, err = cli(capsys, "query", "charger", f"{OP}:C0009", *db)
    assert (code, out) == (0, "") and "no such connector" in err


def test_sessions_of_an_unknown_connector_say_it_is_unknown(
    target: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    # `query sessions --charger` of a mistyped connector printed nothing at all in JSON and
    # "(no rows)" in a table, as for a known connector without sessions; `query charger`
    # says "no such connector".
    dsn, schema = target
    insert(dsn, schema, latest_rows())
    db = ("--dsn", dsn, "--schema", schema, "--tz", "UTC")
    for fmt in ("json", "table", "csv"):
        code, out, err = cli(
            capsys, "query", "sessions", "--charger", "ZZZZZZZZZ:NOPE", "--format", fmt, *db
        )
        assert code == 0 and "no such connector ZZZZZZZZZ:NOPE" in err, (fmt, err)
        assert ("connector,start_charge_seq" in out) == (fmt == "csv"), out  # CSV: its header
    code, _, err = cli(capsys, "query", "sessions", "--charger", "EQ9", "--operator", OP, *db)
    assert code == 0 and "no connector is registered under EQ9" in err, err
    # a known connector without sessions in the window: no rows, nothing said unknown
    code, out, err = cli(capsys, "query", "sessions", "--charger", f"{OP}:C0001", *db)
    assert (code, out, err) == (0, "", "(no rows)\n")


def test_sessions_of_a_connector_known_by_its_orders_alone_are_not_unknown(
    target: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    # An operator pushing charging orders but neither station info nor status: the connector
    # is in charging_session_events only. Its one order, 8 days ago, is outside the default
    # 7-day window; `query sessions --charger` called it "no such connector".
    dsn, schema = target
    when = datetime.now(UTC) - timedelta(days=8)
    seq = OP + "202506010100000099"
    order = (OP, "C0077", when, seq, "order", None, when - timedelta(minutes=30), when,
             12.5, 10.0, 5.0, 15.0, 1, V2, "tcec")  # fmt: skip
    insert(dsn, schema, [("charging_session_events", order)])
    db = ("--dsn", dsn, "--schema", schema, "--tz", "UTC")
    for fmt in ("json", "table"):
        code, out, err = cli(
            capsys, "query", "sessions", "--charger", f"{OP}:C0077", "--format", fmt, *db
        )
        assert code == 0 and "no such connector" not in err, (fmt, err)
        assert out == "", (fmt, out)  # nothing in the window
    # its order, in a window that holds it: the row the check above stands for
    code, out, err = cli(capsys, "query", "sessions", "--charger", f"{OP}:C0077",
                         "--from", "9d", "--format", "json", *db)  # fmt: skip
    assert code == 0 and seq in out, (out, err)
    # `query charger` of it: its sessions, and not "no such connector" beside them
    code, out, err = cli(capsys, "query", "charger", f"{OP}:C0077",
                         "--from", "9d", "--format", "json", *db)  # fmt: skip
    assert code == 0 and seq in out and "no such connector" not in err, (out, err)


def test_swaps_read_the_range_only(
    target: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    dsn, schema = target
    # two days later, the same story again with other vehicles: B moves V1 -> station -> V2
    again = [
        (table, (values[0].replace("PACK", "PACX"), values[1] + timedelta(days=2), *values[2:]))
        if table in ("vehicle_sessions", "battery_pack_telemetry")
        else (table, (values[0], values[1] + timedelta(days=2), *values[2:]))
        for table, values in pack_rows()
    ]
    insert(dsn, schema, pack_rows() + again)
    db = ("--dsn", dsn, "--schema", schema, "--tz", "UTC", "--format", "json")
    counts = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for start, end, lookback in (
            (h(0), h(24), timedelta(days=7)),
            (h(4), h(24), timedelta(days=7)),
            (h(4), h(24), timedelta(minutes=1)),
            (h(48), h(72), timedelta(days=7)),  # the earlier story's places are before
            (h(50), h(72), timedelta(hours=1)),  # ... and the earlier login of V1 too
            (h(52), h(72), timedelta(hours=1)),
        ):
            view = conn.execute(
                f"""WITH places AS (
                    SELECT * FROM {schema}.pack_places WHERE ts >= %s AND ts < %s),
                {queries_packs._RUNS}
                SELECT * FROM ({queries_packs._SWAPS}) s WHERE ts >= %s ORDER BY ts, pack_code""",
                (start - lookback, end, start),
            ).fetchall()
            got = queries.run(conn, queries_packs.swaps_in(schema, start, end, lookback=lookback))
            assert got.rows == [tuple(r) for r in view], (start, lookback)
            counts.append(len(got.rows))
    assert counts == [2, 1, 0, 7, 2, 2]  # the same answers as the view, on both flavours
    window = ("--from", iso(h(48)) or "", "--to", iso(h(72)) or "", "--lookback", "1h")
    code, out, _ = cli(capsys, "query", "swaps", *window, *db[:-2], "--explain")
    assert code == 0
    plain = bool(re.search(r"vehicle_sessions_test", out))
    if plain:  # the rows are in the DEFAULT partition: no day's partition is read
        assert not re.search(r"on vehicle_sessions_p\d+", out), out
