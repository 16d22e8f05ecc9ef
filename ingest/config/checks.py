"""Checks of single values that a pattern cannot express (a port's range, a URL's parts).

``ingest.config.load`` calls them once every source is read; each raises a one-line
``UserError`` that names the key and what it accepts.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import unquote, urlsplit

from ingest.errors import UserError

__all__ = [
    "SSLMODES",
    "TARGET_SESSION_ATTRS",
    "check_database_url",
    "check_listen",
    "check_stall_after",
]

# libpq's sslmode values (asyncpg accepts the same).
SSLMODES: Final = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# libpq's target_session_attrs values; asyncpg accepts the same and refuses anything else when
# it connects (ClientConfigurationError), long after loading: at `run`'s first connection.
TARGET_SESSION_ATTRS: Final = (
    "any",
    "read-write",
    "read-only",
    "primary",
    "standby",
    "prefer-standby",
)
# libpq 17's and asyncpg's sslnegotiation values.
SSL_NEGOTIATIONS: Final = ("postgres", "direct")
_PORT: Final = re.compile(r"[0-9]{1,5}")
# What libpq reads as the user and password: the text after :// up to an @ met before any /.
_USER_INFO: Final = re.compile(r"([^@/]*)@")
# Query keys refused whenever the URL names hosts before its ?: asyncpg ignores them then.
_HOST_KEYS: Final = ("host", "hostaddr", "port")


def check_listen(key: str, value: str) -> None:
    """``host:port`` with a port 0..65535 (0 picks a free one), or empty (off).

    The key's pattern has checked the shape; a port above 65535 would otherwise reach the
    socket layer, which refuses it with a traceback or takes it modulo 65536."""
    _, sep, port = value.rpartition(":")
    if value and (not sep or not port.isdigit() or int(port) > 65535):
        raise UserError(
            f"{key} = {value!r}: port {port} is not 0..65535; give host:port, e.g. 0.0.0.0:8090"
        )


def check_database_url(key: str, dsn: str) -> None:
    """The parts of a ``postgresql://`` URL that the drivers would otherwise refuse with a
    traceback: balanced brackets, each host's port a number 1..65535 (libpq and asyncpg take
    ``h1:5432,h2:5433``), ``sslmode``, ``port``, ``target_session_attrs`` and
    ``sslnegotiation`` in the query. A key given twice counts once, with its last value, as
    both drivers read it. An empty ``target_session_attrs`` or ``sslnegotiation`` is refused:
    asyncpg takes it for the default, libpq (query, alerts) refuses it; an empty ``sslmode``
    is replaced by ``postgres.sslmode`` (``wiring.postgres_dsn``). A ``?`` before the ``@`` of
    the user and password is refused: the drivers would reach different hosts.

    Nothing of the URL is echoed: with an unencoded / or @ in a password, what looks like the
    host or the port is part of the password."""
    _, _, rest = dsn.partition("://")
    credentials = _USER_INFO.match(rest)
    if credentials is not None and "?" in credentials.group(1):
        # libpq reads the user and password up to the first @ (before any /), asyncpg ends
        # the host part at the ?: postgresql://nev:2024?Zq=9@db0/nev reaches db0 as nev with
        # libpq (query, alerts) and host nev, port 2024 with asyncpg (the writer).
        raise UserError(
            f"{key}: a ? comes before the URL's @ (the drivers read the user, password and "
            "host apart); write a ? in a user name or password as %3F (an @ in a query "
            "value as %40)"
        )
    netloc = rest.split("/", 1)[0].split("?", 1)[0]
    try:
        urlsplit(dsn)  # what asyncpg and the error hints parse it with
    except ValueError:
        raise UserError(
            f"{key}: the URL's host is not valid (an unbalanced [ or ], or a [...] that is not "
            "an IPv6 address); write a [, ], / or @ in a user name or password as %5B, %5D, "
            "%2F or %40"
        ) from None
    if "@" in netloc.partition("@")[2]:
        # Both drivers end the user and password at the FIRST @: the rest of the password
        # became a host ("ss@db0" of postgresql://nev:p@ss@db0/nev) that neither can reach,
        # found only when `run` connected.
        raise UserError(
            f"{key}: the URL's host part holds a second @; write an @ in a user name or "
            "password as %40"
        )
    hostspec = netloc.rpartition("@")[2]
    for host in hostspec.split(",") if hostspec else ():
        port_part = host.rpartition("]")[2] if host.startswith("[") else host
        _, colon, port = port_part.partition(":")
        if colon and port and not _port_ok(port):  # empty: the default port, to both drivers
            raise UserError(
                f"{key}: a port in the URL is not a number 1..65535 "
                "(postgresql://user@host:5432/dbname; write a / or @ in a password as %2F or %40)"
            )
    query = dsn.partition("?")[2]
    last: dict[str, str] = {}  # both drivers take a repeated key's last value
    for item in query.split("&") if query else ():
        if item and "=" not in item:
            # libpq (query, alerts) refuses it, asyncpg (the writer) drops it: e.g. the rest
            # of a second URL after an unencoded ? in its password (h0,u:5432?pw@h1/db).
            raise UserError(
                f"{key}: a parameter in the URL's query has no = (libpq refuses it); write a ? "
                "in a password as %3F, and give each URL of a list its own postgresql://"
            )
        if item.count("=") > 1:
            # libpq refuses it ("extra key/value separator"), asyncpg keeps the value whole:
            # postgres.dsn loaded and only the query CLI and the alerts failed to connect.
            raise UserError(
                f"{key}: a value in the URL's query holds an = (libpq refuses it); write it as "
                "%3D (options=-csearch_path%3Dnev)"
            )
        name, _, value = (unquote(part) for part in item.partition("="))
        if value or name != "sslmode":  # a blank sslmode is dropped (wiring.postgres_dsn)
            last[name] = value
    sslmode = last.get("sslmode")
    if sslmode is not None and sslmode not in SSLMODES:
        raise UserError(f"{key}: sslmode in the URL must be one of {', '.join(SSLMODES)}")
    port = last.get("port", "")
    if not all(_port_ok(p) for p in port.split(",") if p):
        raise UserError(f"{key}: port in the URL's query is not a number 1..65535")
    attrs = last.get("target_session_attrs")
    if attrs is not None and attrs not in TARGET_SESSION_ATTRS:
        raise UserError(
            f"{key}: target_session_attrs in the URL must be one of "
            f"{', '.join(TARGET_SESSION_ATTRS)} (not empty: libpq refuses that)"
        )
    negotiation = last.get("sslnegotiation")
    if negotiation is not None and negotiation not in SSL_NEGOTIATIONS:
        raise UserError(
            f"{key}: sslnegotiation in the URL must be one of {', '.join(SSL_NEGOTIATIONS)} "
            "(not empty: libpq refuses that)"
        )
    _check_given_once(key, netloc, rest[len(netloc) :], last)


def _check_given_once(key: str, netloc: str, path: str, query: dict[str, str]) -> None:
    """A connection part given both before the URL's ? and in its query (a user name,
    password or database name: with another value): libpq takes the query's value, asyncpg
    the other (``postgresql://nev@db0/nev?host=db1``: the query CLI and the alerts reach db1,
    the writer db0). What asyncpg reads before the ? is what counts: the text up to the
    netloc's first @ (user:password), then the hosts (with a port, the default one if none is
    written), then a path."""
    auth, at, hosts = netloc.partition("@")
    if not at:
        auth, hosts = "", netloc
    user, _, password = (unquote(part) for part in auth.partition(":"))
    before: dict[str, str | None] = {
        "dbname": unquote(path[1:].split("?", 1)[0]) if path.startswith("/") else None,
        "user": user or None,
        "password": password or None,
    }
    for name in _HOST_KEYS:  # asyncpg knows no hostaddr: it reaches hosts
        before[name] = hosts or None
    for name, value in before.items():
        if value is not None and name in query and (name in _HOST_KEYS or query[name] != value):
            raise UserError(
                f"{key}: {name} is given in the URL's query and also before it (libpq takes "
                "the query's, asyncpg the other); give it once, e.g. the hosts either in "
                "postgresql://user@host:5432/dbname or in postgresql://user@/dbname?host=..."
            )


def _port_ok(port: str) -> bool:
    return _PORT.fullmatch(port) is not None and 1 <= int(port) <= 65535


def check_stall_after(lag_interval_s: float, stall_after_s: float) -> None:
    """/readyz compares the last commit and the backlog, gauges the housekeeping refreshes
    every ``lag_interval_s``, with ``stall_after_s``: an interval that is not well under it
    makes a busy worker look stalled between two refreshes (readiness flaps)."""
    if lag_interval_s * 2 > stall_after_s:
        raise UserError(
            f"pipeline.lag_interval_s ({lag_interval_s:g}) must be at most half of "
            f"pipeline.stall_after_s ({stall_after_s:g}), or /readyz flaps between two "
            "refreshes of its gauges; lower lag_interval_s or raise stall_after_s"
        )
