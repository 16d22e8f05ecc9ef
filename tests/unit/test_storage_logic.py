"""Pure pieces of storage: partition planning, chunk sizing, error classes, literals, API."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from devtools.sim.synthetic import frame_rows, vin
from storage.errors import ErrorKind, classify, refused
from storage.latest import newest_per_vehicle
from storage.maintenance import plan_partitions
from storage.offsets import OffsetRange
from storage.params import StorageParams, TimescaleParams, WriterParams, check_identifier
from storage.sizing import FleetProfile, chunk_intervals
from storage.tables import array_literal

pytestmark = pytest.mark.unit

DAY = timedelta(days=1)
T0 = datetime(2025, 3, 10, tzinfo=UTC)  # a Monday


def test_partitions_cover_the_window_aligned() -> None:
    got = plan_partitions([], T0 + timedelta(hours=5), T0 + 2 * DAY, DAY)
    assert got == [(T0, T0 + DAY), (T0 + DAY, T0 + 2 * DAY)]


def test_existing_partitions_are_not_recreated() -> None:
    have = [(T0, T0 + DAY)]
    assert plan_partitions(have, T0, T0 + 2 * DAY, DAY) == [(T0 + DAY, T0 + 2 * DAY)]
    assert plan_partitions(have, T0, T0 + DAY, DAY) == []


def test_a_changed_interval_fills_only_the_gaps() -> None:
    # daily partitions exist for day 0; switching to weekly must not overlap them
    have = [(T0, T0 + DAY)]
    got = plan_partitions(have, T0, T0 + 7 * DAY, 7 * DAY)
    assert got == [(T0 + DAY, T0 + 7 * DAY)]
    # an hourly switch in the middle of an existing day leaves that day alone
    got = plan_partitions(
        have, T0 + timedelta(hours=12), T0 + DAY + timedelta(hours=2), timedelta(hours=1)
    )
    assert got == [
        (T0 + DAY, T0 + DAY + timedelta(hours=1)),
        (T0 + DAY + timedelta(hours=1), T0 + DAY + timedelta(hours=2)),
    ]


def test_weekly_partitions_start_on_monday() -> None:
    wednesday = T0 + 2 * DAY
    ((lo, hi),) = plan_partitions([], wednesday, wednesday + DAY, 7 * DAY)
    assert (lo, hi) == (T0, T0 + 7 * DAY)


def test_chunk_interval_follows_the_data_rate() -> None:
    big = chunk_intervals(FleetProfile(vehicles=1_000_000, connectors=0, packs=0))
    small = chunk_intervals(FleetProfile(vehicles=10_000, connectors=0, packs=0))
    assert big["vehicle_telemetry"] < small["vehicle_telemetry"]
    # the busy tables roll over together; sparse ones get longer chunks
    assert big["vehicle_telemetry"] == big["battery_pack_telemetry"]
    assert big["vehicle_sessions"] > big["vehicle_telemetry"]
    # 1M vehicles / 10 s = 100,000 frames/s x (95 + 116 + 116) B of index per frame
    # = 32.7 MB/s; a quarter of 64 GiB lasts 525 s -> the 5-minute step below it
    assert big["vehicle_telemetry"] == timedelta(minutes=5)
    more_memory = chunk_intervals(
        FleetProfile(vehicles=1_000_000, connectors=0, packs=0, memory_bytes=256 * 2**30)
    )
    assert more_memory["vehicle_telemetry"] > big["vehicle_telemetry"]


def test_chargers_and_packs_share_the_busy_tables_budget() -> None:
    alone = chunk_intervals(FleetProfile(vehicles=100_000, connectors=0, packs=0))
    shared = chunk_intervals(FleetProfile(vehicles=100_000, connectors=100_000, packs=100_000))
    # 10,000 frames/s x 327 B = 3.27 MB/s alone -> 1 h 27 min -> 1 h; with 10,000 connector
    # reports/s x (119 + 106) B and 10,000 pack frames/s x 95 B: 6.47 MB/s -> 44 min -> 30 min
    assert (alone["vehicle_telemetry"], shared["vehicle_telemetry"]) == (
        timedelta(hours=1),
        timedelta(minutes=30),
    )
    busy = {"connector_status_events", "charger_telemetry", "pack_telemetry"}
    assert {shared[t] for t in busy} == {shared["vehicle_telemetry"]}
    # sparse tables of a kind without entities keep the longest step; with them, their own
    assert alone["charging_session_events"] == timedelta(days=7)
    assert shared["charging_session_events"] == timedelta(hours=6)


def test_overrides_win_over_the_arithmetic() -> None:
    params = TimescaleParams(chunk_overrides={"vehicle_telemetry": timedelta(hours=2)})
    assert params.chunk_intervals()["vehicle_telemetry"] == timedelta(hours=2)


def _pg_error(sqlstate: str) -> asyncpg.PostgresError:
    exc = asyncpg.PostgresError.new({"C": sqlstate, "M": "x", "S": "ERROR"})
    assert isinstance(exc, asyncpg.PostgresError)
    return exc


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (_pg_error("23505"), ErrorKind.DUPLICATE),
        (_pg_error("22003"), ErrorKind.DATA),  # numeric out of range
        (_pg_error("23514"), ErrorKind.DATA),  # no partition for the row's time
        (_pg_error("23502"), ErrorKind.DATA),  # not null
        (_pg_error("40001"), ErrorKind.TRANSIENT),  # serialization failure
        (_pg_error("40P01"), ErrorKind.TRANSIENT),  # deadlock
        (_pg_error("57P01"), ErrorKind.TRANSIENT),  # admin shutdown
        (_pg_error("53100"), ErrorKind.TRANSIENT),  # disk full
        (_pg_error("42P01"), ErrorKind.SCHEMA),  # undefined table
        (_pg_error("42501"), ErrorKind.SCHEMA),  # permission denied
        (_pg_error("XX000"), ErrorKind.FATAL),
        (asyncpg.exceptions.ConnectionDoesNotExistError("gone"), ErrorKind.TRANSIENT),
        (ConnectionResetError(), ErrorKind.TRANSIENT),
        (TimeoutError(), ErrorKind.TRANSIENT),
        (struct.error("bad"), ErrorKind.DATA),
        (OverflowError(), ErrorKind.DATA),
        (KeyError("bug"), ErrorKind.FATAL),
    ],
)
def test_errors_are_classified(error: BaseException, kind: ErrorKind) -> None:
    assert classify(error) is kind


@pytest.mark.parametrize("sqlstate", ["28P01", "28000", "3D000", "42501", "55000"])
def test_a_connection_the_server_refuses_is_a_database_down(sqlstate: str) -> None:
    # At connect (password, pg_hba, no database, REVOKE CONNECT, ALLOW_CONNECTIONS false):
    # the shard is down for the worker, retried, not a fatal error.
    error = refused(_pg_error(sqlstate))
    assert error is not None and classify(error) is ErrorKind.TRANSIENT
    assert sqlstate not in {"42501", "55000"} or classify(_pg_error(sqlstate)) is not (
        ErrorKind.TRANSIENT
    ), "in a statement, these stay what they were"


@pytest.mark.parametrize("sqlstate", ["42P01", "57P03", "XX000"])
def test_other_errors_at_connect_are_not_refusals(sqlstate: str) -> None:
    assert refused(_pg_error(sqlstate)) is None


def test_array_literals_quote_text_and_nulls() -> None:
    assert array_literal([1, None, 3]) == "{1,NULL,3}"
    assert array_literal(['a "b"', "c\\d"]) == '{"a \\"b\\"","c\\\\d"}'
    assert array_literal([]) == "{}"
    assert array_literal(None) is None


def test_offset_range_refuses_to_go_backwards() -> None:
    OffsetRange(None, 0)
    OffsetRange(5, 5)
    with pytest.raises(ValueError, match="before it starts"):
        OffsetRange(10, 9)


def test_newest_state_per_vehicle() -> None:
    t = datetime(2025, 1, 1, tzinfo=UTC)
    rows = [frame_rows(vin(i % 3), t + timedelta(seconds=i)).vehicle for i in range(9)]
    newest = newest_per_vehicle(r for r in rows if r is not None)
    assert [(r.vin, r.ts) for r in newest] == [
        (vin(0), t + timedelta(seconds=6)),
        (vin(1), t + timedelta(seconds=7)),
        (vin(2), t + timedelta(seconds=8)),
    ]


def test_identifiers_are_checked() -> None:
    assert check_identifier("nev_test_1") == "nev_test_1"
    for bad in ("Nev", "1x", "a-b", "a;drop", ""):
        with pytest.raises(ValueError, match="not a plain SQL identifier"):
            check_identifier(bad)
    with pytest.raises(ValueError):
        StorageParams(schema="x y")
    with pytest.raises(ValueError):
        WriterParams(consumer_group="g", schema="X")
