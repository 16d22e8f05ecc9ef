"""The worker's side tasks (housekeeping, the Kafka commit), run outside its task group and
watched from inside it: one that fails stops the worker with its error, as if it were in the
group; one that swallows its cancellation does not hold the stop (left behind with one
WARNING). A real worker against the dev stack's Kafka and PostgreSQL; only the housekeeping
task is replaced, by one that fails or one that will not end."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import CollectorRegistry

from ingest.config.load import load_settings
from ingest.pipeline import worker as worker_module
from ingest.pipeline.lag import LagReporter
from ingest.pipeline.metrics import PipelineMetrics
from ingest.pipeline.process import build_worker
from ingest.pipeline.worker import Worker
from tests.integration.pipeline_support import PipelineEnv

pytestmark = pytest.mark.integration

# A safety net against a hang, not a timed assertion: the worker's bounds are seconds.
NET_S = 60


class Boom(RuntimeError):
    pass


class Failing(LagReporter):
    async def run(self) -> None:
        raise Boom("housekeeping failed for the test")


class Stubborn(LagReporter):
    """Uses up every cancellation (a storage upkeep pass whose connection close hangs) until
    the test releases it."""

    started = asyncio.Event()
    release = asyncio.Event()

    async def run(self) -> None:
        Stubborn.started.set()
        while not Stubborn.release.is_set():
            try:
                await Stubborn.release.wait()
            except asyncio.CancelledError:
                continue


def _worker(env: PipelineEnv) -> Worker:
    settings = load_settings(environ=env.environ())
    return build_worker(settings, metrics=PipelineMetrics(CollectorRegistry()))


async def test_a_side_task_that_fails_fails_the_worker_with_its_error(
    env: PipelineEnv, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(worker_module, "LagReporter", Failing)
    caplog.set_level(logging.WARNING)
    run = asyncio.create_task(_worker(env).run(asyncio.Event()))
    done, _ = await asyncio.wait({run}, timeout=NET_S)
    assert done, "the worker goes on after its housekeeping task failed"
    with pytest.raises(ExceptionGroup) as info:
        await run
    assert info.value.subgroup(Boom) is not None, info.value
    # Raised, so not logged again on the way out.
    assert not [r for r in caplog.records if "the housekeeping task failed" in r.getMessage()]


async def test_a_side_task_that_swallows_its_cancel_is_left_behind_with_one_warning(
    env: PipelineEnv, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(worker_module, "LagReporter", Stubborn)
    Stubborn.started, Stubborn.release = asyncio.Event(), asyncio.Event()
    caplog.set_level(logging.WARNING)
    stop = asyncio.Event()
    run = asyncio.create_task(_worker(env).run(stop))
    try:
        await asyncio.wait_for(Stubborn.started.wait(), NET_S)
        stop.set()
        done, _ = await asyncio.wait({run}, timeout=NET_S)
        assert done, "the stop waits for the housekeeping task"
        await run  # exits cleanly
        warnings = [r.getMessage() for r in caplog.records if "housekeeping" in r.getMessage()]
        assert len(warnings) == 1, warnings
        assert "did not end within" in warnings[0] and "left behind" in warnings[0]
    finally:
        Stubborn.release.set()
        await asyncio.wait({run}, timeout=NET_S)
