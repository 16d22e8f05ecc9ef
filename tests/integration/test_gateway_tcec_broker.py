"""The T/CEC 102 receiver with its broker gone: a push is answered -1 (busy) after the bounded
wait, never 0, and its (TimeStamp, Seq) is released, so the operator's resend of the very same
body is stored once the broker is back."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
import orjson
import pytest
from prometheus_client import CollectorRegistry

from ingest.pipeline import wire
from tests.integration.pipeline_support import read_topic, until
from tests.integration.private_services import PrivateKafka
from tests.integration.test_gateway_tcec import PUSHES, Rig, start_rig

pytestmark = pytest.mark.integration


def in_flight(registry: CollectorRegistry) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return registry.get_sample_value("nev_gateway_tcec_in_flight") == 1

    return probe


RESEND_ATTEMPTS = 30  # each bounded by produce_timeout_s: the producer reconnects meanwhile


async def test_broker_down_is_busy_and_the_resend_is_stored_after_recovery(
    broker: PrivateKafka,
) -> None:
    producer, server, registry, clock = await start_rig(
        broker.bootstrap, "tcec", produce_timeout_s=5.0, max_in_flight=1
    )
    interface = "notification_stationStatus"
    stopped = False
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            rig = Rig(server, session, broker.bootstrap, "tcec", clock, registry)
            token = await rig.token()
            assert (await rig.post(interface, rig.body(PUSHES[interface]), token))[0] == 0

            await asyncio.to_thread(broker.stop)
            stopped = True
            push = dict(PUSHES[interface])
            push["ConnectorStatusInfo"] = {**push["ConnectorStatusInfo"], "Status": 4}
            body = rig.body(push)
            waiting = asyncio.create_task(rig.post(interface, body, token))
            # While it waits for Kafka, with max_in_flight 1 the next request is refused
            # unread: memory stays bounded while Kafka is away; busy, never 0.
            await until(in_flight(registry), timeout_s=30, what="the push waiting for Kafka")
            ret, msg, _ = await rig.post(interface, rig.body(push), token)
            assert (ret, msg) == (-1, "system busy: retry later")
            ret, msg, _ = await waiting
            assert (ret, msg) == (-1, "Kafka did not acknowledge the push in time: retry later")
            assert rig.answered(interface, -1) == 2
            assert rig.answered(interface, 0) == 1  # nothing else was acknowledged

            await asyncio.to_thread(broker.start)
            stopped = False
            for _ in range(RESEND_ATTEMPTS):
                ret, _, _ = await rig.post(interface, body, token)
                if ret == 0:
                    break
                assert ret == -1  # busy while the producer reconnects; never a replay refusal
            assert ret == 0
            records = await read_topic(broker.bootstrap, "tcec", expect=2)
            statuses = [orjson.loads(r.value)["ConnectorStatusInfo"]["Status"] for r in records]
            # The busy attempts may still have reached the log (aiokafka keeps a batch it
            # already accepted): at least once, never lost.
            assert statuses[0] == 3 and 4 in statuses
            assert all(wire.header(r.headers, wire.TCEC_OPERATOR_ID) for r in records)
    finally:
        await server.close()
        if stopped:
            await asyncio.to_thread(broker.start)  # else stop() flushes to no one, forever
        await producer.stop()
