"""Backpressure: bounded in-flight frames, pause on a failing or slow sink, resume later."""

from __future__ import annotations

import asyncio

import pytest

from ingest.pipeline.backpressure import Backpressure, Decision

pytestmark = pytest.mark.unit


def test_room_is_bounded_by_max_in_flight() -> None:
    bp = Backpressure(100)
    assert bp.room() == 100
    bp.add(60)
    assert bp.room() == 40
    bp.add(40)
    assert bp.room() == 0
    bp.done(10)
    assert bp.room() == 10
    bp.done(1000)  # never negative
    assert bp.in_flight == 0


def test_every_change_of_the_count_is_observed() -> None:
    seen: list[int] = []
    bp = Backpressure(100, observe=seen.append)
    bp.add(60)
    bp.add(50)
    bp.done(30)
    bp.done(1000)
    assert seen == [60, 110, 80, 0]


def test_pause_immediately_when_sink_fails_resume_when_healthy_and_drained() -> None:
    bp = Backpressure(100, resume_ratio=0.5)
    bp.add(80)
    assert bp.decide(0.0) is Decision.NONE
    bp.set_sink_healthy(False)
    assert bp.decide(0.1) is Decision.PAUSE
    assert bp.paused
    assert bp.decide(0.2) is Decision.NONE  # stays paused
    bp.set_sink_healthy(True)
    assert bp.decide(0.3) is Decision.NONE  # healthy but 80 > 50 in flight: not yet
    bp.done(30)
    assert bp.decide(0.4) is Decision.RESUME
    assert not bp.paused


def test_pause_when_full_for_longer_than_pause_after() -> None:
    bp = Backpressure(10, pause_after_s=1.0)
    bp.add(10)
    assert bp.decide(5.0) is Decision.NONE  # full, but only just
    assert bp.decide(5.9) is Decision.NONE
    assert bp.decide(6.0) is Decision.PAUSE
    bp.done(4)  # 6 left > resume_at 5
    assert bp.decide(6.5) is Decision.NONE
    bp.done(1)
    assert bp.decide(7.0) is Decision.RESUME
    bp.add(5)
    assert bp.decide(7.1) is Decision.NONE  # full again: the clock starts over


def test_the_wait_at_a_bound_ends_when_the_pause_is_due_not_a_full_period_later() -> None:
    # wake-ups (a commit that freed too little) end the consumer's wait early; each new wait
    # is only what is left of pause_after_s, so the pause comes on time
    bp = Backpressure(5, pause_after_s=2.0)
    assert bp.pause_due_in(10.0) == 2.0  # not full: a whole period
    bp.add(5)
    assert bp.decide(10.0) is Decision.NONE
    assert bp.pause_due_in(11.5) == 0.5
    assert bp.pause_due_in(13.0) == 0.0
    assert bp.decide(12.0) is Decision.PAUSE


async def test_wait_room_wakes_when_room_frees_up() -> None:
    bp = Backpressure(5)
    bp.add(5)
    waiter = asyncio.create_task(bp.wait_room(30))
    await asyncio.sleep(0)
    assert not waiter.done()
    bp.done(1)
    await asyncio.wait_for(waiter, 5)
    bp.add(1)
    await bp.wait_room(0.01)  # times out quietly


def test_a_failing_shard_is_unhealthy_alone_and_pauses_nothing_globally() -> None:
    bp = Backpressure(100, shards=2)
    bp.set_sink_healthy(False, 1)
    assert bp.unhealthy == {1} and bp.sink_healthy and not bp.all_healthy
    assert bp.decide(0.0) is Decision.NONE  # shard 0 writes on: only shard 1's partitions pause
    bp.set_sink_healthy(False, 0)
    assert bp.decide(0.1) is Decision.PAUSE  # every shard failing: everything pauses
    bp.set_sink_healthy(True, 0)
    bp.set_sink_healthy(True, 1)
    assert bp.all_healthy and bp.decide(0.2) is Decision.RESUME


def test_the_byte_bound_stops_fetching_whatever_the_frame_count() -> None:
    seen: list[int] = []
    bp = Backpressure(100, max_bytes=1000, resume_ratio=0.5, observe_bytes=seen.append)
    bp.add(1, 600)
    assert bp.room() == 99 and not bp.full
    bp.add(1, 600)  # over by what the last fetch brought: the bytes are known only after it
    assert bp.room() == 0 and bp.full
    assert bp.decide(0.0) is Decision.NONE
    assert bp.decide(1.0) is Decision.PAUSE  # full for pause_after_s
    bp.done(1, 600)  # 600 left > 500: both bounds must be back under their ratio
    assert bp.room() == 99 and bp.decide(1.1) is Decision.NONE
    bp.done(1, 600)
    assert bp.in_flight_bytes == 0  # never negative
    assert bp.decide(1.2) is Decision.RESUME
    assert seen == [600, 1200, 600, 0]


def test_frames_alone_keep_the_pause_when_the_bytes_have_drained() -> None:
    bp = Backpressure(10, max_bytes=1000, resume_ratio=0.5, pause_after_s=0.0)
    bp.add(10, 10)
    assert bp.decide(0.0) is Decision.PAUSE
    bp.done(2, 10)  # bytes 0, frames 8 > 5
    assert bp.decide(0.1) is Decision.NONE
    bp.done(3, 0)
    assert bp.decide(0.2) is Decision.RESUME


async def test_wait_room_wakes_when_bytes_free_up() -> None:
    bp = Backpressure(100, max_bytes=100)
    bp.add(1, 100)
    waiter = asyncio.create_task(bp.wait_room(30))
    await asyncio.sleep(0)
    assert not waiter.done()
    bp.done(1, 100)
    await asyncio.wait_for(waiter, 5)


async def test_a_wake_up_that_frees_too_little_does_not_make_waiting_spin() -> None:
    # A commit smaller than what a fetch went over the byte bound by, or a health report
    # (set_sink_healthy sets the event for a paused consumer), leaves the event set while the
    # bound still holds: wait_room must wait, not return at once in a loop that spins.
    bp = Backpressure(100, max_bytes=1000)
    bp.add(2, 3000)
    bp.done(1, 1000)  # 2000 left: still full
    bp.set_sink_healthy(True)
    waiter = asyncio.create_task(bp.wait_room(30))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not waiter.done()
    bp.done(1, 2000)
    await asyncio.wait_for(waiter, 5)
