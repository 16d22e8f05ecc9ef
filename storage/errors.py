"""Storage errors, and the one place that decides what a database error means.

::

    StorageError
    ├── StorageUnavailable   transient errors outlasted the retries; nothing was committed
                         (or a COMMIT got no answer: writing the batch again tells)
    ├── SchemaError          the schema is missing, stale or of the other flavour: run migrate
    └── MigrationError       a migration failed or the database cannot take the schema

Row-level data errors never escape the writer as exceptions: it isolates the offending frames
and returns them (``WriteResult.rejected``) for the dead-letter topic.
"""

from __future__ import annotations

import struct
from enum import StrEnum
from typing import Final

import asyncpg
from asyncpg.exceptions import _base as asyncpg_base

__all__ = [
    "ErrorKind",
    "MigrationError",
    "SchemaError",
    "ServerRefused",
    "StorageError",
    "StorageUnavailable",
    "classify",
    "refused",
]


class StorageError(Exception):
    """Root of the errors raised by ``storage``."""


class StorageUnavailable(StorageError):
    """The database stayed unreachable or kept failing transiently for every retry.

    Nothing of the batch was committed: keep it, pause the partitions, try again later.
    """


class ServerRefused(StorageUnavailable):
    """The server refused a new connection itself: the login (SQLSTATE class 28: password,
    pg_hba), the database (3D: missing), the CONNECT privilege (42501) or a database not
    accepting connections (55000, ``ALLOW_CONNECTIONS false``). For a worker that database is
    down until someone fixes it, not a bug in the worker: transient (``classify``)."""


class SchemaError(StorageError):
    """The database does not have the tables this code expects (run ``nev-ingest migrate``)."""


class MigrationError(StorageError):
    """A migration could not be applied; the message says which and why."""


class ErrorKind(StrEnum):
    """What to do about an exception raised while writing a batch."""

    TRANSIENT = "transient"  # retry the whole batch after a backoff
    DUPLICATE = "duplicate"  # a unique key already holds this frame: redo with conflict skipping
    DATA = "data"  # some row is bad: bisect, reject the bad frames, keep the rest
    SCHEMA = "schema"  # tables/columns/permissions wrong: no row is to blame, stop
    FATAL = "fatal"  # anything else: a bug; let it propagate


# SQLSTATE classes and codes (PostgreSQL Appendix A). Transient: the same statement can succeed
# later without any change to the data.
_TRANSIENT_CLASSES: Final = frozenset({"08", "53", "57", "58", "40"})
_TRANSIENT_CODES: Final = frozenset({"55P03", "55006", "25P03"})  # lock / in-use / idle timeout
_NOT_TRANSIENT_57: Final = frozenset({"57P04"})  # database dropped: retrying cannot help
# Data errors a row can cause: class 22 (data exception) and 23 (integrity) except 23505,
# plus "no partition of relation found for row" (23514 on plain partitioned tables).
_DATA_CLASSES: Final = frozenset({"22", "23"})
_SCHEMA_CLASSES: Final = frozenset({"42", "3F", "0A"})
# Refusals of a new connection by the server (``ServerRefused``).
_REFUSED_CLASSES: Final = frozenset({"28", "3D"})
_REFUSED_CODES: Final = frozenset({"42501", "55000"})


def refused(exc: BaseException) -> ServerRefused | None:
    """``exc``, raised while connecting, as a ``ServerRefused`` if it is the server's refusal
    of the connection (module docstring of ``ServerRefused``), else None."""
    if not isinstance(exc, asyncpg.PostgresError):
        return None
    state = str(getattr(exc, "sqlstate", "") or "")
    if state[:2] in _REFUSED_CLASSES or state in _REFUSED_CODES:
        return ServerRefused(f"the server refused the connection ({type(exc).__name__}: {exc})")
    return None


def classify(exc: BaseException) -> ErrorKind:
    """The ``ErrorKind`` of an exception raised by asyncpg while a batch was written."""
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        klass = state[:2]
        if state == "23505":
            return ErrorKind.DUPLICATE
        if state in _NOT_TRANSIENT_57:
            return ErrorKind.SCHEMA
        if klass in _TRANSIENT_CLASSES or state in _TRANSIENT_CODES:
            return ErrorKind.TRANSIENT
        if klass in _DATA_CLASSES:
            return ErrorKind.DATA
        if klass in _SCHEMA_CLASSES:
            return ErrorKind.SCHEMA
        return ErrorKind.FATAL
    if isinstance(exc, StorageUnavailable):  # a database down, or refusing connections
        return ErrorKind.TRANSIENT
    # Client-side encoding of a value (e.g. 70000 into an int2 column) fails before the server
    # sees it; asyncpg raises its own DataError (a ValueError), or OverflowError/TypeError from
    # the codec.
    if isinstance(exc, asyncpg_base.DataError | OverflowError | struct.error):
        return ErrorKind.DATA
    if isinstance(
        exc,
        asyncpg.InterfaceError
        | ConnectionError
        | OSError
        | TimeoutError
        | asyncpg.exceptions.InternalClientError,
    ):
        # Connection closed under us, pool gave up waiting, socket errors: the batch can go
        # again on a fresh connection.
        return ErrorKind.TRANSIENT
    return ErrorKind.FATAL
