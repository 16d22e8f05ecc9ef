"""Backpressure with shards: each shard's write lanes may hold its share of the in-flight bound;
a shard over its share (hung writes) is held alone, the others go on, the frames of a
failing or held shard do not keep the rest paused, and the whole bound reached past
pause_after_s still pauses every partition (the consume loop must poll, not spin)."""

from __future__ import annotations

import pytest

from ingest.pipeline.backpressure import Backpressure, Decision

pytestmark = pytest.mark.unit


def test_a_hung_shard_fills_only_its_share_and_is_held_alone() -> None:
    bp = Backpressure(100, resume_ratio=0.5, pause_after_s=1.0, shards=2)
    # Shard 1 hangs: every batch handed to its lanes stays there.
    for _ in range(5):
        bp.add(10)
        bp.assign(1, 10)
    assert bp.held == {1}  # 50 frames: its share of 100
    # Shard 0 writes on with the other half of the bound.
    bp.add(45)
    bp.assign(0, 45)
    assert bp.room() == 5 and bp.held == {1}
    bp.add(5)
    bp.assign(0, 5)  # the bound reached, and it stays reached past pause_after_s ...
    assert bp.decide(0.0) is Decision.NONE
    assert bp.held == {0, 1}  # each shard over its share pauses its own partitions
    # Past pause_after_s every partition pauses (the consume loop polls paused, never spins),
    # and stays paused while every shard is held.
    assert bp.decide(5.0) is Decision.PAUSE
    assert bp.decide(6.0) is Decision.NONE
    bp.done(30, shard=0)  # shard 0 commits: drained to the resume ratio of its share
    assert bp.held == {1}
    assert bp.decide(7.0) is Decision.RESUME  # shard 1's 50 frames are left out of the check
    bp.done(50, shard=1)  # shard 1 answers again
    assert bp.held == set()


def test_a_failing_shards_frames_are_left_out_of_the_resume_check() -> None:
    bp = Backpressure(100, resume_ratio=0.5, shards=2)
    bp.add(60)
    bp.assign(1, 60)
    bp.add(30)
    bp.assign(0, 30)
    bp.set_sink_healthy(False, 0)
    bp.set_sink_healthy(False, 1)
    assert bp.decide(0.0) is Decision.PAUSE  # every shard fails: everything pauses
    bp.set_sink_healthy(True, 0)
    bp.done(30, shard=0)
    # 60 frames in flight, all shard 1's, which still fails: shard 0 must not wait for them.
    assert bp.decide(1.0) is Decision.RESUME


def test_one_shard_keeps_the_whole_bound_and_the_pause_for_a_bound_reached() -> None:
    bp = Backpressure(100, pause_after_s=1.0)
    bp.add(100)
    bp.assign(0, 100)
    assert bp.held == set()
    assert bp.decide(0.0) is Decision.NONE
    assert bp.decide(1.5) is Decision.PAUSE


def test_a_pause_for_the_whole_bound_lasts_while_the_bound_is_reached() -> None:
    # Shard 1 hung (held at its share), shard 0 slow and the open batch: the whole bound.
    # Resumed at once (shard 1's frames left out of the check), it paused again after
    # pause_after_s: every 2 s, each time a WARNING.
    bp = Backpressure(100, resume_ratio=0.5, pause_after_s=1.0, shards=2)
    bp.add(50)
    bp.assign(1, 50)
    bp.add(40)
    bp.assign(0, 40)
    bp.add(10)  # the open batch
    assert bp.held == {1} and bp.room() == 0
    assert bp.decide(0.0) is Decision.NONE
    assert bp.decide(1.2) is Decision.PAUSE
    assert bp.decide(1.8) is Decision.NONE  # still the whole bound: stays paused
    assert bp.decide(3.6) is Decision.NONE
    bp.done(40, shard=0)  # shard 0 commits
    assert bp.decide(4.0) is Decision.RESUME


def test_a_shards_share_follows_the_partitions_the_worker_owns_on_it() -> None:
    bp = Backpressure(100, resume_ratio=0.5, shards=2)
    assert bp.share(0) == (50, None) and bp.share(1) == (50, None)  # none assigned yet
    # Every partition of this worker maps to shard 0: the whole bound is its, not half.
    bp.own([0, 0, 0, 0])
    assert bp.share(0) == (100, None)
    bp.add(90)
    bp.assign(0, 90)
    assert bp.held == set()
    bp.done(90, shard=0)
    # Three partitions on shard 0, one on shard 1: 3/4 and 1/4 of the bound.
    bp.own([0, 1, 0, 0])
    assert bp.share(0) == (75, None) and bp.share(1) == (25, None)


def test_the_byte_share_follows_the_same_fraction() -> None:
    bp = Backpressure(100, max_bytes=1000, shards=2)
    bp.own([1, 1, 1, 0])
    assert bp.share(0) == (25, 250) and bp.share(1) == (75, 750)


def test_a_shard_with_one_partition_of_many_keeps_a_batch_of_share() -> None:
    bp = Backpressure(1000, max_bytes=10_000, shards=2, min_share=100)
    bp.own([0] * 99 + [1])  # 1/100 of the bound would be 10 frames
    assert bp.share(1) == (100, 1000)
    bp.add(99)
    bp.assign(1, 99)  # one batch in its lanes: not held
    assert bp.held == set()
    # 99/100 of the bound less shard 1's floor: shard 0 hung is held before the bound is full.
    assert bp.share(0) == (900, 9000)


def test_a_batch_as_large_as_the_bound_still_keeps_a_hung_shard_to_its_share() -> None:
    # batch_max_frames >= max_in_flight_frames (docs/operations.md suggests both at 20,000):
    # a floor of a whole batch gave each shard the whole bound, so a hung shard filled it and
    # the whole bound's pause starved the other shard until the write timeout.
    bp = Backpressure(1000, resume_ratio=0.5, pause_after_s=1.0, shards=2, min_share=1000)
    bp.own([0, 1])
    assert bp.share(0) == (500, None) and bp.share(1) == (500, None)
    for _ in range(5):
        bp.add(100)
        bp.assign(1, 100)  # shard 1 hangs
    assert bp.held == {1} and bp.room() == 500  # held at its share: shard 0 writes on
    bp.own([0, 0, 0, 1])
    assert bp.share(0) == (500, None) and bp.share(1) == (500, None)


def test_a_new_assignment_judges_the_held_shards_again() -> None:
    bp = Backpressure(100, resume_ratio=0.5, shards=2)
    bp.add(50)
    bp.assign(0, 50)
    assert bp.held == {0}  # 1/2 before the assignment
    bp.own([0, 0])
    assert bp.held == set()  # the whole bound is shard 0's now: under half of it
    bp.own([0, 1, 1, 1])
    assert bp.held == {0}  # 25 frames of share: over it


def test_a_held_shard_resumes_at_the_configured_ratio_not_the_rounded_one() -> None:
    # resume_at = int(10 * 0.39) = 3: its ratio over the bound, 0.3, let shard 0's bytes
    # resume only at 150 of its 500, not at 0.39 of them (195).
    bp = Backpressure(10, max_bytes=1000, resume_ratio=0.39, shards=2)
    bp.add(1, 500)
    bp.assign(0, 1, 500)
    assert bp.held == {0}
    bp.done(0, 320, shard=0)  # 180 bytes left
    assert bp.held == set()
