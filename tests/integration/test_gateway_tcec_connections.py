"""The T/CEC 102 receiver's connections as the operator sees them: the gauge of open ones,
malformed HTTP requests (refused by aiohttp's parser before any handler runs) counted and
logged as one line per peer, not a traceback per request, connections that do not speak HTTP
at all (scanners) counted apart and logged at DEBUG only, and a body that goes bad while it is
read answered at the read timeout."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from ingest.gateway.tcec.tokens import TokenIssuer
from tests.integration.pipeline_support import until
from tests.integration.test_gateway_tcec import OP, start_rig

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


# Each is refused by aiohttp's parser: a header line that is no header, a header line and a
# request target over 8190 bytes (HTTP spoken badly: a client to look into).
MALFORMED = (
    b"POST /evcs/v1.0/query_token HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"POST /evcs/v1.0/query_token HTTP/1.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
    b"POST /evcs/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
)
# A connection's first bytes that are not HTTP at all (to aiohttp: a bad method in the first
# request), what internet scanners send to any open port: TLS to this plain-HTTP port, an SSH
# banner, garbage.
NOT_HTTP = (
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
    b"SSH-2.0-OpenSSH_8.9\r\n",
    b"GARBAGE\r\n\r\n",
)


async def _refused_400(port: int, raw: bytes, local: str = "127.0.0.1") -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(local, 0))
    writer.write(raw)
    answer = await asyncio.wait_for(reader.read(), 30)  # a bound on a hang only
    writer.close()
    assert answer.startswith(b"HTTP/1.0 400 "), answer[:40]


async def test_malformed_requests_are_counted_and_logged_once_per_peer_without_traceback(
    kafka_bootstrap: str, unique_topic: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiohttp")
    caplog.set_level(logging.WARNING, logger="ingest")
    producer, server, registry, _ = await start_rig(kafka_bootstrap, unique_topic(partitions=1))
    rounds = 4
    try:
        for _ in range(rounds):
            for raw in MALFORMED:
                await _refused_400(server.port, raw)

        async def all_counted() -> bool:
            n = _sample(
                registry, "nev_gateway_tcec_connections_refused_total", reason="bad_request"
            )
            return n == rounds * len(MALFORMED)

        await until(all_counted, timeout_s=30, what="every malformed request counted")
    finally:
        await server.close()
        await producer.stop()
    # 12 malformed requests from one peer: one line (the others held back, counted above),
    # saying why, with no traceback; nothing from aiohttp's loggers above DEBUG.
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.name for r in lines] == ["ingest.gateway.tcec.site"], [r.name for r in lines]
    assert lines[0].exc_info is None
    message = lines[0].getMessage()
    assert "127.0.0.1" in message and "malformed HTTP request" in message, message
    assert "\n" not in message and len(message) < 300, message
    assert not [r for r in caplog.records if r.name.startswith("aiohttp") and r.exc_info], [
        r.getMessage() for r in caplog.records if r.name.startswith("aiohttp")
    ]


async def test_scanners_not_speaking_http_are_counted_apart_and_logged_at_debug_only(
    kafka_bootstrap: str, unique_topic: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    # aiohttp logs these at DEBUG (RequestHandler.handle_error): on a public port they are
    # every scanner passing by. A WARNING for each new peer made them the log's bulk.
    caplog.set_level(logging.DEBUG, logger="aiohttp")
    caplog.set_level(logging.DEBUG, logger="ingest.gateway.tcec.site")
    producer, server, registry, _ = await start_rig(kafka_bootstrap, unique_topic(partitions=1))
    peers = ("127.0.0.2", "127.0.0.3")
    try:
        for raw in NOT_HTTP:
            for local in peers:
                await _refused_400(server.port, raw, local)

        async def all_counted() -> bool:
            n = _sample(registry, "nev_gateway_tcec_connections_refused_total", reason="not_http")
            return n == len(NOT_HTTP) * len(peers)

        await until(all_counted, timeout_s=30, what="every connection that is not HTTP counted")
    finally:
        await server.close()
        await producer.stop()
    assert not _sample(registry, "nev_gateway_tcec_connections_refused_total", reason="bad_request")
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert loud == [], loud
    said = [r.getMessage() for r in caplog.records if r.name == "ingest.gateway.tcec.site"]
    assert len(said) == len(NOT_HTTP) * len(peers), said
    assert all("closed: not HTTP, answered 400 (BadHttpMethod: " in m for m in said), said


async def test_a_body_malformed_after_the_headers_is_answered_4003_at_the_read_timeout(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    # docs/gateway.md: a chunked body that goes bad once the handler is reading it is not a
    # request aiohttp's parser refuses (no 400, not counted as bad_request): aiohttp keeps the
    # error for after the running request, the handler never gets the body and answers Ret
    # 4003 when tcec.read_timeout_s is over. Kept here so that a change of aiohttp's there
    # shows, and the docs with it. (The test takes some 10 s: aiohttp's lingering_time for
    # the unread body, which server.close waits out.)
    producer, server, registry, clock = await start_rig(
        kafka_bootstrap, unique_topic(partitions=1), read_timeout_s=0.5
    )
    token, _ = TokenIssuer(b"test-key", 7200).issue(OP.operator_id, clock())
    interface = "notification_stationStatus"
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            f"POST /evcs/v1.0/{interface} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )

        async def reading_the_body() -> bool:
            return _sample(registry, "nev_gateway_tcec_in_flight") == 1

        await until(reading_the_body, timeout_s=30, what="the handler reading the body")
        writer.write(b"ZZZ\r\nabc\r\n0\r\n\r\n")  # a chunk size that is no number
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)  # a bound on a hang
        assert head.startswith(b"HTTP/1.1 200 OK"), head
        size = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        said = await asyncio.wait_for(reader.readexactly(size), 30)
        assert b'"Ret":4003' in said and b"the body did not arrive within 0.5 s" in said, said
        writer.close()
    finally:
        await server.close()
        await producer.stop()
    assert (
        _sample(registry, "nev_gateway_tcec_requests_total", interface=interface, ret="4003") == 1
    )
    assert not _sample(registry, "nev_gateway_tcec_connections_refused_total", reason="bad_request")
