"""Per-peer connection counting (``ingest.gateway.peers``) and the open-file limit against the
connection limits (``ingest.gateway.fds``, in a subprocess: it changes the process's limit)."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from ingest.gateway.fds import peer_cap
from ingest.gateway.peers import PeerCounts, peer_key

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),  # a dual-stack listener's IPv4 peer
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),  # the same /64: the same peer
        ("fe80::1%eth0", "fe80::/64"),
        # IPv4 clients through a NAT64 / SIIT translator: each its own peer, not one /64.
        ("64:ff9b::c000:207", "192.0.2.7"),  # RFC 6052's well-known prefix: its IPv4 address
        ("64:ff9b::192.0.2.8", "192.0.2.8"),
        ("64:ff9b::1:c000:207", "64:ff9b::/64"),  # in the /64 but not the /96: not a client
        ("64:ff9b:1::c000:207", "64:ff9b:1::c000:207"),  # RFC 8215 local use: the address
        ("64:ff9b:1:c000:2:700::", "64:ff9b:1:c000:2:700::"),  # ... whatever its layout
        ("/run/gw.sock", "/run/gw.sock"),
    ],
)
def test_peer_key(host: str, key: str) -> None:
    assert peer_key(host) == key


def test_peer_counts_hold_a_limit_and_forget_at_zero() -> None:
    peers = PeerCounts()
    assert peers.take("a", 2) and peers.take("a", 2)
    assert not peers.take("a", 2) and peers["a"] == 2  # a refusal counts nothing
    assert peers.take("b", 2)
    peers.give_back("a")
    assert peers.take("a", 2)
    for _ in range(2):
        peers.give_back("a")
    peers.give_back("b")
    assert peers._open == {}  # memory bounded by the connections open


def _cap(soft: int, hard: int, max_connections: int, other: int = 0) -> str:
    code = (
        "import logging, resource, sys\n"
        "logging.basicConfig(level=logging.WARNING, format='%(message)s')\n"
        "from ingest.errors import UserError\n"
        "from ingest.gateway.fds import connection_cap\n"
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard}))\n"
        "try:\n"
        f"    print(connection_cap({max_connections}, {other}),\n"
        "          resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
        "except UserError as exc:\n"
        "    print('UserError:', exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout + done.stderr


def test_the_soft_limit_is_raised_to_the_hard_one() -> None:
    out = _cap(200, 400, 100)
    assert out.split() == ["100", "400"]


def test_a_short_limit_holds_fewer_connections_and_says_what_to_set() -> None:
    out = _cap(256, 256, 200_000, 32)
    lines = out.splitlines()
    assert lines[0] == "96 256"  # 256 - 128 reserved - 32 of the T/CEC receiver
    assert lines[1].startswith("the open-file limit is 256 (hard limit 256)")
    assert "raise the limit" in lines[1] and "holding at most 96 connections" in lines[1]


def test_a_limit_too_short_for_one_connection_is_a_one_line_error() -> None:
    out = _cap(256, 256, 200_000, 4096)
    assert out.startswith("UserError: the open-file limit is 256")
    assert "tcec.max_connections = 4096" in out and len(out.splitlines()) == 1


@pytest.mark.parametrize(
    ("per_peer", "max_connections", "held", "share"),
    [
        (1_000, 200_000, 200_000, 1_000),  # descriptors enough: the setting
        (1_000, 200_000, 1_500, 150),  # cut to 1,500: a tenth, not 1,000 (two took all)
        (100, 200_000, 1_500, 100),  # a setting within the tenth is kept
        (1_000, 200_000, 5, 1),  # at least one
        (10_000_000, 200_000, 1_500, 1_500),  # turned off (>= max_connections) stays off
        (200_000, 200_000, 1_500, 1_500),
    ],
)
def test_the_per_peer_share_shrinks_with_the_connections_the_descriptors_allow(
    per_peer: int, max_connections: int, held: int, share: int
) -> None:
    assert peer_cap(per_peer, max_connections, held) == share


def test_a_shrunk_share_is_logged_with_its_reason(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ingest.gateway.fds"):
        peer_cap(1_000, 200_000, 1_500)
    assert [r.getMessage() for r in caplog.records] == [
        "gateway.max_connections_per_peer = 1000 is more than 10% of the 1500 connections the "
        "open-file limit lets the listeners hold: one address holds at most 150 until the "
        "limit is raised, so that a few cannot take every connection"
    ]
