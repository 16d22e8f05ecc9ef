"""Small bookkeeping for the gateway's limits: token buckets for the per-connection rates, a
once-per-interval log gate, and the process-wide in-flight budget."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Budget", "LogGate", "TokenBucket"]


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
