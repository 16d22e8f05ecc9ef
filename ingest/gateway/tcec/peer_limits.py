"""The receiver's bookkeeping by peer: its refusal log gate and its query_token slots.

Both key a peer as ``ingest.gateway.peers.peer_key`` does for the TCP listeners: an IPv6 host
by its /64 (one host commonly owns a whole /64 and picks source addresses from it, so keying by
the full address let it rotate addresses past the per-peer limit and the log gate), an
IPv4-mapped or NAT64 address by its IPv4 address (also in the operator's own prefixes,
``gateway.nat64_prefixes``). Callers pass ``request.remote`` as it is.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Sequence

from ingest.gateway.peers import PeerCounts, peer_key
from ingest.pipeline.logs import RateLimiter

__all__ = ["PeerLog", "TokenSlots"]


class PeerLog:
    """One log line per peer and reason per ``interval_s``; ``allow`` returns the count held
    back since the last line, or None to hold this one back (the metrics count every one)."""

    def __init__(
        self,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        nat64: Sequence[ipaddress.IPv6Network] = (),
    ) -> None:
        self._limiter = RateLimiter(interval_s, clock=clock)
        self._nat64 = tuple(nat64)

    def allow(self, remote: str | None, reason: str) -> int | None:
        return self._limiter.allow(f"{self.key(remote)} {reason}")

    def key(self, remote: str | None) -> str:
        """``remote``'s peer, as this gate counts it."""
        return peer_key(remote or "", self._nat64)


class TokenSlots:
    """query_token requests in hand: at most ``total``, and at most ``per_peer`` of one peer
    (0: no per-peer limit, as behind a proxy, where every request has the proxy's address)."""

    def __init__(
        self, total: int, per_peer: int, nat64: Sequence[ipaddress.IPv6Network] = ()
    ) -> None:
        self.total = total
        self.per_peer = per_peer
        self._nat64 = tuple(nat64)
        self.held = 0
        self._peers = PeerCounts()

    def take(self, remote: str | None) -> bool:
        """Count one more request of ``remote``'s peer, or False (nothing counted) when full."""
        if self.held >= self.total:
            return False
        key = peer_key(remote or "", self._nat64)
        if self.per_peer and not self._peers.take(key, self.per_peer):
            return False
        self.held += 1
        return True

    def give_back(self, remote: str | None) -> None:
        self.held -= 1
        if self.per_peer:
            self._peers.give_back(peer_key(remote or "", self._nat64))
