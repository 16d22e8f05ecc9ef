"""A refusal is logged once per peer and reason per ``gateway.log_interval_s``, a peer as the
limits count it: an IPv6 peer by its /64 (``ingest.gateway.peers.peer_key``). Before, the log
gate was keyed by the full address: 1,000 connections from one /64 over
``max_connections_per_peer`` were 997 WARNING lines. And the lines of all peers together are
bounded (``gateway.log_lines``): one host may own thousands of /64s."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pytest

from ingest.config import Settings
from ingest.config.gateway_settings import GatewaySettings
from ingest.gateway import Gateway, GatewayMetrics
from ingest.gateway.connection import Connection
from ingest.gateway.limits import LogGate
from ingest.gateway.log_budget import BudgetedLog

pytestmark = pytest.mark.unit


class _Socket:
    """The little of a transport that accepting a connection uses: its peer, and abort."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.aborted = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return (self.host, 40000, 0, 0) if name == "peername" else default

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.aborted = True


def _gateway(share: int, **settings: Any) -> Gateway:
    config = dataclasses.replace(GatewaySettings(), max_connections_per_peer=share, **settings)
    gw = Gateway(Settings(gateway=config), metrics=GatewayMetrics())
    gw.ready = True  # accepting, without listeners or Kafka: only admit() runs
    return gw


def _accept(gw: Gateway, host: str) -> bool:
    conn = Connection(gw, "vehicle")
    conn.connection_made(_Socket(host))  # type: ignore[arg-type]
    return not conn.closed


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    reason = "max_connections_per_peer"
    return [r.getMessage() for r in caplog.records if getattr(r, "reason", "") == reason]


def test_refusals_from_one_ipv6_64_are_one_line_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gw = _gateway(share=3)
    with caplog.at_level(logging.WARNING, logger="ingest.gateway"):
        admitted = sum(_accept(gw, f"2001:db8:0:1::{i:x}") for i in range(1, 1001))
    assert admitted == 3
    refused = {"kind": "vehicle", "reason": "max_connections_per_peer"}
    assert gw.metrics.registry.get_sample_value("nev_gateway_refused_total", refused) == 997
    assert _lines(caplog) == ["max_connections_per_peer: 3 connections open from 2001:db8:0:1::/64"]


def test_other_peers_are_logged_on_their_own(caplog: pytest.LogCaptureFixture) -> None:
    gw = _gateway(share=1)
    with caplog.at_level(logging.WARNING, logger="ingest.gateway"):
        for host in ("2001:db8:0:1::1", "2001:db8:0:1::2", "2001:db8:0:2::1", "2001:db8:0:2::2"):
            _accept(gw, host)
        for host in ("192.0.2.1", "192.0.2.1", "192.0.2.2", "192.0.2.2"):
            _accept(gw, host)
    assert len(_lines(caplog)) == 4  # two /64s, two IPv4 addresses: one line each


async def test_refusals_of_many_peers_are_bounded_in_all(caplog: pytest.LogCaptureFixture) -> None:
    # One host cycling the /64s of its /48, each connection sending garbage: each /64 is a peer
    # of its own to the log gate, so each connection was a WARNING line. At most log_lines get
    # through per log_interval_s (an hour here, so that the test's pace cannot matter), then one
    # line at the gateway's stop says how many were held back; every refusal is counted.
    gw = _gateway(share=1, log_interval_s=3600.0, log_lines=20)
    garbage = b"\0" * (gw.config.max_garbage_bytes + 1)
    with caplog.at_level(logging.WARNING, logger="ingest.gateway"):
        for i in range(5000):
            conn = Connection(gw, "vehicle")
            conn.connection_made(_Socket(f"2001:db8:0:{i:x}::1"))  # type: ignore[arg-type]
            conn.data_received(garbage)
            assert conn.closed
        lines = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert [getattr(r, "reason", "") for r in lines] == ["garbage"] * 20
        await gw.stop()
    refused = {"kind": "vehicle", "reason": "garbage"}
    assert gw.metrics.registry.get_sample_value("nev_gateway_refused_total", refused) == 5000
    lines = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in lines[20:]] == [
        "TCP listeners: suppressed 4980 refusal lines from 4980 peers (at most 20 lines per "
        "3600 s; the metrics count every refusal)"
    ]
    assert lines[0].__dict__["peer"] == "2001:db8:0:0::1:40000"


def test_the_budgets_summary_counts_the_lines_a_held_back_line_stood_for(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # 50 connections of one peer sending garbage in one interval: one line, 49 held back by the
    # gate per peer. Its first line of the next interval says held_back=49; when the budget of
    # all peers holds that line back, the summary must count the 50 refusals it stood for, not 1.
    now = [0.0]
    gw = _gateway(share=100, log_interval_s=10.0, log_lines=1)
    gw.log_gate = LogGate(10.0, clock=lambda: now[0])
    gw.refusal_log = BudgetedLog(
        logging.getLogger("ingest.gateway.connection"), "TCP listeners", 1, 10.0, lambda: now[0]
    )
    garbage = b"\0" * (gw.config.max_garbage_bytes + 1)

    def refuse(host: str) -> None:
        conn = Connection(gw, "vehicle")
        conn.connection_made(_Socket(host))  # type: ignore[arg-type]
        conn.data_received(garbage)
        assert conn.closed

    with caplog.at_level(logging.WARNING, logger="ingest.gateway"):
        for _ in range(50):
            refuse("192.0.2.1")
        now[0] = 11.0
        refuse("192.0.2.2")  # takes the next interval's budget
        refuse("192.0.2.1")  # carries held_back=49: held back by the budget
        gw.refusal_log.close()
    lines = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [getattr(r, "held_back", None) for r in lines[:2]] == [0, 0]
    assert (
        lines[2].getMessage().startswith("TCP listeners: suppressed 50 refusal lines from 1 peers")
    ), lines[2].getMessage()
