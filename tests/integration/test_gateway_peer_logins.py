"""Failed platform logins are limited per peer address across connections (issue 16): a guesser
that reconnects after each ``max_login_failures`` close is refused, even with the right
password, once its address passes ``peer_login_failures``; over TLS with a real client."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

from devtools.devstack import tls
from ingest.gateway.accounts import set_password
from tests.integration.gateway_support import (
    close,
    connect,
    platform_login,
    read_answer,
    reply,
    running,
    settings_for,
)

pytestmark = pytest.mark.integration


async def test_a_peer_over_its_failed_login_limit_is_refused_on_new_connections(
    kafka_bootstrap: str, unique_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = unique_topic(1, "gw")
    accounts = tmp_path / "accounts.toml"
    set_password(accounts, "oem1", "right-password")
    ca = tls.make_ca(tmp_path / "ca")
    cert, key = tls.issue_server(ca, tmp_path / "ca")
    settings = settings_for(
        kafka_bootstrap,
        topic,
        accounts_file=str(accounts),
        tls_certfile=str(cert),
        tls_keyfile=str(key),
        max_login_failures=2,
        peer_login_failures=3,
    )
    client = ssl.create_default_context(cafile=str(ca.cert))
    good, bad = platform_login("oem1", "right-password"), platform_login("oem1", "guess")
    async with running(settings) as gw:
        port = gw.ports["vehicle"]
        # Control: the right password logs in while the address is clean.
        reader, writer = await connect(port, client)
        writer.write(good)
        assert await read_answer(reader) == reply(good, 0x01)
        await close(writer)
        # Two guesses close the connection (per connection) ...
        reader, writer = await connect(port, client)
        writer.write(bad + bad)
        assert [await read_answer(reader), await read_answer(reader)] == [reply(bad, 0x02)] * 2
        assert await reader.read() == b""
        await close(writer)
        # ... a reconnect gets one more (3 for the address), then even the right one fails.
        reader, writer = await connect(port, client)
        writer.write(bad)
        assert await read_answer(reader) == reply(bad, 0x02)
        writer.write(good)
        assert await read_answer(reader) == reply(good, 0x02)
        await close(writer)
