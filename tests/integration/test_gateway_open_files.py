"""``nev-ingest gateway run`` under an open-file limit smaller than its connection limits: one
address flooding it with connections gets its share and no more, the rest counted and logged,
and a genuine vehicle still logs in and /metrics still answers. The share is a tenth of the
connections the descriptors allow (``ingest.gateway.fds.peer_cap``), not the default
``gateway.max_connections_per_peer`` of 1,000, which is more than they allow in all. Before,
the flood took every descriptor: accept() failed, new connections got a TCP reset with nothing
logged or counted, and /metrics timed out. With TLS on, the same flood of connections that
never start their handshake: before, the event loop held each for its handshake timeout (60 s)
before the gateway saw it, uncounted, so the share was never applied and the vehicle got a
reset."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

from devtools.devstack import tls
from devtools.sim import promtext
from tests.integration import pipeline_support as ps
from tests.integration.gateway_support import (
    GatewayProcess,
    close,
    connect,
    login,
    read_answer,
    reply,
    serving_gateway,
)

pytestmark = pytest.mark.integration

VIN = "LNEVGATE000000077"
NOFILE = 256  # soft and hard: the gateway cannot raise it
FLOOD = 300  # more than NOFILE
HELD = 96  # 256 - 128 reserved - 32 of the T/CEC receiver
SHARE = HELD // 10  # gateway.max_connections_per_peer is left at its 1,000


@pytest.mark.parametrize("with_tls", [False, True], ids=["tcp", "tls"])
async def test_a_flood_from_one_address_under_a_low_open_file_limit(
    kafka_bootstrap: str, unique_topic: Callable[..., str], tmp_path: Path, with_tls: bool
) -> None:
    log = tmp_path / "gateway.log"
    env = {"NEV_TCEC_MAX_CONNECTIONS": "32"}  # counted against the 256 descriptors too
    client: ssl.SSLContext | None = None
    if with_tls:
        ca = tls.make_ca(tmp_path / "ca")
        cert, key = tls.issue_server(ca, tmp_path / "ca")
        env |= {"NEV_GATEWAY_TLS_CERTFILE": str(cert), "NEV_GATEWAY_TLS_KEYFILE": str(key)}
        client = ssl.create_default_context(cafile=str(ca.cert))
    async with serving_gateway(
        kafka_bootstrap,
        vehicle=unique_topic(1, "gw"),
        dlq=unique_topic(1, "dlq"),
        tcec=unique_topic(1, "tcec"),
        log=log,
        env=env,
        nofile=NOFILE,
    ) as gw:
        # 256 descriptors cannot hold max_connections = 200,000: it says so and holds fewer.
        text = await asyncio.to_thread(log.read_text)
        assert "the open-file limit is 256 (hard limit 256)" in text, text
        assert f"one address holds at most {SHARE} until the limit is raised" in text, text
        writers: list[asyncio.StreamWriter] = []
        try:
            # Bare TCP connections that send nothing (with TLS on: never a ClientHello).
            for _ in range(FLOOD):
                with contextlib.suppress(ConnectionError):  # refused ones may be reset at once
                    _, writer = await asyncio.open_connection(
                        "127.0.0.1", gw.port, local_addr=("127.0.0.2", 0)
                    )
                    writers.append(writer)

            async def all_but_its_share_refused() -> bool:
                return await _refused(gw) == FLOOD - SHARE

            await ps.until(
                all_but_its_share_refused, timeout_s=60, what="the flood over its share refused"
            )
            reader, writer = await connect(gw.port, client)
            hello = login(VIN)
            writer.write(hello)
            assert await read_answer(reader) == reply(hello, 0x01)
            await close(writer)
        finally:
            for writer in writers:
                writer.close()
    text = await asyncio.to_thread(log.read_text)
    assert "max_connections_per_peer" in text  # logged (once per interval)


async def _refused(gw: GatewayProcess) -> float:
    samples = await asyncio.to_thread(promtext.scrape, gw.metrics_port)
    return promtext.total(
        samples, "nev_gateway_refused_total", kind="vehicle", reason="max_connections_per_peer"
    )
