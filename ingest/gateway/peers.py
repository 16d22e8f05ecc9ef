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
from typing import Final

__all__ = ["PeerCounts", "peer_key"]

# IPv4 clients reaching an IPv6 listener through a stateless translator (SIIT, RFC 7915) or
# NAT64 show up with their IPv4 address embedded in one of these prefixes: each such address
# is one IPv4 client, so a whole /64 of them is not one peer.
# RFC 6052's well-known prefix: a /96, the IPv4 address in the last 32 bits.
_NAT64_WELL_KNOWN: Final = ipaddress.IPv6Network("64:ff9b::/96")
# RFC 8215's local-use prefix: a translator may use any RFC 6052 prefix length inside it
# (/48 to /96), which places the IPv4 bits differently and cannot be told from the address,
# so each address is counted as one peer (a translator maps one IPv4 client to one address).
_NAT64_LOCAL_USE: Final = ipaddress.IPv6Network("64:ff9b:1::/48")


def peer_key(host: str) -> str:
    """The address a peer is counted under: an IPv4 address (an IPv4-mapped IPv6 one, and one
    in NAT64's well-known prefix, as its IPv4 address), one in NAT64's local-use prefix as
    itself, the /64 of any other IPv6 address, anything else (a Unix socket) as given."""
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])  # "%eth0": a link-local's zone
    except ValueError:
        return host
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        if addr in _NAT64_WELL_KNOWN:
            return str(ipaddress.IPv4Address(int(addr) & 0xFFFF_FFFF))
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
