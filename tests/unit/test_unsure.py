"""storage/unsure.py: when a retry's fence says an attempt whose COMMIT got no answer committed."""

from __future__ import annotations

import pytest

from storage.batch import WriteResult
from storage.offsets import OffsetRange
from storage.unsure import KEEP, Sent, UnsureWrites, committed_by, ranges_key

pytestmark = pytest.mark.unit

A = ("t", 0)
B = ("t", 1)
RANGES = {A: OffsetRange(10, 20), B: OffsetRange(None, 5)}


def _sent(committed: dict[tuple[str, int], int]) -> Sent:
    result = WriteResult(
        committed=committed,
        fenced={},
        rejected=[],
        frames=0,
        rows={},
        latest=0,
        duplicates_skipped=0,
        conflict_fallbacks=0,
        attempts=0,
        seconds=0.0,
    )
    return Sent(result, {}, [], {}, {}, committed)


def test_every_partition_at_the_attempts_end_is_its_commit() -> None:
    assert committed_by(_sent({A: 20, B: 5}), RANGES, {A: 20, B: 5}) == {A, B}


def test_a_partition_gone_on_since_is_not_but_the_others_are() -> None:
    # Another consumer wrote B after the commit: B is fenced, A is this writer's.
    assert committed_by(_sent({A: 20, B: 5}), RANGES, {A: 20, B: 9}) == {A}


def test_a_partition_still_at_its_start_says_the_attempt_did_not_commit() -> None:
    # One transaction stores both or neither: B at 5 alone is someone else's write.
    assert committed_by(_sent({A: 20, B: 5}), RANGES, {A: 10, B: 5}) is None
    assert committed_by(_sent({A: 20, B: 5}), RANGES, {A: 20, B: None}) is None


def test_other_end_offsets_are_another_consumers() -> None:
    assert committed_by(_sent({A: 20, B: 5}), RANGES, {A: 25, B: 7}) is None


def test_nothing_sent_or_nothing_committed_by_it() -> None:
    assert committed_by(None, RANGES, {A: 20, B: 5}) is None
    assert committed_by(_sent({}), RANGES, {A: 20, B: 5}) is None  # it was fenced whole


def test_a_partition_the_attempt_had_fenced_stays_fenced() -> None:
    assert committed_by(_sent({A: 20}), RANGES, {A: 20, B: 8}) == {A}


def test_the_callers_retry_finds_its_batch_and_old_ones_go() -> None:
    unsure = UnsureWrites()
    key = ranges_key(RANGES)
    assert key == ranges_key(dict(reversed(RANGES.items())))
    sent = _sent({A: 20})
    unsure.keep(key, sent)
    for n in range(KEEP):
        unsure.keep(ranges_key({A: OffsetRange(n, n + 1)}), _sent({A: n + 1}))
    assert unsure.take(key) is None  # the oldest went past KEEP
    unsure.keep(key, sent)
    assert unsure.take(key) is sent
    assert unsure.take(key) is None  # taken once


def test_a_partition_short_of_the_attempts_end_says_it_did_not_commit() -> None:
    # Offsets only move forward: A at 15, past the batch's start (10) but before the end the
    # attempt would have stored (20), was stored by someone else; B at its end proves nothing.
    assert committed_by(_sent({A: 20, B: 5}), RANGES, {A: 15, B: 5}) is None


def test_a_changes_only_attempt_is_left_to_its_status() -> None:
    # No offsets (alert changes alone): nothing rules it out, did_commit asks the server.
    assert committed_by(_sent({}), {}, {}) == set()
    assert committed_by(None, {}, {}) is None
