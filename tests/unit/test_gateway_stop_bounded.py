"""The gateway's way out is bounded like the worker's (ingest.pipeline.closing): a producer whose
stop, or a replacement whose start, swallows its cancellation and waits on is left behind with
one WARNING, and the end of its event loop does not wait for a task that outlives its
cancellation. ``ProducerPool`` used ``asyncio.wait_for`` (cancel at the bound, then wait on) and
awaited a cancelled replacement without a bound; ``uvloop.run`` waits for every task left.

The producers are stand-ins shaped like aiokafka's closes that swallow a cancellation (its
fetcher and client ``close``): a real broker cannot be made to do that on cue. The stop with a
real broker that hangs is tests/integration/test_pipeline_stop_bounded.py's."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import sys
import textwrap

import pytest

from ingest.gateway.renewal import ProducerPool
from ingest.pipeline.closing import CLIENTS_S, left_behind

pytestmark = pytest.mark.unit

# A safety net against a hang (a regression fails instead of holding the suite), far above the
# bounds under test; nothing here asserts how fast anything is.
NET_S = 30.0


class _Producer:
    """``stop`` (or ``start``, when ``stuck_start``) uses up its cancellation and waits on."""

    def __init__(self, release: asyncio.Event, *, stuck_start: bool = False) -> None:
        self.release = release
        self.stuck_start = stuck_start
        self.entered = asyncio.Event()

    async def _stuck(self) -> None:
        self.entered.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
        await self.release.wait()

    async def start(self) -> None:
        if self.stuck_start:
            await self._stuck()

    async def stop(self) -> None:
        if not self.stuck_start:
            await self._stuck()


@pytest.mark.parametrize("stuck", ["stop", "replacement"])
async def test_a_producer_that_will_not_stop_or_start_is_left_behind_at_the_bound(
    stuck: str, caplog: pytest.LogCaptureFixture
) -> None:
    release = asyncio.Event()
    current = _Producer(release)
    fresh = _Producer(release, stuck_start=True)
    pool = ProducerPool(current, lambda: fresh)
    if stuck == "replacement":
        pool.broken(current)  # a batch failed after numbering: a new producer starts
        await fresh.entered.wait()
    caplog.set_level(logging.WARNING)
    closing = asyncio.ensure_future(pool.close())
    left: list[asyncio.Task[object]] = []
    try:
        done, _ = await asyncio.wait({closing}, timeout=NET_S)
        assert done, "the pool's close waited for a producer that swallowed its cancellation"
        await closing
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        want = (
            f"a Kafka producer did not close within {CLIENTS_S:g}s: left behind, the gateway "
            "does not wait for it (nothing is lost"
        )
        assert any(w.startswith(want) for w in warnings), warnings
        if stuck == "replacement":
            want = (
                f"the Kafka producer's replacement did not end within {CLIENTS_S:g}s of its "
                "cancellation: left behind, the gateway does not wait for it"
            )
            assert want in warnings, warnings
    finally:
        left += left_behind()
        release.set()
        await asyncio.wait({closing, *left}, timeout=NET_S)


def test_the_gateway_s_loop_end_does_not_wait_for_a_task_that_outlives_its_cancellation() -> None:
    # run_gateway itself, its serving replaced by a run that leaves such a task behind.
    script = textwrap.dedent(
        """
        import asyncio, contextlib, logging, sys
        import ingest.cli.gateway as cli
        from ingest.config import Settings

        logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(message)s")

        async def stubborn() -> None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()
            await asyncio.Event().wait()  # for ever, cancelled once already

        async def serve(settings, extra) -> int:
            asyncio.ensure_future(stubborn()).set_name("stubborn")
            await asyncio.sleep(0)
            return 0

        cli._serve = serve
        print("exit", cli.run_gateway(Settings()))
        """
    )
    try:
        run = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=NET_S
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"the gateway's exit waited for the task: {exc.stdout!r}") from None
    assert run.returncode == 0, run.stderr
    out = run.stdout.splitlines()
    assert out[-1:] == ["exit 0"], run.stdout
    (warning,) = [line for line in out if "did not end" in line]
    assert "1 tasks" in warning and "stubborn" in warning
