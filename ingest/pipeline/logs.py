"""Structured logs: one JSON object per line, for people with ``jq`` and for log shippers.

Library modules only call ``logging.getLogger(__name__)`` with %-style arguments; the process
entry points (``nev-ingest run`` and its workers, the demo) call :func:`configure_logging` once.
Context travels as ``extra={...}`` (``topic``, ``partition``, ``offset``, ``reason`` ...) and
becomes top-level keys of the JSON object, so a log line can be found by the partition and offset
it is about. Process-wide fields (``service``, ``worker``, ``pid``) are added to every line.

Per-frame problems (a poison frame, a DB-rejected row) can come in bursts of thousands per second:
:class:`RateLimiter` lets one line per key through per interval and reports how many it held
back, while the metrics count every one of them.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import IO, Final

import orjson

__all__ = [
    "JsonFormatter",
    "PoolFloorLine",
    "RateLimiter",
    "TextFormatter",
    "ThirdPartyRateLimit",
    "configure_logging",
]

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is context.
_STANDARD_ATTRS: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
)


def _default(value: object) -> object:
    # orjson handles the common types natively; everything else (TopicPartition, Path, bytes of
    # a bad frame's key ...) becomes its string form rather than failing the log call.
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: ts, level, logger, msg, static fields, extras."""

    def __init__(self, static: Mapping[str, object] | None = None) -> None:
        super().__init__()
        self._static = dict(static or {})

    def set_static(self, **fields: object) -> None:
        """Add or replace process-wide fields (e.g. the worker index once it is known)."""
        self._static.update(fields)

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update(self._static)
        out.update(
            (k, v)
            for k, v in record.__dict__.items()
            if k not in _STANDARD_ATTRS and not k.startswith("_")
        )
        if record.exc_info and record.exc_info[0] is not None:
            out["exc_type"] = record.exc_info[0].__name__
            out["exc"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return orjson.dumps(out, default=_default).decode()


class TextFormatter(JsonFormatter):
    """For people at a terminal (``log.format = "text"``): time, level, message, then context
    as ``key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        data = orjson.loads(super().format(record))
        head = f"{data.pop('ts')} {data.pop('level'):<7} {data.pop('msg')}"
        exc = data.pop("exc", None)
        for key in ("logger", "service", "pid", "exc_type"):
            data.pop(key, None)
        tail = " ".join(f"{k}={v}" for k, v in data.items())
        return head + (f"  [{tail}]" if tail else "") + (f"\n{exc}" if exc else "")


def configure_logging(
    level: str | int = "INFO",
    *,
    stream: IO[str] | None = None,
    static: Mapping[str, object] | None = None,
    fmt: str = "json",
) -> JsonFormatter:
    """Route the root logger to ``stream`` (stderr) as JSON lines (``fmt="text"``: readable
    lines); returns the formatter.

    Idempotent: a second call replaces the handler it installed before instead of adding one.
    aiokafka logs a line per rebalance step at INFO; it stays at WARNING unless DEBUG is asked.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_nev_ingest", False):
            root.removeHandler(handler)
    cls = TextFormatter if fmt == "text" else JsonFormatter
    formatter = cls({"service": "nev-ingest", "pid": os.getpid(), **(static or {})})
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(PoolFloorLine())  # before the rate limit, which keys on the message
    handler.addFilter(ThirdPartyRateLimit())
    handler._nev_ingest = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    noisy_level = logging.DEBUG if root.level <= logging.DEBUG else logging.WARNING
    for name in ("aiokafka", "kafka"):
        logging.getLogger(name).setLevel(noisy_level)
    return formatter


class ThirdPartyRateLimit(logging.Filter):
    """While a broker or the database is away, aiokafka and asyncpg log the same error many
    times a second; let each message template through once per ``interval_s`` per logger, with
    the count held back as ``suppressed``. Our own loggers rate-limit where they need to."""

    PREFIXES: Final = ("aiokafka", "kafka", "asyncpg")

    def __init__(self, interval_s: float = 10.0) -> None:
        super().__init__()
        self._limiter = RateLimiter(interval_s)

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.PREFIXES):
            return True
        suppressed = self._limiter.allow(f"{record.name}:{record.levelno}:{record.msg}")
        if suppressed is None:
            return False
        if suppressed:
            record.suppressed = suppressed
        return True


class PoolFloorLine(logging.Filter):
    """asyncpg's pool keeps ``postgres.pool_min_size`` connections open in the background and
    logs each failed attempt with its traceback ("Failed to restore the pool connection floor;
    retrying"): while a database (a shard) is down, a traceback every 1-60 s that says nothing
    the writer's own retry lines do not. Made one line here: what failed, that asyncpg tries
    again by itself, and what to check; the rate limit after this filter lets one through per
    10 s. The pool and its floor are left as configured: only the line changes."""

    MESSAGE: Final = "Failed to restore the pool connection floor"

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("asyncpg") or not str(record.msg).startswith(self.MESSAGE):
            return True
        exc = record.exc_info[1] if record.exc_info else None
        error = "unknown error" if exc is None else f"{type(exc).__name__}: {exc}"
        record.msg = (
            "a database connection pool could not reconnect its idle connections "
            "(postgres.pool_min_size) (%s); asyncpg retries by itself (every 1 s, doubling to "
            "60 s): check that the database (with shards: the shard the write errors name) is "
            "up and reachable"
        )
        record.args = (error[:300],)
        record.exc_info = None
        record.exc_text = None
        return True


# Keys a RateLimiter remembers before it forgets the ones whose interval is over.
_MAX_KEYS: Final = 10_000


class RateLimiter:
    """One log line per key per ``interval_s``; counts what it held back in between.

    ``allow(key)`` returns ``None`` when the line should be dropped, else the number of lines
    suppressed for that key since the last one let through (to log as ``suppressed``).
    """

    def __init__(
        self, interval_s: float = 10.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._interval = interval_s
        self._clock = clock
        self._last: OrderedDict[str, float] = OrderedDict()
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> int | None:
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                self._held[key] = self._held.get(key, 0) + 1
                return None
            if last is None and len(self._last) >= _MAX_KEYS:
                self._prune(now)
            # At the end: the keys stay in the order of their times, oldest first.
            self._last[key] = now
            self._last.move_to_end(key)
            return self._held.pop(key, 0)

    def _prune(self, now: float) -> None:
        """Forget the oldest keys (keys may come from input: a peer address per refusal):
        those whose interval is over, and while the limiter is full the oldest of the others
        too (their held counts are lost). From the front of the dict: O(1) a key forgotten."""
        last = self._last
        while last:
            k, t = next(iter(last.items()))
            if now - t < self._interval and len(last) < _MAX_KEYS:
                break
            last.popitem(last=False)
            self._held.pop(k, None)
