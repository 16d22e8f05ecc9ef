"""The T/CEC receiver's per-peer bookkeeping (token slots, log gate) and its one-line reason of
a malformed request."""

from __future__ import annotations

import ipaddress
import logging

import pytest
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

from ingest.gateway.tcec.http_errors import ConnectionLog, describe
from ingest.gateway.tcec.peer_limits import PeerLog, TokenSlots

pytestmark = pytest.mark.unit


def test_token_slots_count_a_64_and_a_mapped_ipv4_as_one_peer_and_give_back() -> None:
    slots = TokenSlots(total=3, per_peer=1)
    assert slots.take("2001:db8::1")
    assert not slots.take("2001:db8::2")  # the same /64
    assert slots.take("10.0.0.1")
    assert not slots.take("::ffff:10.0.0.1")  # the same IPv4 client
    assert slots.take("2001:db8:0:1::1")
    assert not slots.take("192.0.2.1")  # all 3 slots held
    slots.give_back("2001:db8::1")
    assert slots.take("2001:db8::3")
    assert slots.held == 3


def test_an_operators_nat64_prefix_counts_each_translated_client_apart() -> None:
    # gateway.nat64_prefixes: behind the operator's translator every client has an address of
    # one /64; counted by /64 they would all be one peer, refused past the first's share.
    nat64 = (ipaddress.IPv6Network("2001:db8:64::/96"),)
    slots = TokenSlots(total=3, per_peer=1, nat64=nat64)
    assert slots.take("2001:db8:64::c000:221")  # 192.0.2.33
    assert slots.take("2001:db8:64::c000:222")  # 192.0.2.34: another client
    assert not slots.take("192.0.2.33")  # the first one again, untranslated
    gate = PeerLog(10.0, nat64=nat64)
    assert gate.allow("2001:db8:64::c000:221", "Ret 4002") == 0
    assert gate.allow("2001:db8:64::c000:222", "Ret 4002") == 0
    assert gate.allow("192.0.2.33", "Ret 4002") is None


def test_token_slots_without_a_per_peer_limit_count_the_total_only() -> None:
    slots = TokenSlots(total=2, per_peer=0)
    assert slots.take("2001:db8::1") and slots.take("2001:db8::1")
    assert not slots.take("192.0.2.1")


def test_peer_log_lets_one_line_per_peer_and_reason_per_interval() -> None:
    now = [0.0]
    gate = PeerLog(10.0, clock=lambda: now[0])
    assert gate.allow("2001:db8::1", "Ret 4002") == 0
    assert gate.allow("2001:db8::abcd", "Ret 4002") is None  # same /64, held back
    assert gate.allow("2001:db8::1", "Ret 4003") == 0  # another reason
    assert gate.allow("2001:db8:0:1::1", "Ret 4002") == 0  # another /64
    now[0] = 11.0
    assert gate.allow("2001:db8::2", "Ret 4002") == 1  # with the count held back


def test_describe_is_one_short_printable_line() -> None:
    text = describe(BadHttpMessage("Invalid header token:\n\n  b'Bad\\x00Header'\n     ^"))
    assert text == "BadHttpMessage: Invalid header token:"
    long = describe(LineTooLong("a\x1b" * 100, "8190"))
    assert "\n" not in long and "\x1b" not in long and len(long) < 120, long


def test_a_connection_log_record_it_does_not_take_reaches_aiohttps_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # aiohttp may call more than debug/exception on a connection's logger in a later version:
    # such a record must reach aiohttp's logger (and the service's handlers), not stderr alone.
    taken: list[object] = []
    with caplog.at_level(logging.WARNING, logger="aiohttp.server"):
        ConnectionLog(taken.append).warning("peer %s went away", "10.0.0.1")
    assert [r.getMessage() for r in caplog.records] == ["peer 10.0.0.1 went away"]
    assert taken == []
