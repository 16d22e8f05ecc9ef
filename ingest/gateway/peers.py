"""Open connections per peer address, so that one address cannot hold every connection slot.

Shared by the TCP listeners (``gateway.max_connections_per_peer``) and the T/CEC receiver
(``tcec.max_connections_per_peer``). An IPv6 peer is counted by its /64: one host commonly
has a whole /64 to pick source addresses from, so counting single addresses would let it
open a slot per address. Addresses shared by many honest clients (carrier-grade NAT, an OEM's
private APN, an enterprise platform, a TLS-terminating proxy) are one peer too: the limit is
a setting, and docs/gateway.md says when to raise it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Final

__all__ = ["PeerCounts", "embedded_ipv4", "peer_key"]

# IPv4 clients reaching an IPv6 listener through a stateless translator (SIIT, RFC 7915) or
# NAT64 show up with their IPv4 address embedded in one of these prefixes: each such address
# is one IPv4 client, so a whole /64 of them is not one peer.
# RFC 6052's well-known prefix: a /96, the IPv4 address in the last 32 bits.
_NAT64_WELL_KNOWN: Final = ipaddress.IPv6Network("64:ff9b::/96")
# RFC 8215's local-use prefix: a translator may use any RFC 6052 prefix length inside it
# (/48 to /96), which places the IPv4 bits differently and cannot be told from the address,
# so each address is counted as one peer (a translator maps one IPv4 client to one address),
# unless the operator names its translator's prefix (gateway.nat64_prefixes).
_NAT64_LOCAL_USE: Final = ipaddress.IPv6Network("64:ff9b:1::/48")


def embedded_ipv4(addr: ipaddress.IPv6Address, prefix: ipaddress.IPv6Network) -> str:
    """The IPv4 address RFC 6052 (section 2.2) embeds in ``addr`` behind ``prefix`` (a /32,
    /40, /48, /56, /64 or /96): right after the prefix, its bits 64..71 (the "u" octet)
    skipped; behind a /96, the last 32 bits."""
    raw = addr.packed
    if prefix.prefixlen == 96:
        return str(ipaddress.IPv4Address(raw[12:]))
    at = prefix.prefixlen // 8
    skipped = raw[:8] + raw[9:]  # without the u octet: the IPv4 bytes follow the prefix
    return str(ipaddress.IPv4Address(skipped[at : at + 4]))


def peer_key(host: str, nat64: Sequence[ipaddress.IPv6Network] = ()) -> str:
    """The address a peer is counted under: an IPv4 address (an IPv4-mapped IPv6 one, and one
    in a ``nat64`` prefix or NAT64's well-known one, as its IPv4 address), one in NAT64's
    local-use prefix as itself, the /64 of any other IPv6 address, anything else (a Unix
    socket) as given. ``nat64``: the operator's translators' prefixes
    (``gateway.nat64_prefixes``)."""
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])  # "%eth0": a link-local's zone
    except ValueError:
        return host
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        for prefix in nat64:
            if addr in prefix:
                return embedded_ipv4(addr, prefix)
        if addr in _NAT64_WELL_KNOWN:
            return embedded_ipv4(addr, _NAT64_WELL_KNOWN)
        if addr in _NAT64_LOCAL_USE:
            return str(addr)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


class PeerCounts:
    """Connections open per peer key; a key's entry is dropped at zero (memory is bounded by
    the connections open, never by the addresses seen)."""

    __slots__ = ("_open",)

    def __init__(self) -> None:
        self._open: dict[str, int] = {}

    def take(self, key: str, limit: int) -> bool:
        """Count one more connection of ``key``, or False (nothing counted) at ``limit``."""
        n = self._open.get(key, 0)
        if n >= limit:
            return False
        self._open[key] = n + 1
        return True

    def give_back(self, key: str) -> None:
        n = self._open.get(key, 0) - 1
        if n > 0:
            self._open[key] = n
        else:
            self._open.pop(key, None)

    def __getitem__(self, key: str) -> int:
        return self._open.get(key, 0)
