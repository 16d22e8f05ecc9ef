"""A refusal is logged once per peer and reason per ``gateway.log_interval_s``, a peer as the
limits count it: an IPv6 peer by its /64 (``ingest.gateway.peers.peer_key``). Before, the log
gate was keyed by the full address: 1,000 connections from one /64 over
``max_connections_per_peer`` were 997 WARNING lines."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pytest

from ingest.config import Settings
from ingest.config.gateway_settings import GatewaySettings
from ingest.gateway import Gateway, GatewayMetrics
from ingest.gateway.connection import Connection

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


def _gateway(share: int) -> Gateway:
    config = dataclasses.replace(GatewaySettings(), max_connections_per_peer=share)
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
