"""A real gateway (every listener on loopback, a real producer on the shared broker) whose way
out meets a stalled part stops within the bound its code states (``stop_s`` less the loop's
end, which ``run_gateway`` adds): an extra server whose stop swallows its cancellation and
waits on, or a task of its own that does. On main both held ``Gateway.stop`` for ever (the
extra servers' stops and the cancelled tasks were awaited without a bound)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import pytest

from ingest.gateway import Gateway, GatewayMetrics
from ingest.gateway.kinds import KINDS
from ingest.gateway.server import TASKS_S, extra_stop_s, stop_s
from ingest.pipeline.closing import LOOP_END_S, left_behind
from tests.conftest import run_async
from tests.integration.gateway_support import (
    SHARED_DLQ,
    close,
    connect,
    login,
    read_answer,
    reply,
    settings_for,
)

pytestmark = pytest.mark.integration

VIN = "LNEVGATE000000077"
SHUTDOWN_S = 1.0  # gateway.shutdown_timeout_s: small, so that the test is short
NET_S = 120.0  # a safety net against a hang, far above the bound under test


@pytest.fixture(autouse=True)
def _shared_dlq(kafka_bootstrap: str) -> None:
    from devtools.devstack.kafka import ensure_topics

    run_async(ensure_topics(kafka_bootstrap, {SHARED_DLQ: 1}, replication_factor=1))


async def _stuck(entered: asyncio.Event, release: asyncio.Event) -> None:
    """Uses up its cancellation (as aiokafka's closes do) and waits on until released."""
    entered.set()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.Event().wait()
    await release.wait()


class _StuckExtra:
    """An extra server whose stop never ends (a stalled HTTP server or broker)."""

    def __init__(self, release: asyncio.Event) -> None:
        self.release = release
        self.entered = asyncio.Event()

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        await _stuck(self.entered, self.release)


@pytest.mark.parametrize("stalled", ["extra server", "task"])
async def test_the_stop_ends_within_its_stated_bound_whatever_stalls(
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    stalled: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    listen = {f"listen_{kind}": "127.0.0.1:0" for kind in KINDS}
    settings = settings_for(
        kafka_bootstrap, unique_topic(1, "gwstop"), shutdown_timeout_s=SHUTDOWN_S, **listen
    )
    release = asyncio.Event()
    extra = _StuckExtra(release)
    gw = Gateway(
        settings,
        metrics=GatewayMetrics(),
        extra_servers=[extra] if stalled == "extra server" else [],
    )
    await gw.start()
    assert set(gw.ports) == set(KINDS)
    entered = asyncio.Event()
    if stalled == "task":
        # One of the gateway's own tasks that outlives its cancellation.
        gw._tasks.append(asyncio.create_task(_stuck(entered, release), name="stubborn"))
    reader, writer = await connect(gw.ports["vehicle"])
    writer.write(login(VIN))
    assert await read_answer(reader) == reply(login(VIN), 0x01)
    caplog.set_level(logging.WARNING)
    stopping = asyncio.ensure_future(gw.stop())
    bound = stop_s(SHUTDOWN_S) - LOOP_END_S
    try:
        done, _ = await asyncio.wait({stopping}, timeout=bound)
        assert done, f"Gateway.stop did not end within its stated bound ({bound:g}s)"
        await stopping
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        if stalled == "extra server":
            want = (
                f"the extra server _StuckExtra did not stop within "
                f"{extra_stop_s(SHUTDOWN_S):g}s: left behind, the gateway does not wait for it"
            )
        else:
            want = (
                f"the stubborn task did not end within {TASKS_S:g}s of its cancellation: "
                "left behind, the gateway does not wait for it"
            )
        assert any(w.startswith(want) for w in warnings), warnings
    finally:
        left = left_behind()
        release.set()
        await asyncio.wait({stopping, *left}, timeout=NET_S)
        await close(writer)
