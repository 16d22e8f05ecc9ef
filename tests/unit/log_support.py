"""Waiting in a test for a log line that a timer on the event loop writes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def line_seen(logger: str, fragment: str) -> Iterator[asyncio.Event]:
    """An event set when ``logger`` emits a record whose message contains ``fragment``; the
    handler that watches for it is on ``logger`` only within the ``with``."""
    seen = asyncio.Event()

    class _Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if fragment in record.getMessage():
                seen.set()

    handler = _Seen()
    logging.getLogger(logger).addHandler(handler)
    try:
        yield seen
    finally:
        logging.getLogger(logger).removeHandler(handler)
