"""Review findings on the alert restore after a refill (issue 12): a failing ``restore`` loses
no held alert and does not escape into the consume loop (``RefillWarm._restore``,
``LatestKeeper._notify``), and a refill whose range ends in a gap completes once the
consumer's position passed it (``end_refills``)."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from alerts import AlertChange, RuleEngine, RuleSet
from alerts.model import AlertRecord
from ingest.pipeline.alert_state import RESTORE_ATTEMPTS, RefillWarm
from ingest.pipeline.latest_keeper import LatestKeeper, end_refills
from storage.offsets import TopicPartition
from tests.unit.test_alerts_refill_warm import (
    CRASH,
    FRAMES,
    MERGED,
    RULES,
    TOPIC,
    TP,
    Decoder,
    Record,
    Writer,
    uninterrupted,
)

pytestmark = pytest.mark.unit

RECORDS = [Record(i, f) for i, f in enumerate(FRAMES)]


class FailingRestore(RuleEngine):
    """A rule engine whose ``restore`` raises its first ``failures`` times (a bug's stand-in)."""

    def __init__(self, failures: int) -> None:
        super().__init__(RuleSet.from_toml(RULES), entity_kind="vehicle", update_every_s=3600)
        self.failures = failures
        self.calls = 0

    def restore(self, records: Any) -> list[AlertChange]:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError("restore bug")
        return super().restore(records)


def owner(
    new: RuleEngine, stored: list[AlertRecord]
) -> tuple[LatestKeeper, RefillWarm, Writer, list[AlertChange]]:
    """A new owner of TP (latest_from = MERGED, stored offset = CRASH) holding ``stored``."""
    new.warm(FRAMES[:MERGED], partition=3, topic=TOPIC)
    emitted: list[AlertChange] = []
    warm = RefillWarm({"vehicle": new}, {TOPIC: "vehicle"}, emitted.extend)
    writer = Writer()
    writer.latest.assigned(TP, CRASH, MERGED)
    keeper = LatestKeeper(lambda: [writer], lambda partition: 0, warm.refilled)
    assert warm.defer({"vehicle": stored}, keeper.refilling) == {}
    return keeper, warm, writer, emitted


def test_a_failing_restore_keeps_the_alerts_and_retries_them_before_the_next_records() -> None:
    stored, _ = uninterrupted()
    new = FailingRestore(failures=1)
    keeper, _, writer, _ = owner(new, stored)
    # The refill completes and restore raises: nothing escapes into the consume loop, the
    # refill's own bookkeeping is done, the records past the range are handed on.
    rest = keeper.take_refill(TP, RECORDS[MERGED:7], Decoder())
    assert [r.offset for r in rest] == [6]
    assert not keeper.refilling(TP)
    assert writer.latest.parts[TP].merged_at == float("-inf")
    assert new.open_alerts() == []
    # Kept, and restored with the partition's next records, before they are evaluated.
    nxt = keeper.take_refill(TP, RECORDS[7:], Decoder())
    assert new.calls == 2
    assert [a.rule_id for a in new.open_alerts()] == ["warm_pack"]
    assert [r.offset for r in nxt] == list(range(7, len(FRAMES)))
    keeper.take_refill(TP, RECORDS[7:8], Decoder())
    assert new.calls == 2  # restored once: not called again


def test_a_restore_that_keeps_failing_gives_up_after_a_bounded_number_of_attempts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stored, _ = uninterrupted()
    new = FailingRestore(failures=10**6)
    keeper, warm, _, _ = owner(new, stored)
    caplog.set_level(logging.ERROR)
    keeper.take_refill(TP, RECORDS[MERGED:7], Decoder())
    for i in range(7, 7 + 2 * RESTORE_ATTEMPTS):
        keeper.take_refill(TP, RECORDS[i : i + 1], Decoder())
    assert new.calls == RESTORE_ATTEMPTS
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == RESTORE_ATTEMPTS
    assert "given up" in errors[-1] and "next assignment" in errors[-1]
    assert "tried again" in errors[0]
    # Given up: nothing held any more (its next assignment reads them from the database).
    assert warm.refilled(TP, [], True)


def test_a_raising_hook_still_completes_the_refill_and_is_retried() -> None:
    writer = Writer()
    writer.latest.assigned(TP, CRASH, MERGED)
    calls: list[tuple[TopicPartition, int, bool]] = []

    def hook(key: TopicPartition, frames: list[Any], complete: bool) -> bool:
        calls.append((key, len(frames), complete))
        if len(calls) == 1:
            raise RuntimeError("hook bug")
        return True

    keeper = LatestKeeper(lambda: [writer], lambda partition: 0, hook)
    rest = keeper.take_refill(TP, RECORDS[MERGED:7], Decoder())
    assert [r.offset for r in rest] == [6]
    assert not keeper.refilling(TP)
    assert writer.latest.parts[TP].merged_at == float("-inf")
    assert len(writer.latest.parts[TP].pending) == 1  # the refilled tuple is kept
    keeper.take_refill(TP, RECORDS[7:8], Decoder())
    keeper.take_refill(TP, RECORDS[8:9], Decoder())
    assert calls == [(TP, CRASH - MERGED, True), (TP, 0, True)]


def test_a_refill_whose_range_ends_in_a_gap_completes_at_the_consumers_position() -> None:
    # Offset CRASH - 1 = 5 is gone (compacted away, or a transaction's commit marker), and
    # the partition then goes quiet: no record at or past 5 comes to complete the refill.
    stored, _ = uninterrupted()
    new = RuleEngine(RuleSet.from_toml(RULES), entity_kind="vehicle", update_every_s=3600)
    keeper, _, _, _ = owner(new, stored)
    assert keeper.take_refill(TP, RECORDS[MERGED : CRASH - 1], Decoder()) == []
    assert keeper.refilling(TP)
    sink = SimpleNamespace(latest=keeper)
    at = {TP: CRASH - 1}

    async def position(tp: Any) -> int:
        return at[tp]

    # Each call that asked says so: the worker counts its time as a restore wait.
    assert asyncio.run(end_refills(sink, [TP], position))  # short of the stored offset
    assert keeper.refilling(TP) and new.open_alerts() == []
    at[TP] = CRASH  # the consumer skipped the gap
    assert asyncio.run(end_refills(sink, [TP], position))
    assert not keeper.refilling(TP)
    assert not asyncio.run(end_refills(sink, [TP], position))  # nothing left to restore
    assert [a.rule_id for a in new.open_alerts()] == ["warm_pack"]


def test_end_refills_asks_only_partitions_that_refill() -> None:
    writer = Writer()
    writer.latest.assigned(TP, CRASH, MERGED)
    keeper = LatestKeeper(lambda: [writer], lambda partition: 0)
    asked: list[Any] = []

    async def position(tp: Any) -> int:
        asked.append(tp)
        raise RuntimeError("not assigned")  # revoked meanwhile: skipped, no error

    asyncio.run(end_refills(SimpleNamespace(latest=keeper), [TP, (TOPIC, 4)], position))
    assert asked == [TP] and keeper.refilling(TP)
