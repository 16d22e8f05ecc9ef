"""The T/CEC receiver's per-peer bookkeeping (token slots, log gate), its one-line reason of
a malformed request, and its connection gate's refusal lines: a first request that is not HTTP
at DEBUG, the WARNING lines of all peers within a budget."""

from __future__ import annotations

import asyncio
import ipaddress
import logging

import pytest
from aiohttp.http_exceptions import BadHttpMessage, BadHttpMethod, LineTooLong
from prometheus_client import CollectorRegistry

from ingest.gateway.limits import LogBudget
from ingest.gateway.tcec.http_errors import ConnectionLog, describe
from ingest.gateway.tcec.metrics import TcecMetrics
from ingest.gateway.tcec.peer_limits import PeerLog, TokenSlots
from ingest.gateway.tcec.site import ConnectionGate
from tests.unit.log_support import line_seen

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
        ConnectionLog(lambda exc, _: taken.append(exc)).warning("peer %s went away", "10.0.0.1")
    assert [r.getMessage() for r in caplog.records] == ["peer 10.0.0.1 went away"]
    assert taken == []


def test_a_log_budget_lets_n_lines_through_per_interval_for_all_peers() -> None:
    now = [0.0]
    budget = LogBudget(2, 10.0, clock=lambda: now[0])
    assert [budget.take(p) for p in ("a", "b", "c", "c", "d")] == [True, True, False, False, False]
    assert budget.ends_in() == 10.0
    assert budget.held() == (3, 2)  # lines, distinct peers
    assert budget.held() == (0, 0)  # handed over once
    now[0] = 10.0
    assert [budget.take(p) for p in ("e", "f", "g")] == [True, True, False]
    assert budget.held() == (1, 1)


async def test_the_gates_warnings_from_many_64s_are_bounded_in_all(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # One host cycling the /64s of its /48: each /64 is a peer of its own to the per-peer log
    # gate, so each malformed request was a WARNING line. Every one is counted; at most
    # LOG_LINES lines get through per 10 s, then one line says how many were held back.
    now = [0.0]
    registry = CollectorRegistry()
    gate = ConnectionGate(10, 10, TcecMetrics(registry), clock=lambda: now[0])
    bad = BadHttpMessage("Invalid header token")
    peers = [f"2001:db8:0:{i:x}::/64" for i in range(5000)]
    site_log = "ingest.gateway.tcec.site"

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]

    with line_seen(site_log, "refusal lines from") as reported:
        try:
            with caplog.at_level(logging.DEBUG, logger=site_log):
                for peer in peers[:20]:
                    gate.bad_request(peer, bad)
                now[0] = 9.99  # the rest within the same 10 s: the held-back line is due in 0.01 s
                for peer in peers[20:]:
                    gate.bad_request(peer, bad)
                assert len(warnings()) == 20, len(warnings())
                await asyncio.wait_for(reported.wait(), 30)  # the gate's timer, on this loop
                assert warnings()[20].startswith(
                    "T/CEC 102 connections: suppressed 4980 refusal lines from 4980 peers"
                ), warnings()[20:]
                now[0] = 10.0  # the next 10 s: lines get through again
                gate.bad_request("2001:db8:1::/64", bad)
        finally:
            gate.close()  # nothing held back since: no line (and no timer left on the loop)
    assert len(warnings()) == 22, warnings()[20:]
    assert "2001:db8:1::/64" in warnings()[21]
    name = "nev_gateway_tcec_connections_refused_total"
    assert registry.get_sample_value(name, {"reason": "bad_request"}) == 5001


async def test_a_first_request_that_is_not_http_is_counted_apart_and_logged_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # aiohttp's own judgement (a bad method in a connection's first request: TLS, an SSH
    # banner) comes through ConnectionLog.debug; anything else through .exception.
    registry = CollectorRegistry()
    gate = ConnectionGate(10, 10, TcecMetrics(registry))
    log = ConnectionLog(lambda exc, not_http: gate.bad_request("192.0.2.1", exc, not_http))
    with caplog.at_level(logging.DEBUG, logger="ingest.gateway.tcec.site"):
        log.debug("Error handling request from %s", "192.0.2.1", exc_info=BadHttpMethod("\x16"))
        log.exception("Error handling request", exc_info=BadHttpMessage("Bad header"))
        gate.close()
    levels = [(r.levelname, r.getMessage().split(" (")[0]) for r in caplog.records]
    assert levels == [
        ("DEBUG", "T/CEC 102 connection from 192.0.2.1 closed: not HTTP, answered 400"),
        (
            "WARNING",
            "T/CEC 102 connection from 192.0.2.1 closed: malformed HTTP request, answered 400",
        ),
    ], levels
    name = "nev_gateway_tcec_connections_refused_total"
    assert registry.get_sample_value(name, {"reason": "not_http"}) == 1
    assert registry.get_sample_value(name, {"reason": "bad_request"}) == 1


def test_the_gates_summary_counts_the_lines_a_held_back_line_stood_for(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # One peer's 50 malformed requests in 10 s: one line, 49 held back by the gate per peer.
    # Its first line of the next 10 s carries them ("suppressed 49"); held back by the budget
    # of all peers (20 lines, taken by other peers), it must count as 50 in the summary.
    now = [0.0]
    gate = ConnectionGate(10, 10, TcecMetrics(CollectorRegistry()), clock=lambda: now[0])
    bad = BadHttpMessage("Invalid header token")
    with caplog.at_level(logging.WARNING, logger="ingest.gateway.tcec.site"):
        for _ in range(50):
            gate.bad_request("192.0.2.1", bad)
        now[0] = 10.0
        for i in range(20):
            gate.bad_request(f"2001:db8:0:{i:x}::/64", bad)
        gate.bad_request("192.0.2.1", bad)
        gate.close()
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 22, lines
    assert lines[21].startswith(
        "T/CEC 102 connections: suppressed 50 refusal lines from 1 peers"
    ), lines[21]
