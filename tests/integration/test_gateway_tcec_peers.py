"""The T/CEC 102 receiver keys a peer as the TCP gateway does (``peers.peer_key``): an IPv6
host by its /64, an IPv4-mapped address by its IPv4 address. A test on ::1 cannot come from
two addresses of one /64, so the receiver here runs behind a middleware that sets each
request's ``remote`` from a test header (what a proxy's X-Forwarded-For handling does):
the receiver's own handler then sees those addresses where it keys its limits and logs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from ingest.gateway.tcec import TcecParams, TcecServer
from ingest.gateway.tcec import server as tcec_server
from ingest.gateway.tcec.metrics import TcecMetrics
from ingest.gateway.tcec.server import make_app
from tests.integration.pipeline_support import until
from tests.integration.test_gateway_tcec import OP, OTHER, PUSHES, Clock, Rig

pytestmark = pytest.mark.integration

_REMOTE = "X-Test-Remote"


@web.middleware
async def _as_remote(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    remote = request.headers.get(_REMOTE)
    return await handler(request.clone(remote=remote) if remote else request)


@pytest.fixture
async def rig(kafka_bootstrap: str, unique_topic: Callable[..., str]) -> AsyncIterator[Rig]:
    async with _running(kafka_bootstrap, unique_topic) as running:
        yield running


@contextlib.asynccontextmanager
async def _running(kafka_bootstrap: str, unique_topic: Callable[..., str]) -> AsyncIterator[Rig]:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    topic = unique_topic(partitions=1)
    clock, registry = Clock(), CollectorRegistry()
    params = TcecParams(
        host="127.0.0.1",
        port=0,
        path_prefix="/evcs",
        topic=topic,
        operators={OP.operator_id: OP, OTHER.operator_id: OTHER},
        token_key=b"test-key",
        token_requests_per_peer=1,
        clock=clock,
    )
    app = make_app(params, producer, TcecMetrics(registry))
    app.middlewares.append(_as_remote)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = TcecServer(runner, "127.0.0.1", runner.addresses[0][1], "/evcs")
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            yield Rig(server, session, kafka_bootstrap, topic, clock, registry)
    finally:
        await server.close()
        await producer.stop()


async def _ret(rig: Rig, interface: str, body: bytes, remote: str) -> int:
    url = f"{rig.server.url()}/{interface}"
    async with rig.session.post(url, data=body, headers={_REMOTE: remote}) as resp:
        assert resp.status == 200
        ret: int = orjson.loads(await resp.read())["Ret"]
        return ret


def _token_body(rig: Rig) -> bytes:
    return rig.body({"OperatorID": OP.operator_id, "OperatorSecret": OP.operator_secret})


async def test_token_requests_per_peer_count_an_ipv6_64_as_one_peer(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # tcec.token_requests_per_peer = 1. 2001:db8::1 holds its slot (headers sent, the body
    # never): 2001:db8::2, the same host's /64, is busy (-1); 2001:db8:0:1::1 is another peer.
    monkeypatch.setattr(tcec_server, "_TOKEN_READ_TIMEOUT_S", 60.0)
    _, writer = await asyncio.open_connection("127.0.0.1", rig.server.port)
    try:
        writer.write(
            b"POST /evcs/v1.0/query_token HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
            + f"{_REMOTE}: 2001:db8::1\r\n\r\n".encode()
        )

        async def same_64_busy() -> bool:
            return await _ret(rig, "query_token", _token_body(rig), "2001:db8::2") == -1

        await until(same_64_busy, timeout_s=30, what="2001:db8::2 busy while ::1 holds the slot")
        assert await _ret(rig, "query_token", _token_body(rig), "2001:db8:0:1::1") == 0
    finally:
        writer.close()


async def test_refusals_are_logged_once_per_peer_a_64_or_a_mapped_ipv4(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=tcec_server.log.name)
    interface = "notification_stationStatus"
    peers = ("2001:db8::1", "2001:db8::2", "2001:db8::ffff:1", "10.1.2.3", "::ffff:10.1.2.3")
    for remote in peers:  # no token: Ret 4002, each answered and counted
        assert await _ret(rig, interface, rig.body(PUSHES[interface]), remote) == 4002
    lines = [r.getMessage() for r in caplog.records if r.name == tcec_server.log.name]
    assert len(lines) == 2, lines  # one for 2001:db8::/64, one for 10.1.2.3
    assert rig.answered(interface, 4002) == len(peers)


async def test_refusal_lines_of_many_peers_are_bounded_in_all(
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # One host cycling the /64s of its /48: each /64 is a peer of its own to the gate per
    # peer, so each refused request was a WARNING line. At most 20 get through per interval
    # (an hour here, so that the test's pace cannot matter), then one line when the receiver
    # stops says how many were held back; every request is answered and counted.
    monkeypatch.setattr(tcec_server, "LOG_INTERVAL_S", 3600.0)
    caplog.set_level(logging.WARNING, logger=tcec_server.log.name)
    interface = "notification_stationStatus"
    peers = [f"2001:db8:0:{i:x}::1" for i in range(2000)]

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == tcec_server.log.name]

    async with _running(kafka_bootstrap, unique_topic) as rig:
        body = rig.body(PUSHES[interface])
        for start in range(0, len(peers), 50):  # no token: Ret 4002, 50 requests at a time
            batch = peers[start : start + 50]
            rets = await asyncio.gather(*(_ret(rig, interface, body, p) for p in batch))
            assert rets == [4002] * len(batch)
        assert rig.answered(interface, 4002) == len(peers)
        assert len(lines()) == 20, lines()[20:23]
        await rig.server.close()
        assert lines()[20:] == [
            "T/CEC 102 requests: suppressed 1980 refusal lines from 1980 peers (at most 20 "
            "lines per 3600 s; the metrics count every refusal)"
        ]
