"""Small bookkeeping for the gateway's limits: token buckets for the per-connection rates, a
once-per-interval log gate, a budget of log lines for all peers together, and the
process-wide in-flight budget."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Budget", "LogBudget", "LogGate", "TokenBucket"]


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved; ``take`` says how long to wait
    before the tokens just taken are covered (0 when there were enough)."""

    __slots__ = ("burst", "level", "rate", "stamp")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.level = burst
        self.stamp = now

    def take(self, amount: float, now: float) -> float:
        self.level = min(self.burst, self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        self.level -= amount
        return 0.0 if self.level >= 0 else -self.level / self.rate


class LogGate:
    """Lets one log line per key through per ``interval_s``, and counts the ones held back (the
    metrics count all of them). Keys are (peer, reason), a peer as ``peers.peer_key`` gives
    it: bounded by the old keys being forgotten at every interval. A key's count held back in
    one interval is carried into the next (only), so that its first line there says how many
    it stood for; a key that stays silent for a whole interval loses its count with no line to
    report it on."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval_s
        self._clock = clock
        self._since = clock()
        self._seen: dict[tuple[str, str], int] = {}
        self._carried: dict[tuple[str, str], int] = {}  # held back in the interval before

    def allow(self, peer: str, reason: str) -> int | None:
        """The number held back since the last line (None: hold this one back)."""
        now = self._clock()
        if now - self._since >= self._interval:
            self._carried = {k: n for k, n in self._seen.items() if n}
            self._seen = {}
            self._since = now
        key = (peer, reason)
        held = self._seen.get(key)
        if held is None:
            self._seen[key] = 0
            return self._carried.pop(key, 0)
        self._seen[key] = held + 1
        return None


class LogBudget:
    """At most ``lines`` log lines per ``interval_s`` about all peers together. A gate per peer
    (``LogGate``, ``tcec.peer_limits.PeerLog``) bounds one peer's lines, not those of many:
    one host owns many peers' worth of addresses (a /48 holds 65,536 /64s), so one line per
    peer was still one line per connection. Past the budget ``take`` says no and counts the
    line and its peer; ``held`` hands over those counts (the caller logs them as one line)."""

    # Distinct peers of the held-back lines counted between two ``held`` calls, at most: the
    # peers come from input (a connection's address), so their set is bounded.
    MAX_PEERS = 10_000

    def __init__(
        self, lines: int, interval_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.lines = lines
        self.interval_s = interval_s
        self._clock = clock
        self._ends = float("-inf")  # the end of the current interval
        self._used = 0
        self._held = 0
        self._peers: set[str] = set()

    def take(self, peer: str, weight: int = 1) -> bool:
        """True: log this line; False: it is held back and counted as ``weight`` lines (a
        line that stood for lines a gate per peer held back before it: 1 + those, which
        nothing else will report once this one is held back)."""
        now = self._clock()
        if now >= self._ends:
            self._ends = now + self.interval_s
            self._used = 0
        if self._used < self.lines:
            self._used += 1
            return True
        self._held += weight
        if len(self._peers) < self.MAX_PEERS:
            self._peers.add(peer)
        return False

    def ends_in(self) -> float:
        """Seconds until the current interval ends (when the budget is full again)."""
        return max(0.0, self._ends - self._clock())

    def held(self) -> tuple[int, int]:
        """The lines held back since the last call and their distinct peers (at most
        ``MAX_PEERS``); both start again from 0."""
        out = (self._held, len(self._peers))
        self._held = 0
        self._peers = set()
        return out


class Budget:
    """Frames and bytes read but not yet acknowledged by Kafka, for the whole process.

    ``full`` is true from the moment either bound is reached until both are back under
    ``resume_at`` (a fraction of the bounds): the hysteresis keeps thousands of connections
    from being paused and resumed for every acknowledged frame.
    """

    __slots__ = ("bytes", "frames", "full", "max_bytes", "max_frames", "resume_at")

    def __init__(self, max_frames: int, max_bytes: int, resume_at: float = 0.75) -> None:
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.resume_at = resume_at
        self.frames = 0
        self.bytes = 0
        self.full = False

    def take(self, size: int) -> None:
        self.frames += 1
        self.bytes += size
        if self.frames >= self.max_frames or self.bytes >= self.max_bytes:
            self.full = True

    def give(self, size: int) -> bool:
        """Release one frame; True when this made a full budget free again."""
        self.frames -= 1
        self.bytes -= size
        if (
            self.full
            and self.frames <= self.max_frames * self.resume_at
            and self.bytes <= self.max_bytes * self.resume_at
        ):
            self.full = False
            return True
        return False
