"""``Worker._add``: a fetch decodes a slice at a time, and a move of its partition (a revoke,
an assignment, a seek after a fence) in between stops it, so no stale record joins the batch
or stays counted in flight."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from ingest.pipeline.backpressure import Backpressure, Held
from ingest.pipeline.metrics import PipelineMetrics
from ingest.pipeline.worker import DECODE_SLICE, Worker
from tests.unit.worker_support import bare_worker

pytestmark = pytest.mark.unit

TP = TopicPartition("nev.vehicle.raw", 3)
OTHER = TopicPartition("nev.vehicle.raw", 4)


@dataclass(frozen=True)
class _Rec:
    offset: int


class _Builder:
    """Records each add: (partition, first offset, records, start offset)."""

    def __init__(self) -> None:
        self.adds: list[tuple[Any, int, int, int | None]] = []

    def add(self, tp: Any, records: list[_Rec], start: int | None) -> Held:
        self.adds.append((tp, records[0].offset, len(records), start))
        return Held(len(records), 10 * len(records))


def _worker() -> Worker:
    # Only what _add touches: the decode itself is BatchBuilder's (tested on its own).
    w = Worker.__new__(Worker)
    w.moves = {}
    w.positions = {TP: 100}
    w.builder = _Builder()  # type: ignore[assignment]
    w.bp = Backpressure(1_000_000, resume_ratio=0.5, pause_after_s=1.0, shards=1)
    w._wait_lane = PipelineMetrics(CollectorRegistry()).worker_wait.labels(cause="lane")
    return w


def _records(n: int) -> list[_Rec]:
    return [_Rec(100 + i) for i in range(n)]


async def _until_slices(w: Worker, n: int) -> None:
    """Turns of the loop until ``n`` slices are in (each waits for the lanes' turn first)."""
    builder: Any = w.builder
    for _ in range(100):
        if len(builder.adds) >= n:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{len(builder.adds)} slices in, not {n}")


async def test_slices_in_order_each_with_the_start_offset_of_its_time() -> None:
    w = _worker()
    n = DECODE_SLICE * 2 + 7
    task = asyncio.ensure_future(w._add(TP, _records(n), w.moves.get(TP, 0)))
    await _until_slices(w, 1)  # the first slice is in; a seal moves the start offset
    w.positions[TP] = 100 + DECODE_SLICE
    await task
    builder: Any = w.builder
    assert [(first, size) for _tp, first, size, _s in builder.adds] == [
        (100, DECODE_SLICE),
        (100 + DECODE_SLICE, DECODE_SLICE),
        (100 + 2 * DECODE_SLICE, 7),
    ]
    assert [start for *_x, start in builder.adds] == [100, 100 + DECODE_SLICE, 100 + DECODE_SLICE]
    assert w.bp.in_flight == n


async def test_the_in_flight_gauge_follows_each_slice_and_each_release() -> None:
    # Live, not at the lag task's refresh: dashboards and bench_pipeline (its drain starts
    # with the first fetch) read it. A real worker, for its wiring of the gauge.
    metrics = PipelineMetrics(CollectorRegistry())
    w = bare_worker(None, metrics)  # the sink is not reached by _add
    w.builder = _Builder()  # type: ignore[assignment]
    w.positions = {TP: 100}

    def gauge(name: str = "nev_ingest_in_flight_frames") -> float | None:
        return metrics.registry.get_sample_value(name)

    task = asyncio.ensure_future(w._add(TP, _records(DECODE_SLICE + 3), w.moves.get(TP, 0)))
    await _until_slices(w, 1)
    assert gauge() == DECODE_SLICE
    await task
    assert gauge() == DECODE_SLICE + 3
    assert gauge("nev_ingest_in_flight_bytes") == 10 * (DECODE_SLICE + 3)  # what add held
    w.bp.done(DECODE_SLICE, 10 * DECODE_SLICE)  # a commit, an abandon, a revoke's reset
    assert gauge() == 3 and gauge("nev_ingest_in_flight_bytes") == 30


async def test_a_move_of_the_partition_between_slices_drops_the_rest() -> None:
    w = _worker()
    task = asyncio.ensure_future(w._add(TP, _records(DECODE_SLICE * 3), w.moves.get(TP, 0)))
    await _until_slices(w, 1)  # the first slice is in, the task waits for its next turn
    w._moved([TP])  # e.g. on_revoked, or _seek after a fence
    await task
    builder: Any = w.builder
    assert [(first, size) for _tp, first, size, _s in builder.adds] == [(100, DECODE_SLICE)]
    assert w.bp.in_flight == DECODE_SLICE  # only what the batch holds is in flight


async def test_a_move_before_the_first_slice_adds_nothing() -> None:
    w = _worker()
    mark = w.moves.get(TP, 0)
    w._moved([TP])  # moved while an earlier partition of the same fetch decoded
    await w._add(TP, _records(10), mark)
    builder: Any = w.builder
    assert builder.adds == []
    assert w.bp.in_flight == 0


async def test_a_move_in_the_turn_before_the_first_slice_adds_nothing() -> None:
    w = _worker()
    task = asyncio.ensure_future(w._add(TP, _records(10), w.moves.get(TP, 0)))
    await asyncio.sleep(0)  # the task waits for the lanes' turn before its first slice
    w._moved([TP])
    await task
    builder: Any = w.builder
    assert builder.adds == []
    assert w.bp.in_flight == 0


async def test_another_partition_moving_does_not_stop_this_one() -> None:
    w = _worker()
    n = DECODE_SLICE * 2
    task = asyncio.ensure_future(w._add(TP, _records(n), w.moves.get(TP, 0)))
    await _until_slices(w, 1)
    w._moved([OTHER])
    await task
    assert w.bp.in_flight == n


class _Consumer:
    def __init__(self) -> None:
        self.seeks: list[tuple[Any, int]] = []

    def seek(self, tp: Any, offset: int) -> None:
        self.seeks.append((tp, offset))


def test_only_a_real_seek_moves_the_partition() -> None:
    # No stored offset and nothing skipped before: the consumer is not moved, so records it
    # fetched meanwhile still follow on and must not be dropped (they would never come back).
    w = _worker()
    w.consumer = _Consumer()
    w.sink = object()  # type: ignore[assignment]  # seek_target only asks it for refills
    w.stored, w.rewind = {}, {}
    w._seek(OTHER, None)
    assert w.moves.get(OTHER, 0) == 0
    assert w.consumer.seeks == []
    w._seek(OTHER, 42)
    assert w.moves.get(OTHER, 0) == 1
    assert w.consumer.seeks == [(OTHER, 42)]


async def test_the_event_loops_own_cpu_in_the_lanes_turn_is_not_a_wait() -> None:
    # While _add awaits the lanes' turn, the same loop runs the write lanes: their CPU is work,
    # not a wait. A task made ready before the turn burns CPU in it (by its thread's clock, so
    # whatever the machine's load); at most the rest of the wall time counts as a wait.
    metrics = PipelineMetrics(CollectorRegistry())
    w = _worker()
    w._wait_lane = metrics.worker_wait.labels(cause="lane")
    burn_s = 0.05

    async def lane() -> None:
        start = time.thread_time()
        while time.thread_time() - start < burn_s:
            pass

    began = time.perf_counter()
    lanes = asyncio.ensure_future(lane())
    await w._add(TP, _records(3), w.moves.get(TP, 0))
    wall = time.perf_counter() - began
    assert lanes.done()  # it ran in the turn _add awaited
    counted = metrics.registry.get_sample_value(
        "nev_ingest_worker_wait_seconds_total", {"cause": "lane"}
    )
    assert counted is not None and counted <= wall - burn_s
