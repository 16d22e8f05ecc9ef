"""Checks of single values that a pattern cannot express (a port's range, a URL's parts).

``ingest.config.load`` calls them once every source is read; each raises a one-line
``UserError`` that names the key and what it accepts.
"""

from __future__ import annotations

from ingest.errors import UserError

__all__ = ["check_listen"]


def check_listen(key: str, value: str) -> None:
    """``host:port`` with a port 0..65535 (0 picks a free one), or empty (off).

    The key's pattern has checked the shape; a port above 65535 would otherwise reach the
    socket layer, which refuses it with a traceback or takes it modulo 65536."""
    _, sep, port = value.rpartition(":")
    if value and (not sep or not port.isdigit() or int(port) > 65535):
        raise UserError(
            f"{key} = {value!r}: port {port} is not 0..65535; give host:port, e.g. 0.0.0.0:8090"
        )
