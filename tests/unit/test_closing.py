"""The worker's way out is bounded even by a close that swallows its cancellation and goes on
(aiokafka's fetcher, client and group-coordinator ``close`` do: ingest.pipeline.closing), and
so is the end of its event loop, which waits for every task still running."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import sys
import textwrap

import pytest

from ingest.config.kafka_limits import REVOKE_MARGIN_MS
from ingest.pipeline.closing import (
    STOP_GRACE_S,
    after_drain_s,
    after_revoke_drain_s,
    close_within,
    end_within,
    left_behind,
)

pytestmark = pytest.mark.unit

# A safety net for the test itself (a regression fails instead of hanging the suite), far above
# the bounds under test; nothing here asserts how fast anything is.
NET_S = 60.0


class _Stubborn:
    """A close shaped like aiokafka's: it awaits an inner task with the cancellation
    suppressed (``Fetcher.close``), then waits on, for an event nobody sets but the test."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.swallowed = 0

    async def _inner(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
        self.swallowed += 1

    async def close(self) -> None:
        inner = asyncio.ensure_future(self._inner())
        with contextlib.suppress(asyncio.CancelledError):
            await inner  # the outer cancellation reaches `inner`, which swallows it
        await self.release.wait()


async def test_a_close_that_swallows_its_cancellation_is_left_behind_at_the_bound(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stubborn = _Stubborn()
    closing = asyncio.ensure_future(close_within("the Kafka consumer", stubborn.close, 0.2))
    done, _ = await asyncio.wait({closing}, timeout=NET_S)
    try:
        assert closing in done, "close_within waited for a close that swallowed its cancel"
        assert closing.result() is False
        assert stubborn.swallowed == 1  # the cancellation reached the close and was swallowed
        (left,) = left_behind()  # still running, given up
        assert left.get_name() == "closing the Kafka consumer"  # the leftover-task WARNING's
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "the Kafka consumer did not close" in warnings[0]
        assert "nothing is lost" in warnings[0]
    finally:
        stubborn.release.set()
        closing.cancel()
    await asyncio.wait({left}, timeout=NET_S)
    assert not left_behind()


async def test_a_task_given_up_once_is_not_waited_for_or_reported_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The stop ends the writer (cancel=False, it was told to close), then the run's `finally`
    # ends it again: one WARNING for a writer that will not end, not two, and no second wait.
    release = asyncio.Event()

    async def deaf() -> None:  # a write whose every cancellation is swallowed (a COMMIT)
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await release.wait()

    task = asyncio.ensure_future(deaf())
    await asyncio.sleep(0)  # under way
    try:
        first = asyncio.ensure_future(end_within(task, "the writer", 0.2, cancel=False))
        done, _ = await asyncio.wait({first}, timeout=NET_S)
        assert first in done
        assert task in left_behind()
        again = asyncio.ensure_future(end_within(task, "the writer", NET_S))
        done, _ = await asyncio.wait({again}, timeout=NET_S / 2)
        assert again in done, "the second end_within waited for a task given up already"
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "the writer did not end within 0.2s" in warnings[0]
    finally:
        release.set()
    await asyncio.wait({task}, timeout=NET_S)
    assert not left_behind()


async def test_a_close_that_ends_or_fails_is_awaited(caplog: pytest.LogCaptureFixture) -> None:
    async def fine() -> None:
        await asyncio.sleep(0)

    async def broken() -> None:
        raise OSError("connection reset")

    assert await close_within("the Kafka producer", fine, NET_S) is True
    assert await close_within("the Kafka producer", broken, NET_S) is False
    assert await close_within("a Kafka client", broken, NET_S, quiet=True) is False
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["closing the Kafka producer failed: OSError('connection reset')"]


@pytest.mark.parametrize(
    ("what", "settled"),
    [
        ("worker", "every commit is made"),
        ("gateway", "every frame was acknowledged and answered"),
    ],
)
def test_the_loop_s_end_does_not_wait_for_a_task_that_outlives_its_cancellation(
    what: str, settled: str
) -> None:
    # What uvloop.run / asyncio.run do at the end: cancel every task still running and wait
    # for each to end, without a bound. A task that swallows its cancellation and waits on
    # held the worker's exit until the supervisor killed it.
    script = textwrap.dedent(
        """
        import asyncio, contextlib, logging, sys
        import uvloop
        from ingest.pipeline.closing import run_bounded

        logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(message)s")

        async def stubborn() -> None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()
            await asyncio.Event().wait()  # for ever, cancelled once already

        async def main() -> str:
            asyncio.ensure_future(stubborn(), loop=None).set_name("stubborn")
            await asyncio.sleep(0)
            return "main done"

        print(run_bounded(main(), grace_s=0.2, loop_factory=uvloop.new_event_loop, what=WHAT))
        print("exited")
        """
    ).replace("WHAT", repr(what))
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=NET_S
    )
    assert run.returncode == 0, run.stderr
    out = run.stdout.splitlines()
    assert out[-2:] == ["main done", "exited"], run.stdout
    (warning,) = [line for line in out if "did not end" in line]
    assert "1 tasks" in warning and "stubborn" in warning
    # Named for the process it ends, with what that process settled before (the gateway has
    # no commits).
    assert f"the {what} exits without them" in warning and settled in warning, warning
    # Its "Task was destroyed but it is pending!" at exit would only repeat the warning.
    assert "destroyed" not in run.stdout + run.stderr


def test_a_task_abandoned_at_exit_that_awaits_in_its_finally_prints_nothing() -> None:
    # Abandoned with the loop, its coroutine was closed at interpreter exit, without a loop:
    # its `finally` printed "Exception ignored in: <coroutine ...> RuntimeError: no running
    # event loop" on stderr, not a JSON log line.
    script = textwrap.dedent(
        """
        import asyncio, contextlib
        import uvloop
        from ingest.pipeline.closing import run_bounded

        async def stubborn() -> None:
            try:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.Event().wait()
                await asyncio.Event().wait()
            finally:
                await asyncio.sleep(0)  # a close of its own, as a client's stop does

        async def also_stubborn() -> None:
            held = asyncio.get_running_loop().create_future()
            try:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.Event().wait()
                await asyncio.Event().wait()
            finally:
                await held  # a future: no loop check, the close is ignored once

        async def main() -> None:
            tasks = [asyncio.ensure_future(stubborn()), asyncio.ensure_future(also_stubborn())]
            await asyncio.sleep(0)
            assert tasks

        run_bounded(main(), grace_s=0.2, loop_factory=uvloop.new_event_loop)
        print("exited")
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=NET_S
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1:] == ["exited"], run.stdout
    assert "Exception ignored" not in run.stderr, run.stderr


async def test_a_close_left_behind_that_fails_later_is_not_reported_as_never_retrieved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # asyncio's "Task exception was never retrieved" (an ERROR with a traceback) for a close
    # already reported as left behind, or a quiet one.
    release = asyncio.Event()

    async def fails_later() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
        await release.wait()
        raise OSError("connection reset")

    for quiet in (False, True):
        assert await close_within("the Kafka producer", fails_later, 0.05, quiet=quiet) is False
    (left_a, left_b) = left_behind()
    release.set()
    await asyncio.wait({left_a, left_b}, timeout=NET_S)
    del left_a, left_b
    import gc

    gc.collect()
    await asyncio.sleep(0)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], errors


def test_the_steps_after_the_drain_fit_the_supervisor_s_grace_with_a_margin() -> None:
    # Their bounds once added up to ~31 s against the supervisor's 20 s (stop_grace_s): a slow
    # database got a stopping worker killed instead of exiting 0. A bound that grows must
    # shrink another or raise STOP_GRACE_S (docs/operations.md names them all).
    assert after_drain_s() <= STOP_GRACE_S - 3.0


def test_a_revoke_s_steps_after_its_drain_fit_the_group_s_margin_with_room_to_rejoin() -> None:
    # The group waits kafka_limits.REVOKE_MARGIN_MS past pipeline.revoke_timeout_s (and past
    # kafka.heartbeat_interval_ms, the member's delay to learn of the rebalance, accounted
    # apart) for the revoke callback and the rejoin (checked against kafka.rebalance_timeout_ms
    # at start): the steps after the drain once took up to 10 s per shard + 2 s + 5 s, and a
    # member that does not rejoin in time is dropped, its rejoin a second rebalance.
    assert after_revoke_drain_s() <= REVOKE_MARGIN_MS / 1000 - 3.0
