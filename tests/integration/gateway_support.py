"""Helpers of the gateway's integration tests: an in-process ``Gateway`` with a real aiokafka
producer on a real broker, real TCP clients on loopback, and GB/T 32960 frames built with the
simulators' envelope (an independent writer of the bytes the gateway must answer with)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from devtools.sim.envelope import frame
from ingest.config import KafkaSettings, Settings
from ingest.config.gateway_settings import GatewaySettings
from ingest.decoders.commands.session import PlatformLogin, encode_platform_login
from ingest.gateway import Gateway, GatewayMetrics

T = bytes((26, 12, 6, 15, 30, 45))  # the frames' collection time
ANSWER_TIMEOUT_S = 30.0  # a bound on a hang, not a speed assertion


# The dead-letter topic of the tests on the shared broker (created by their autouse fixture).
SHARED_DLQ = "gateway-test-dlq"


def settings_for(kafka: str, topic: str, dlq: str = SHARED_DLQ, **gateway: Any) -> Settings:
    base = {"listen_vehicle": "127.0.0.1:0", "gateway_id": "gw-test", **gateway}
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=kafka, topic_vehicle=topic, topic_dlq=dlq),
        gateway=dataclasses.replace(GatewaySettings(), **base),
    )


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Gateway]:
    gw = Gateway(settings, metrics=GatewayMetrics())
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


def login(vin: str, edition: int = 2016, seq: int = 1) -> bytes:
    if edition == 2016:
        body = T + seq.to_bytes(2, "big") + b"89860000000000000001" + b"\x01\x00"
    else:
        body = T + seq.to_bytes(2, "big") + b"89860000000000000001" + b"\x00"
    return frame(edition, 0x01, vin, body)


def realtime(vin: str, edition: int = 2016, n: int = 0) -> bytes:
    # a custom information block (0x80..0xFE carry a WORD length): any payload size
    return frame(edition, 0x02, vin, T + b"\xc0" + (4).to_bytes(2, "big") + n.to_bytes(4, "big"))


def platform_login(user: str, password: str, edition: int = 2016) -> bytes:
    body = T + encode_platform_login(PlatformLogin(1, user, password, 0x01))
    return frame(edition, 0x05, "PLATFORM01", body)


def reply(request: bytes, flag: int, unit: bytes | None = None) -> bytes:
    """The answer the standard calls for, built independently of ingest.gateway.answers."""
    edition = 2016 if request[:2] == b"##" else 2025
    ident = request[4:21].rstrip(b"\0").decode()
    return frame(edition, request[2], ident, T if unit is None else unit, response=flag)


async def connect(
    port: int, tls: ssl.SSLContext | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, ssl=tls)


async def read_answer(reader: asyncio.StreamReader) -> bytes:
    """One whole answer frame (header, N, unit, BCC)."""
    head = await asyncio.wait_for(reader.readexactly(24), ANSWER_TIMEOUT_S)
    n = head[22] << 8 | head[23]
    return head + await asyncio.wait_for(reader.readexactly(n + 1), ANSWER_TIMEOUT_S)


def sample(gw: Gateway, name: str, **labels: str) -> float:
    value = gw.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def close(*writers: asyncio.StreamWriter) -> None:
    """Close client connections (the gateway may have closed them already)."""
    for writer in writers:
        writer.close()
        # closed by the gateway first: what some tests assert
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()
