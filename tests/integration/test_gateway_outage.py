"""Broker down mid-session: the gateway stops reading sockets once its in-flight budget is
full (TCP pushes back on the sender), answers nothing Kafka has not acknowledged, and once the
broker is back every frame is on the topic and the answers come. Uses a private broker."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from devtools.sim.envelope import frame
from ingest.gateway import Gateway
from tests.integration import pipeline_support as ps
from tests.integration.gateway_support import (
    T,
    close,
    connect,
    login,
    read_answer,
    realtime,
    reply,
    running,
    sample,
    settings_for,
)
from tests.integration.private_services import PrivateKafka

pytestmark = pytest.mark.integration

VIN = "LNEVGATE000000009"
BUDGET = 8  # frames in flight before the gateway stops reading


async def test_broker_down_pauses_reading_and_loses_nothing(broker: PrivateKafka) -> None:
    settings = settings_for(broker.bootstrap, "veh", "dlq", max_in_flight_frames=BUDGET)
    async with running(settings) as gw:
        reader, writer = await connect(gw.ports["vehicle"])
        writer.write(login(VIN))
        assert await read_answer(reader) == reply(login(VIN), 0x01)

        await asyncio.to_thread(broker.stop)
        frames = [realtime(VIN, 2016, i) for i in range(40)]
        heartbeat = frame(2016, 0x07, VIN, b"")
        # Written without waiting for drain: what the gateway does not read stays in the
        # socket buffers (40 small frames fit), the sender is not lost track of.
        writer.write(b"".join(frames[:20]) + heartbeat + b"".join(frames[20:]))

        async def paused() -> bool:
            return gw.dispatcher.budget.full and all("budget" in c.paused for c in gw.connections)

        await ps.until(paused, timeout_s=60, what="reading paused on a full budget")
        # Nothing was answered that Kafka has not acknowledged, and what was read is bounded.
        assert _answered(gw, "heartbeat") == 0
        assert BUDGET <= gw.dispatcher.budget.frames < BUDGET + len(frames) + 1
        assert sample(gw, "nev_gateway_refused_total", kind="vehicle", reason="backpressure") >= 1

        await ps.until(
            lambda: _not_ready(gw), timeout_s=120, what="/readyz false while Kafka is away"
        )
        await asyncio.to_thread(broker.start)
        assert await read_answer(reader) == reply(heartbeat, 0x01, b"")
        records = await ps.read_topic(broker.bootstrap, "veh", expect=len(frames) + 2)
        got = Counter(r.value for r in records)
        # Nothing lost (a frame re-sent after a failed delivery may be there twice).
        assert all(got[f] >= 1 for f in (login(VIN), heartbeat, *frames))
        await ps.until(lambda: _drained(gw), timeout_s=60, what="in-flight budget empty")
        assert sample(gw, "nev_gateway_backpressure_seconds_total") > 0
        assert gw.readiness()[0] and sample(gw, "nev_gateway_kafka_connected") == 1
        # reading resumed: a new frame is read and answered
        logout = frame(2016, 0x04, VIN, T + b"\x00\x01")
        writer.write(logout)
        assert await read_answer(reader) == reply(logout, 0x01)
        await close(writer)


def _answered(gw: Gateway, command: str) -> float:
    return sample(
        gw, "nev_gateway_answers_total", kind="vehicle", command=command, result="success"
    )


async def _drained(gw: Gateway) -> bool:
    return gw.dispatcher.budget.frames == 0 and not any(c.paused for c in gw.connections)


async def _not_ready(gw: Gateway) -> bool:
    return not gw.readiness()[0] and sample(gw, "nev_gateway_kafka_connected") == 0
