"""Failed platform logins per peer address, across its connections (issue 16).

``gateway.max_login_failures`` closes one connection after a few wrong passwords, but a guesser
simply reconnects; this guard counts a peer host's failures over a sliding window and, past
``gateway.peer_login_failures``, refuses that host's further logins without running scrypt (so
guessing also stops costing the gateway CPU) until old failures leave the window. A correct
password does not reset the count: a guesser that also holds one account must not launder its
failures with it.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Final

__all__ = ["PeerLoginGuard"]

# Peers remembered at most (least recently failing dropped first): bounds memory under a
# spray of source addresses; each entry holds at most `limit` timestamps.
MAX_PEERS: Final = 100_000


class PeerLoginGuard:
    """Sliding-window count of failed logins per peer host."""

    def __init__(self, limit: int, window_s: float, max_peers: int = MAX_PEERS) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_peers = max_peers
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def blocked(self, host: str, now: float) -> bool:
        """Whether ``host`` has failed ``limit`` logins within the window ending at ``now``."""
        stamps = self._failures.get(host)
        if stamps is None:
            return False
        while stamps and stamps[0] <= now - self.window_s:
            stamps.popleft()
        if not stamps:
            del self._failures[host]
            return False
        return len(stamps) >= self.limit

    def failed(self, host: str, now: float) -> None:
        """Count one failed login of ``host`` at ``now``."""
        stamps = self._failures.pop(host, None) or deque(maxlen=self.limit)
        stamps.append(now)
        self._failures[host] = stamps  # most recent last
        while len(self._failures) > self.max_peers:
            self._failures.popitem(last=False)
