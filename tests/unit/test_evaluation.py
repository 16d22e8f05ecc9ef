"""ingest.pipeline.evaluation: a batch's rules run a slice at a time and resume after a cancel."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from alerts import RuleEngine, RuleSet
from alerts.frames import build_frame
from ingest.pipeline.batch import Batch
from ingest.pipeline.evaluation import SLICE, evaluate_batch
from ingest.pipeline.waiting import Hold

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class _Rec:
    topic: str
    partition: int


class _Engine:
    """Records each call; its "changes" name the frames it saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, int]] = []  # (topic, partition, frame)

    def evaluate(
        self, frames: list[Any], *, now_ms: int | None, partition: int | None, topic: str | None
    ) -> list[Any]:
        assert now_ms is not None and partition is not None and topic is not None
        self.seen += [(topic, partition, f) for f in frames]
        return [("change", partition, f) for f in frames]


def _batch(per_partition: int) -> Batch:
    """Frames 0.. of partitions 0 and 1 interleaved, plus frames of a topic without rules."""
    b = Batch(generation=1)
    for i in range(per_partition):
        for p in (0, 1):
            b.records.append(_Rec("nev.vehicle.raw", p))  # type: ignore[arg-type]
            b.frames.append(i)  # type: ignore[arg-type]
        b.records.append(_Rec("nev.unruled.raw", 0))  # type: ignore[arg-type]
        b.frames.append(-1)  # type: ignore[arg-type]
    return b


KINDS = {"nev.vehicle.raw": "vehicle", "nev.unruled.raw": "unruled"}
PENDING: list[Any] = ["pending"]  # stands for the shard's waiting AlertChanges


def _expected(per_partition: int) -> list[tuple[str, int, int]]:
    return [("nev.vehicle.raw", p, i) for p in (0, 1) for i in range(per_partition)]


async def test_every_frame_once_in_partition_order_after_the_pending_changes() -> None:
    engine = _Engine()
    n = SLICE * 2 + 7  # three slices per partition
    changes = await evaluate_batch(
        _batch(n), {"vehicle": engine}, KINDS, lambda _s, _h: list(PENDING)
    )
    assert engine.seen == _expected(n)
    assert list[Any](changes) == ["pending", *(("change", p, i) for _t, p, i in _expected(n))]


@pytest.mark.parametrize("turns", [1, 2, 3])
async def test_a_cancelled_evaluation_resumes_where_it_stopped(turns: int) -> None:
    # cancelled at each of the three yields of the lanes' turn after the first slice
    engine = _Engine()
    n = SLICE * 2 + 7
    batch = _batch(n)
    pending = [list(PENDING)]  # taken once: a second take would be empty

    def take(_shard: int, _hold: Hold) -> list[Any]:
        return pending.pop() if pending else []

    task = asyncio.ensure_future(evaluate_batch(batch, {"vehicle": engine}, KINDS, take))
    for _ in range(turns):  # the task evaluates its first slice, then yields
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(engine.seen) == SLICE  # stopped after the first slice

    changes = await evaluate_batch(batch, {"vehicle": engine}, KINDS, take)
    assert engine.seen == _expected(n)  # no frame twice, none skipped
    assert list[Any](changes) == ["pending", *(("change", p, i) for _t, p, i in _expected(n))]


async def test_without_engines_only_the_pending_changes() -> None:
    changes = await evaluate_batch(_batch(3), {}, KINDS, lambda _s, _h: list(PENDING))
    assert list[Any](changes) == ["pending"]


@pytest.mark.parametrize("native", [True, False])
async def test_a_0_v_frame_under_an_insulation_rule_of_min_voltage_0_fails_no_batch(
    native: bool,
) -> None:
    # It raised ZeroDivisionError out of the evaluation, hence out of the sink's write: not a
    # retried error, so the worker ended, and after each restart met the same frame again (the
    # partition blocked for good). Now 0 V is "cannot tell": the alert it opened stays open.
    rules = RuleSet.from_toml(
        '[[rule]]\nid = "iso"\nseverity = "major"\nkind = "insulation"\nmin_voltage_v = 0\n'
    )
    engine = RuleEngine(rules, native_rules=native)
    vin, t0 = "LTEST000000000001", 1_782_835_200_000
    b = Batch(generation=1)
    for k, (kohm, volts) in enumerate([(0, 0.0), (30, 350.0), (30, 0.0), (0, 0.0)]):
        b.records.append(_Rec("nev.vehicle.raw", 0))  # type: ignore[arg-type]
        b.frames.append(
            build_frame(vin, t0 + k * 1000, insulation_kohm=kohm, total_voltage_v=volts)
        )
    changes = await evaluate_batch(b, {"vehicle": engine}, KINDS, lambda _s, _h: [])
    assert [(c.type, c.alert.rule_id) for c in changes] == [("raised", "iso")]
    assert [a.rule_id for a in engine.open_alerts()] == ["iso"]
