"""The frame-time window: its bounds (inclusive), and the batch step that applies it before the
database - out-of-window frames dead-lettered with their time and the window in the headers."""

from __future__ import annotations

import pytest

from contract.rows import FrameRows
from ingest.config.load import load_settings
from ingest.pipeline import wire
from ingest.pipeline.batch import BatchBuilder
from ingest.pipeline.process import time_window
from ingest.pipeline.timewindow import (
    EARLIEST_MS,
    FRAME_TIME,
    WINDOW_END,
    WINDOW_START,
    TimeWindow,
)
from tests.unit.kafka_records import TP, Rec

pytestmark = pytest.mark.unit

DAY = 86_400_000
NOW = 1_780_000_000_000
WINDOW = TimeWindow(max_age_ms=30 * DAY, max_future_ms=600_000)


def test_bounds_are_inclusive_past_from_now_future_from_received_at() -> None:
    received = NOW - 5_000  # a frame read from a backlog: received before now
    assert WINDOW.start(NOW) == NOW - 30 * DAY
    assert WINDOW.end(received) == received + 600_000
    assert WINDOW.contains(NOW - 30 * DAY, received, NOW)
    assert not WINDOW.contains(NOW - 30 * DAY - 1, received, NOW)
    assert WINDOW.contains(received + 600_000, received, NOW)
    assert not WINDOW.contains(received + 600_001, received, NOW)
    assert WINDOW.contains(NOW - 29 * DAY, received, NOW)  # old, but retained: stored


def test_with_retention_forever_the_past_bound_is_2000() -> None:
    forever = TimeWindow(max_age_ms=None, max_future_ms=0)
    assert forever.start(NOW) == EARLIEST_MS == 946_684_800_000  # 2000-01-01T00:00:00Z
    assert forever.contains(EARLIEST_MS, NOW, NOW)
    assert not forever.contains(EARLIEST_MS - 1, NOW, NOW)
    assert not forever.contains(NOW + 1, NOW, NOW)
    # a retention reaching back before 2000 stops there too
    assert TimeWindow(max_age_ms=NOW, max_future_ms=0).start(NOW) == EARLIEST_MS


def test_a_year_1_time_is_dead_lettered_even_with_retention_forever() -> None:
    # A T/CEC push dated 0001-01-01 (its timestamps carry the whole year): before the floor,
    # it was stored, and the partition step overflowed on it, stopping the worker on every
    # restart at the same record.
    forever = TimeWindow(max_age_ms=None, max_future_ms=600_000)
    builder = BatchBuilder({VEHICLE.topic: _decode}, window=forever, clock_ms=lambda: NOW)
    year_1 = -62_135_596_800_000
    hdr = [(wire.RECEIVED_AT, str(NOW).encode())]
    recs = [
        Rec(VEHICLE.topic, 0, 0, str(year_1).encode(), timestamp=NOW, headers=hdr),
        Rec(VEHICLE.topic, 0, 1, str(EARLIEST_MS).encode(), timestamp=NOW, headers=hdr),
    ]
    builder.add(VEHICLE, recs, start=0)
    batch = builder.take()
    assert [r.offset for r in batch.records] == [1]
    (dead,) = batch.dead
    h = dict(dead.headers)
    assert h[wire.ERROR_REASON] == b"time_out_of_window"
    assert int(h[WINDOW_START]) == EARLIEST_MS
    assert b"0001-01-01T00:00:00.000+00:00" in h[wire.ERROR_DETAIL]
    assert b"before 2000" in h[wire.ERROR_DETAIL]


def test_negative_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        TimeWindow(max_age_ms=-1, max_future_ms=0)
    with pytest.raises(ValueError, match=">= 0"):
        TimeWindow(max_age_ms=None, max_future_ms=-1)


def test_the_window_follows_the_settings() -> None:
    s = load_settings(
        environ={"NEV_STORAGE_RETENTION_DAYS": "400", "NEV_PIPELINE_FRAME_MAX_FUTURE_S": "90"}
    )
    assert time_window(s) == TimeWindow(max_age_ms=400 * DAY, max_future_ms=90_000)
    forever = load_settings(environ={"NEV_STORAGE_RETENTION_DAYS": "0"})
    assert time_window(forever).max_age_ms is None


VEHICLE = TP("nev.vehicle.raw", 0)


def _decode(value: bytes, received_ms: int) -> FrameRows:
    ts = None if value == b"none" else int(value)
    return FrameRows(edition=2016, command=2, vin="V", ts_ms=ts)


def test_the_batch_step_dead_letters_out_of_window_frames_with_the_window() -> None:
    builder = BatchBuilder({VEHICLE.topic: _decode}, window=WINDOW, clock_ms=lambda: NOW)
    received = NOW - 1_000
    hdr = [(wire.RECEIVED_AT, str(received).encode())]
    times = {
        0: NOW - 30 * DAY,  # the oldest retained instant: stored
        1: NOW - 30 * DAY - 1,  # just past retention
        2: received + 600_000,  # the newest allowed: stored
        3: received + 600_001,  # a clock running ahead
        4: 946_684_800_000,  # 2000-01-01, a reset clock
        5: NOW - 20 * DAY,  # a reissue older than any pre-made partition: stored
    }
    recs = [
        Rec(VEHICLE.topic, 0, o, str(t).encode(), timestamp=NOW, headers=hdr)
        for o, t in times.items()
    ]
    recs.append(Rec(VEHICLE.topic, 0, 6, b"none", timestamp=NOW, headers=hdr))  # no time: stored
    builder.add(VEHICLE, recs, start=0)
    batch = builder.take()
    assert [r.offset for r in batch.records] == [0, 2, 5, 6]
    assert [wire.header(d.headers, wire.SOURCE_OFFSET) for d in batch.dead] == [
        b"1",
        b"3",
        b"4",
    ]
    assert batch.dead_reasons == {(VEHICLE.topic, "time_out_of_window"): 3}
    assert list(batch.next.values()) == [7]  # the offsets move past the dead letters
    for d, off in zip(batch.dead, (1, 3, 4), strict=True):
        h = dict(d.headers)
        assert h[wire.ERROR_REASON] == b"time_out_of_window"
        assert int(h[FRAME_TIME]) == times[off]
        assert int(h[WINDOW_START]) == NOW - 30 * DAY
        assert int(h[WINDOW_END]) == received + 600_000
        assert h[wire.RECEIVED_AT] == str(received).encode()  # the original headers kept
        assert b"outside the stored window" in h[wire.ERROR_DETAIL]
    assert b"older than the retention" in dict(batch.dead[0].headers)[wire.ERROR_DETAIL]
    assert b"ahead of its received_at" in dict(batch.dead[1].headers)[wire.ERROR_DETAIL]


def test_without_a_window_every_time_is_kept() -> None:
    builder = BatchBuilder({VEHICLE.topic: _decode}, clock_ms=lambda: NOW)
    builder.add(VEHICLE, [Rec(VEHICLE.topic, 0, 0, b"946684800000", timestamp=NOW)], start=0)
    assert len(builder.take().frames) == 1


def test_the_slot_cache_asks_only_for_slots_it_has_not_seen() -> None:
    from datetime import UTC, datetime, timedelta

    from storage.partitions import ORIGIN, SlotCache

    cache = SlotCache(timedelta(days=1))
    day0 = int(ORIGIN.timestamp() * 1000)
    times = [day0 + 5, day0 + DAY - 1, day0 + DAY, None, day0 - 1]
    assert cache.missing(times) == [-1, 0, 1]
    assert cache.bounds(1) == (ORIGIN + timedelta(days=1), ORIGIN + timedelta(days=2))
    assert cache.bounds(-1)[0] == datetime(2000, 1, 2, tzinfo=UTC)
    cache.add([0, 1])
    assert cache.missing(times) == [-1]
    cache.clear()
    assert cache.missing(times) == [-1, 0, 1]
