"""The housekeeping loop (``LagReporter.run``) does not wait for storage upkeep: a pass that
takes long (a shard slow to answer) runs as a task of its own while the gauges go on being
updated; no second pass starts while one runs; stopping the loop cancels the pass.

The sink here is a stand-in whose ``maintain`` waits until told: the pass's own behaviour
against real servers is tests/integration/test_storage_maintain_shards.py's."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from ingest.pipeline import lag
from ingest.pipeline.lag import LagReporter
from ingest.pipeline.metrics import PipelineMetrics

pytestmark = pytest.mark.unit


class SlowUpkeep:
    def __init__(self) -> None:
        self.started = 0
        self.running = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def maintain(self) -> None:
        self.started += 1
        self.running.set()
        try:
            await asyncio.Event().wait()  # a shard that does not answer
        except asyncio.CancelledError:
            await asyncio.sleep(0.01)  # set only if the loop waits for the pass to end
            self.cancelled.set()
            raise


class Counting(LagReporter):
    def __init__(self, worker: Any) -> None:
        super().__init__(worker, group_id="g", interval_s=0.001)
        self.updates = 0
        self.ten_more = asyncio.Event()

    async def update(self) -> None:
        self.updates += 1
        if self.updates >= 10:
            self.ten_more.set()


async def test_gauges_go_on_while_a_pass_runs_and_a_stop_cancels_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lag, "UPKEEP_INTERVAL_S", 0.0)  # a pass due at every turn
    sink = SlowUpkeep()
    reporter = Counting(SimpleNamespace(sink=sink, metrics=PipelineMetrics()))
    loop = asyncio.create_task(reporter.run())
    await asyncio.wait_for(sink.running.wait(), 10)
    await asyncio.wait_for(reporter.ten_more.wait(), 10)  # the loop turns while the pass hangs
    assert sink.started == 1, "no second pass while one runs"
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop
    assert sink.cancelled.is_set()


class StuckUpkeep(SlowUpkeep):
    """A pass whose cancellation is used up inside it (a connection close that hangs on a
    shard that does not answer), after which it waits on."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def maintain(self) -> None:
        self.started += 1
        self.running.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
        await self.release.wait()


async def test_a_stop_does_not_wait_for_a_pass_that_outlives_its_cancellation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The housekeeping task's end waited for the pass without a bound, and the worker's task
    # group for the housekeeping task: a hung shard held the worker past the supervisor's stop
    # deadline. Safety net only, far above the bound (HOUSEKEEPING_S): nothing timed here.
    monkeypatch.setattr(lag, "UPKEEP_INTERVAL_S", 0.0)
    sink = StuckUpkeep()
    reporter = Counting(SimpleNamespace(sink=sink, metrics=PipelineMetrics()))
    loop = asyncio.create_task(reporter.run())
    await asyncio.wait_for(sink.running.wait(), 10)
    loop.cancel()
    try:
        done, _ = await asyncio.wait({loop}, timeout=30)
        assert loop in done, "the housekeeping task waited for a pass that would not end"
        assert loop.cancelled() and sink.cancelled.is_set()
    finally:
        sink.release.set()
