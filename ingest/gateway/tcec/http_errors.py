"""aiohttp's logger for one of the receiver's connections, so that malformed requests are the
receiver's to count and log.

aiohttp's HTTP parser refuses a malformed request (a bad request line or method, a bad header,
a line over 8190 bytes) before any handler runs: it answers 400, closes the connection and logs
through its connection's ``logger`` ("aiohttp.server"): at ERROR with a traceback, once per
request and unthrottled. Anyone can send garbage, so that was a way to flood the gateway's log.
At DEBUG only for a bad method in a connection's first request: bytes that are not HTTP at all
(a TLS ClientHello, an SSH banner), which internet scanners send to any open port all day.
Each admitted connection's ``RequestHandler.logger`` is replaced by a :class:`ConnectionLog`
that hands those refusals to a callback (``ConnectionGate.bad_request``: counted; logged
without a traceback, at DEBUG where aiohttp chose DEBUG, else as a throttled WARNING) and
passes every other record on to aiohttp's logger unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.log import server_logger

__all__ = ["ConnectionLog", "describe"]

# Of the parser's message, in a log line: its first line (the rest is the raw input, quoted).
_DETAIL_CHARS: Final = 80


def describe(exc: HttpProcessingError) -> str:
    """One short printable line: the exception's type and its message's first line."""
    first = next((ln.strip() for ln in str(exc.message).splitlines() if ln.strip()), "")
    first = "".join(c if c.isprintable() else "?" for c in first)
    if len(first) > _DETAIL_CHARS:
        first = first[:_DETAIL_CHARS] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


class ConnectionLog(logging.Logger):
    """Stands in for aiohttp's logger on one connection (never registered with ``logging``):
    a record about a request the parser refused goes to ``refused``, anything else to
    aiohttp's own logger. aiohttp calls only ``debug`` and ``exception`` on it.

    ``refused(exc, not_http)``: ``not_http`` is true when aiohttp logged the refusal at DEBUG
    (``RequestHandler.handle_error``: a bad method in the connection's first request), its
    own judgement that this is a client not speaking HTTP, not a client to look into."""

    def __init__(self, refused: Callable[[HttpProcessingError, bool], None]) -> None:
        super().__init__(server_logger.name)
        # A call other than the two overridden (a newer aiohttp's warning, say) reaches
        # aiohttp's logger's handlers and level, not logging's last-resort stderr handler.
        self.parent = server_logger
        self._refused = refused

    def _taken(self, exc_info: Any, not_http: bool) -> bool:
        if isinstance(exc_info, HttpProcessingError):
            self._refused(exc_info, not_http)
            return True
        return False

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        if not self._taken(kwargs.get("exc_info"), True):
            server_logger.debug(msg, *args, **_from_caller(kwargs))

    def exception(self, msg: object, *args: object, **kwargs: Any) -> None:
        if not self._taken(kwargs.get("exc_info", True), False):
            server_logger.exception(msg, *args, **_from_caller(kwargs))


def _from_caller(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A logging call's keywords, passed on one frame down: the record still names the line
    in aiohttp that logged it, not this module."""
    return {**kwargs, "stacklevel": kwargs.get("stacklevel", 1) + 1}
