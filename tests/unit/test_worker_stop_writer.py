"""The worker's stop after the drain does not wait for ever for its writer: a write given up
at the deadline whose cancellation is swallowed (a COMMIT under way in the sink) holds the
writer's lane, and the worker ends it within WRITER_S, left behind with one WARNING, instead
of waiting until the supervisor kills it.

The writer here is a stand-in whose lane awaits such a write: the real writer's drain and
abandon are tests/unit/test_writer*.py's; what is tested is the worker's ``_shutdown``."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest

from ingest.config import Settings
from ingest.pipeline.closing import WRITER_S
from ingest.pipeline.process import worker_options
from ingest.pipeline.worker import Worker

pytestmark = pytest.mark.unit


class StuckWriter:
    """A lane awaiting a write that uses up its cancellation (as ``Writer._process`` awaits
    ``lane.attempt`` after ``abandon`` cancelled it) and waits on."""

    def __init__(self) -> None:
        self.writing = asyncio.Event()
        self.release = asyncio.Event()  # the end of the test: the write gives up
        self.closed = False

    async def run(self) -> None:
        attempt = asyncio.ensure_future(self._write())
        self.writing.set()
        await attempt

    async def _write(self) -> None:
        while not self.release.is_set():
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                continue  # swallowed: a COMMIT on its way to the server

    async def drain(self, timeout_s: float) -> bool:
        return False  # the deadline passed

    def abandon(self, reason: str) -> int:
        return 10

    def close(self) -> None:
        self.closed = True


class Sink:
    async def delete_published(self) -> None:
        return None


async def test_a_write_that_swallows_its_cancel_is_left_behind_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    w = Worker.__new__(Worker)
    w.options = dataclasses.replace(worker_options(Settings()), shutdown_timeout_s=0.0)
    w.owned = set()
    w.sink = Sink()  # type: ignore[assignment]
    writer = StuckWriter()
    w.writer = writer  # type: ignore[assignment]
    w._seal = lambda: None  # type: ignore[method-assign]  # nothing open to seal
    write_task = asyncio.create_task(writer.run(), name="writer")
    await writer.writing.wait()
    consume_task = asyncio.create_task(asyncio.sleep(0))
    caplog.set_level(logging.WARNING)
    stop = asyncio.create_task(w._shutdown(consume_task, write_task))
    try:
        # A safety net against a hang, not a timed assertion: the bound is WRITER_S.
        done, _ = await asyncio.wait({stop}, timeout=WRITER_S + 30)
        assert done, "the stop waits for the stuck writer"
        await stop
        warnings = [r.getMessage() for r in caplog.records if "the writer" in r.getMessage()]
        assert len(warnings) == 1 and "did not end within" in warnings[0], warnings
    finally:
        writer.release.set()
        await asyncio.wait({write_task, stop}, timeout=5)
