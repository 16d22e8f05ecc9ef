"""Failed platform logins per peer address, across its connections (issue 16).

``gateway.max_login_failures`` closes one connection after a few wrong passwords, but a guesser
simply reconnects; this guard counts a peer host's failures over a sliding window and, past
``gateway.peer_login_failures``, refuses that host's further logins without running scrypt (so
guessing also stops costing the gateway CPU) until old failures leave the window. A correct
password does not reset the count: a guesser that also holds one account must not launder its
failures with it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from typing import Final

__all__ = ["HostTurns", "PeerLoginGuard"]

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


class HostTurns:
    """One password check at a time per peer host.

    ``PeerLoginGuard.blocked`` is asked before a check and ``failed`` told after it; checks of
    one host running at once would all pass the first and only then count, so 60 logins sent
    together from one address ran 60 scrypt checks against a limit of 10, and pinned the
    cores. In turn, each check sees the failures of the ones before it. A platform opening many
    connections at once logs them in one after the other (a check is tens of milliseconds).
    Memory: one lock per host with a check running or waiting.
    """

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def turn(self, host: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(host, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[host] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[host]
            if users == 1:
                del self._locks[host]
            else:
                self._locks[host] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)
