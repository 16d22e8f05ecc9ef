"""``gateway.nat64_prefixes``: an operator's own NAT64 / SIIT prefixes (RFC 6052's
network-specific prefixes). A peer address in one counts as the IPv4 client it embeds, for the
per-peer limit and the refusal log. Before, only the well-known 64:ff9b::/96 was unwrapped:
every IPv4 client behind an operator's translator was one /64, one share for all of them."""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

import pytest

from ingest.config import Settings
from ingest.config.gateway_settings import GatewaySettings
from ingest.config.load import load_settings
from ingest.errors import UserError
from ingest.gateway import Gateway, GatewayMetrics
from ingest.gateway.connection import Connection
from ingest.gateway.peers import peer_key

pytestmark = pytest.mark.unit


def _load(prefixes: str) -> Settings:
    return load_settings(environ={"NEV_GATEWAY_NAT64_PREFIXES": prefixes})


def test_prefixes_are_read_comma_separated() -> None:
    settings = _load("2001:db8:64::/96, 2001:db9::/32")
    assert settings.gateway.nat64_prefixes == ("2001:db8:64::/96", "2001:db9::/32")
    assert GatewaySettings().nat64_prefixes == ()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "2001:db8::/80",
            "'2001:db8::/80' is a /80; RFC 6052 places the IPv4 address only behind a /32, "
            "/40, /48, /56, /64 or /96 prefix: give your translator's prefix",
        ),
        (
            "192.0.2.0/24",
            "'192.0.2.0/24' is not an IPv6 prefix; give e.g. 2001:db8:64::/96 (RFC 6052: /32, "
            "/40, /48, /56, /64 or /96)",
        ),
        (
            "2001:db8:64::",
            "'2001:db8:64::' has no length; give the translator's prefix with it, e.g. "
            "2001:db8:64::/96 (RFC 6052: /32, /40, /48, /56, /64 or /96)",
        ),
        ("2001:db8::1/96", "'2001:db8::1/96' has bits set after its /96; write 2001:db8::/96"),
        (
            "2001:db8::/32,2001:db8:1::/96",
            "'2001:db8:1::/96' overlaps 2001:db8::/32; list each translator's prefix once",
        ),
    ],
)
def test_a_bad_prefix_is_refused_at_load_with_one_line(value: str, message: str) -> None:
    with pytest.raises(UserError) as refused:
        _load(value)
    assert str(refused.value).endswith(message), refused.value
    assert str(refused.value).startswith("gateway.nat64_prefixes: ")
    assert "\n" not in str(refused.value)


# RFC 6052 section 2.4's table: 192.0.2.33 behind a prefix of each length.
@pytest.mark.parametrize(
    ("prefix", "address"),
    [
        ("2001:db8::/32", "2001:db8:c000:221::"),
        ("2001:db8:100::/40", "2001:db8:1c0:2:21::"),
        ("2001:db8:122::/48", "2001:db8:122:c000:2:2100::"),
        ("2001:db8:122:300::/56", "2001:db8:122:3c0:0:221::"),
        ("2001:db8:122:344::/64", "2001:db8:122:344:c0:2:2100:0"),
        ("2001:db8:122:344::/96", "2001:db8:122:344::192.0.2.33"),
    ],
)
def test_an_address_in_a_configured_prefix_keys_as_its_ipv4_address(
    prefix: str, address: str
) -> None:
    nets = (ipaddress.IPv6Network(prefix),)
    assert peer_key(address, nets) == "192.0.2.33"
    assert peer_key(address) == str(ipaddress.IPv6Network((address, 64), strict=False))


def test_a_configured_prefix_inside_the_local_use_one_is_unwrapped() -> None:
    # RFC 8215's 64:ff9b:1::/48 is counted address by address unless its layout is named.
    address = "64:ff9b:1:abcd::c000:221"
    assert peer_key(address) == address
    assert peer_key(address, (ipaddress.IPv6Network("64:ff9b:1:abcd::/96"),)) == "192.0.2.33"


class _Socket:
    """The little of a transport that accepting a connection uses: its peer, and abort."""

    def __init__(self, host: str) -> None:
        self.host = host

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return (self.host, 40000, 0, 0) if name == "peername" else default

    def abort(self) -> None:
        pass


def test_the_gateway_counts_a_translated_client_by_its_ipv4_address() -> None:
    config = dataclasses.replace(
        GatewaySettings(), max_connections_per_peer=1, nat64_prefixes=("2001:db8:64::/96",)
    )
    gw = Gateway(Settings(gateway=config), metrics=GatewayMetrics())
    gw.ready = True  # accepting, without listeners or Kafka: only admit() runs

    def accept(host: str) -> Connection:
        conn = Connection(gw, "vehicle")
        conn.connection_made(_Socket(host))  # type: ignore[arg-type]
        return conn

    # Two IPv4 clients behind the translator: two peers (before: one /64, the second refused).
    first, second = accept("2001:db8:64::192.0.2.33"), accept("2001:db8:64::198.51.100.7")
    assert (first.host_key, second.host_key) == ("192.0.2.33", "198.51.100.7")
    assert not first.closed and not second.closed
    assert accept("2001:db8:64::192.0.2.33").closed  # the same client again: over its share
