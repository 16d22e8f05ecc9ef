"""``gateway.nat64_prefixes``: the IPv6 prefixes of an operator's own NAT64 / SIIT translators
(RFC 6052's network-specific prefixes), read once for the load-time check and the gateway.

RFC 6052 places the IPv4 address behind a prefix of 32, 40, 48, 56, 64 or 96 bits (skipping
bits 64..71): any other length has no place for it, so it is refused, not guessed at.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Final

from ingest.errors import UserError

__all__ = ["NAT64_LENGTHS", "nat64_networks"]

NAT64_LENGTHS: Final = (32, 40, 48, 56, 64, 96)
_LENGTHS_TEXT: Final = "/32, /40, /48, /56, /64 or /96"


def nat64_networks(key: str, prefixes: Sequence[str]) -> tuple[ipaddress.IPv6Network, ...]:
    """The prefixes as networks, or a one-line ``UserError`` naming ``key`` and the prefix: not
    an IPv6 prefix, a length RFC 6052 does not define, bits set after the length, or two
    prefixes that overlap (an address in both would have two IPv4 addresses)."""
    out: list[ipaddress.IPv6Network] = []
    for given in prefixes:
        text = given.strip()
        try:
            if "%" in text:  # a zone (fe80::%eth0) names a link, not a translator's prefix
                raise ValueError(text)
            net = ipaddress.IPv6Network(text, strict=False)
        except ValueError:
            raise UserError(
                f"{key}: {text!r} is not an IPv6 prefix; give e.g. 2001:db8:64::/96 "
                f"(RFC 6052: {_LENGTHS_TEXT})"
            ) from None
        if "/" not in text:
            raise UserError(
                f"{key}: {text!r} has no length; give the translator's prefix with it, e.g. "
                f"{text}/96 (RFC 6052: {_LENGTHS_TEXT})"
            )
        if net.prefixlen not in NAT64_LENGTHS:
            raise UserError(
                f"{key}: {text!r} is a /{net.prefixlen}; RFC 6052 places the IPv4 address "
                f"only behind a {_LENGTHS_TEXT} prefix: give your translator's prefix"
            )
        if ipaddress.IPv6Address(text.split("/", 1)[0]) != net.network_address:
            # 2001:db8::1/96: a typo or an address, not a prefix; say which prefix it means.
            raise UserError(f"{key}: {text!r} has bits set after its /{net.prefixlen}; write {net}")
        for other in out:
            if net.overlaps(other):
                raise UserError(
                    f"{key}: {text!r} overlaps {other}; list each translator's prefix once"
                )
        out.append(net)
    return tuple(out)
