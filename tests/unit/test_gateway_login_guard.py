"""The gateway's per-peer failed-login guard: a peer over its limit is blocked until its old
failures leave the window, other peers are not, and memory stays bounded."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from ingest.config import Settings
from ingest.config.gateway_settings import GatewaySettings
from ingest.gateway import Gateway, server
from ingest.gateway.connection import Connection
from ingest.gateway.login_guard import PeerLoginGuard
from ingest.gateway.session import Decision

pytestmark = pytest.mark.unit


def test_a_peer_is_blocked_after_its_limit_until_the_window_passes() -> None:
    guard = PeerLoginGuard(limit=3, window_s=60)
    for t in (0.0, 1.0):
        guard.failed("10.0.0.1", t)
    assert not guard.blocked("10.0.0.1", 2.0)
    guard.failed("10.0.0.1", 2.0)
    assert guard.blocked("10.0.0.1", 3.0)
    assert not guard.blocked("10.0.0.2", 3.0)  # another address is not affected
    assert guard.blocked("10.0.0.1", 59.9)
    assert not guard.blocked("10.0.0.1", 60.5)  # the failure at 0 s left the window


def test_memory_is_bounded_by_peers_and_by_the_limit() -> None:
    guard = PeerLoginGuard(limit=2, window_s=60, max_peers=3)
    guard.failed("10.0.0.0", 0.0)
    guard.failed("10.0.0.0", 0.5)
    assert guard.blocked("10.0.0.0", 1.0)
    for i in range(1, 10):
        guard.failed(f"10.0.0.{i}", float(i))
    assert not guard.blocked("10.0.0.0", 10.0)  # evicted, least recently failing
    assert len(guard._failures) == 3
    for t in range(100):
        guard.failed("10.0.1.1", 20.0 + t / 1000)
    assert guard.blocked("10.0.1.1", 21.0)
    assert len(guard._failures["10.0.1.1"]) == 2  # at most `limit` stamps a peer


async def test_checks_of_one_host_take_turns_so_each_sees_the_failures_before_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 60 platform logins sent at once from one address, limit 10: without turns all 60
    # passed the guard before the first failure was counted, and 60 scrypt checks ran.
    checks: list[str] = []
    running = threading.Lock()

    def verify(password: str, stored: str) -> bool:  # scrypt's stand-in, in the thread
        assert running.acquire(blocking=False), "two checks of one host at once"
        try:
            checks.append(password)
            time.sleep(0.01)
            return False
        finally:
            running.release()

    monkeypatch.setattr(server, "verify_password", verify)
    gw = Gateway(Settings(gateway=GatewaySettings(peer_login_failures=10)), producer=object())
    guesses = [gw.check_password("oem", f"guess{i}", "10.0.0.1") for i in range(60)]
    assert not any(await asyncio.gather(*guesses))
    assert len(checks) == 10  # the limit, then refused unchecked
    assert await gw.check_password("oem", "other", "10.0.0.2") is False  # its own count
    assert len(checks) == 11
    assert len(gw._login_turns) == 0  # no lock left behind


class _Socket:
    """The little of a transport a connection's platform login uses."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.written: list[bytes] = []

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return (self.host, 40000, 0, 0) if name == "peername" else default

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def abort(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def test_a_connection_counts_its_failed_logins_under_its_peer_not_its_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An IPv6 host owns its /64: keyed by the full address, each new source address of the
    # same /64 got fresh guesses (each a real scrypt check) past peer_login_failures.
    checks: list[str] = []

    def verify(password: str, stored: str) -> bool:
        checks.append(password)
        return False

    monkeypatch.setattr(server, "verify_password", verify)
    gw = Gateway(Settings(gateway=GatewaySettings(peer_login_failures=3)), producer=object())
    gw.ready = True
    frame = b"##\x05\xfe" + b"PLATFORM01".ljust(17, b"\0") + b"\x01\x00\x00\x00"
    for i in range(1, 7):
        conn = Connection(gw, "vehicle")
        conn.connection_made(_Socket(f"2001:db8::{i}"))  # type: ignore[arg-type]
        guess = Decision("verify", "platform_login", user="oem", password=f"guess{i}")
        await conn._verify(frame, guess)
    assert checks == ["guess1", "guess2", "guess3"]  # then refused unchecked: one peer
    assert gw.login_guard.blocked("2001:db8::/64", time.monotonic())
