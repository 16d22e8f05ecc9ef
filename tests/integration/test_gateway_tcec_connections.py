"""The T/CEC 102 receiver's connections as the operator sees them: the gauge of open ones, and
malformed HTTP requests (refused by aiohttp's parser before any handler runs) counted and
logged as one line per peer, not a traceback per request."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from tests.integration.pipeline_support import until
from tests.integration.test_gateway_tcec import start_rig

pytestmark = pytest.mark.integration


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def test_the_connections_gauge_follows_opens_and_closes(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    # Two from 127.0.0.2 admitted and a third refused at accept (not counted as open), one from
    # 127.0.0.1; closing them brings the gauge back to 0.
    producer, server, registry, _ = await start_rig(
        kafka_bootstrap, unique_topic(partitions=1), max_connections_per_peer=2
    )
    writers: list[asyncio.StreamWriter] = []
    try:

        async def gauge_is(n: float) -> bool:
            return _sample(registry, "nev_gateway_tcec_connections") == n

        for local in ("127.0.0.2", "127.0.0.2", "127.0.0.2", "127.0.0.1"):
            _, writer = await asyncio.open_connection(
                "127.0.0.1", server.port, local_addr=(local, 0)
            )
            writers.append(writer)

        async def three_open() -> bool:
            refused = _sample(
                registry,
                "nev_gateway_tcec_connections_refused_total",
                reason="max_connections_per_peer",
            )
            return refused == 1 and await gauge_is(3)

        await until(three_open, timeout_s=30, what="three connections open, one refused")
        writers.pop().close()
        await until(lambda: gauge_is(2), timeout_s=30, what="two connections open")
        while writers:
            writers.pop().close()
        await until(lambda: gauge_is(0), timeout_s=30, what="no connection open")
    finally:
        for writer in writers:
            writer.close()
        await server.close()
        await producer.stop()
