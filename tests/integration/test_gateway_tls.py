"""TLS listeners admit a connection at accept, before its handshake (ingest/gateway/tls_accept.py):
a socket that never starts TLS counts against its address's share at once, a failed or
timed-out handshake is counted and gives its slot back, and a login sent in the same packet
as the client's Finished is answered. (``test_gateway_tcp.py::test_tls_session``: the plain
session; ``test_gateway_open_files.py``: the same under uvloop and a low open-file limit.)"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from devtools.devstack import tls
from ingest.gateway import Gateway
from tests.conftest import run_async
from tests.integration import pipeline_support as ps
from tests.integration.gateway_support import (
    ANSWER_TIMEOUT_S,
    SHARED_DLQ,
    close,
    connect,
    login,
    read_answer,
    reply,
    running,
    sample,
    settings_for,
)

pytestmark = pytest.mark.integration

VIN = "LNEVGATE000000031"


@pytest.fixture(autouse=True)
def _shared_dlq(kafka_bootstrap: str) -> None:
    from devtools.devstack.kafka import ensure_topics

    run_async(ensure_topics(kafka_bootstrap, {SHARED_DLQ: 1}, replication_factor=1))


@pytest.fixture
def authority(tmp_path: Path) -> tuple[tls.Authority, Path, Path]:
    ca = tls.make_ca(tmp_path / "ca")
    cert, key = tls.issue_server(ca, tmp_path / "ca")
    return ca, cert, key


def _open(gw: Gateway, n: int) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return len(gw.connections) == n

    return probe


async def test_a_socket_that_never_starts_tls_counts_against_its_share_at_accept(
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    authority: tuple[tls.Authority, Path, Path],
) -> None:
    # Before, the event loop held such a socket in its handshake (60 s) before the gateway
    # saw it: uncounted, so one address opened as many as it liked.
    ca, cert, key = authority
    settings = settings_for(
        kafka_bootstrap,
        unique_topic(1, "gw"),
        tls_certfile=str(cert),
        tls_keyfile=str(key),
        max_connections_per_peer=2,
    )
    client = ssl.create_default_context(cafile=str(ca.cert))
    async with running(settings) as gw:
        port = gw.ports["vehicle"]
        bare = [
            await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0))
            for _ in range(3)
        ]
        refused = {"kind": "vehicle", "reason": "max_connections_per_peer"}

        async def one_refused() -> bool:
            return sample(gw, "nev_gateway_refused_total", **refused) == 1

        await ps.until(one_refused, timeout_s=10, what="the third bare socket refused")
        assert await asyncio.wait_for(bare[-1][0].read(), ANSWER_TIMEOUT_S) == b""
        assert len(gw.connections) == 2  # the two within the share, still in their handshake
        reader, writer = await connect(port, client)  # another address: served
        hello = login(VIN)
        writer.write(hello)
        assert await read_answer(reader) == reply(hello, 0x01)
        await close(writer, *(w for _, w in bare))


async def test_a_failed_or_timed_out_handshake_is_counted_and_gives_its_slot_back(
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    authority: tuple[tls.Authority, Path, Path],
) -> None:
    ca, cert, key = authority
    settings = settings_for(
        kafka_bootstrap,
        unique_topic(1, "gw"),
        tls_certfile=str(cert),
        tls_keyfile=str(key),
        max_connections_per_peer=1,
        login_timeout_s=0.5,  # the handshake's time counts in it
    )
    client = ssl.create_default_context(cafile=str(ca.cert))
    async with running(settings) as gw:
        port = gw.ports["vehicle"]
        # Plain GB/T 32960 on a TLS listener: the handshake fails.
        reader, writer = await connect(port)
        writer.write(login(VIN))
        assert await asyncio.wait_for(reader.read(), ANSWER_TIMEOUT_S) == b""
        await close(writer)
        failed = {"kind": "vehicle", "reason": "tls_handshake"}

        async def failed_n(n: int) -> bool:
            return sample(gw, "nev_gateway_refused_total", **failed) == n

        await ps.until(lambda: failed_n(1), timeout_s=10, what="the failed handshake counted")
        await ps.until(_open(gw, 0), timeout_s=10, what="its slot given back")
        # A socket that never starts TLS: closed when login_timeout_s is up, as any socket
        # that has not logged in by then.
        reader, writer = await connect(port)
        assert await asyncio.wait_for(reader.read(), ANSWER_TIMEOUT_S) == b""
        await close(writer)
        await ps.until(_open(gw, 0), timeout_s=10, what="the silent one's slot given back")
        timed_out = {"kind": "vehicle", "reason": "login_timeout"}
        assert sample(gw, "nev_gateway_refused_total", **timed_out) == 1
        # The address's one slot is free again: a TLS vehicle logs in.
        reader, writer = await connect(port, client)
        hello = login(VIN)
        writer.write(hello)
        assert await read_answer(reader) == reply(hello, 0x01)
        await close(writer)
        assert await failed_n(1)


async def test_a_login_sent_with_the_clients_finished_is_answered(
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    authority: tuple[tls.Authority, Path, Path],
) -> None:
    # The client's Finished and its first record leave in one packet, so the server's TLS
    # layer has the login as soon as the handshake ends, before the gateway's handshake step
    # has handed the connection over: the login must be kept, not dropped.
    ca, cert, key = authority
    settings = settings_for(
        kafka_bootstrap, unique_topic(1, "gw"), tls_certfile=str(cert), tls_keyfile=str(key)
    )
    client = ssl.create_default_context(cafile=str(ca.cert))
    hello = login(VIN, 2025)
    async with running(settings) as gw:
        reader, writer = await connect(gw.ports["vehicle"])
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls_obj = client.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")

        async def pull() -> None:
            writer.write(outgoing.read())
            data = await asyncio.wait_for(reader.read(65536), ANSWER_TIMEOUT_S)
            assert data, "the gateway closed the connection"
            incoming.write(data)

        while True:
            try:
                tls_obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                await pull()
        tls_obj.write(hello)
        writer.write(outgoing.read())  # Finished and the login, in one write
        answer = b""
        expected = reply(hello, 0x01)
        while len(answer) < len(expected):
            try:
                answer += tls_obj.read(65536)
            except ssl.SSLWantReadError:
                await pull()
        assert answer == expected
        await close(writer)
        await ps.until(_open(gw, 0), timeout_s=10, what="the connection closed")
