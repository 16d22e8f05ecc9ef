"""Argument types for the subcommands: every number has a range, every name a shape.

Each factory returns a callable for ``argparse``'s ``type=``: it converts the text or raises
``argparse.ArgumentTypeError`` with what the flag accepts, which ``OneLineParser`` prints as
one line (``nev-ingest query pack: error: argument --every: expected ...``) with exit 2. The
checks run before any connection is opened, so a bad value never reaches Kafka or the database.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo
from typing import Final, NoReturn

from ingest.config.bounds import KAFKA_TOPIC, SQL_IDENTIFIER, SQL_ROLE
from ingest.config.fields import Pattern
from ingest.config.fields import show_number as number
from ingest.decoders.identity import is_vin

__all__ = [
    "DURATION_UNITS",
    "DurationTooLong",
    "OneLineParser",
    "add_database_arguments",
    "add_limit_argument",
    "database_flags",
    "duration",
    "float_range",
    "int_range",
    "kafka_topic",
    "matching",
    "parse_duration",
    "sql_name",
    "text",
    "time_or_ago",
]

_DURATION: Final = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|min|h|d)$")
DURATION_UNITS: Final = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (no usage block), exit status 2.

    Subparsers inherit the class (``add_subparsers`` uses the parent's type), so every
    subcommand reports its bad flags the same way.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _bounds(low: float | None, high: float | None, *, low_open: bool = False) -> str:
    if low is not None and high is not None and not low_open:
        return f" from {number(low)} to {number(high)}"
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {number(low)}")
    if high is not None:
        parts.append(f"<= {number(high)}")
    return " " + " and ".join(parts) if parts else ""


def int_range(low: int, high: int) -> Callable[[str], int]:
    """An integer from ``low`` to ``high`` inclusive."""

    def convert(text: str) -> int:
        try:
            value = int(text.strip().replace("_", ""))
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"expected an integer{_bounds(low, high)}, got {text!r}"
            )
        return value

    return convert


def float_range(low: float, high: float, *, low_open: bool = False) -> Callable[[str], float]:
    """A finite number from ``low`` (excluded with ``low_open``) to ``high`` inclusive."""

    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        above = value > low if low_open else value >= low
        if not (above and value <= high):  # also false for NaN
            raise argparse.ArgumentTypeError(
                f"expected a number{_bounds(low, high, low_open=low_open)}, got {text!r}"
            )
        return value

    return convert


class DurationTooLong(ValueError):
    """A well-formed duration longer than ``timedelta`` holds (about 2.7 million years)."""


def parse_duration(text: str) -> timedelta:
    """``30s``, ``5m``, ``2h``, ``7d`` -> timedelta; ``ValueError`` otherwise (also when it is
    too long to be a date difference, instead of ``OverflowError``)."""
    m = _DURATION.match(text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not a duration like 30s, 5m, 2h or 7d")
    try:
        return timedelta(seconds=float(m[1]) * DURATION_UNITS[m[2]])
    except (OverflowError, ValueError):  # beyond timedelta.max, or an infinite float
        raise DurationTooLong(f"{text!r} is too long a duration") from None


def time_or_ago(text: str, tz: tzinfo, now: datetime, floor: datetime) -> datetime:
    """An ISO date or date-time (in ``tz`` unless it has an offset) or a duration before
    ``now`` (``30m``, ``6h``, ``7d``); a duration that reaches before ``floor`` gives a time
    just before it, which the caller clamps or refuses. ``ValueError`` (to be shown as it is)
    for anything else."""
    try:
        ago: timedelta | None = parse_duration(text)
    except DurationTooLong:
        ago = timedelta.max
    except ValueError:
        ago = None
    if ago is not None:
        return now - ago if ago <= now - floor else floor - timedelta(microseconds=1)
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r}: use an ISO date or date-time (2025-07-01, 2025-07-01T08:00, "
            "2025-07-01T08:00+08:00) or a duration ago (30m, 2h, 7d)"
        ) from None
    return t if t.tzinfo is not None else t.replace(tzinfo=tz)


def duration(low: timedelta, high: timedelta) -> Callable[[str], timedelta]:
    """A duration like ``30s``, ``5m``, ``2h``, ``7d`` from ``low`` to ``high``."""
    what = f"a duration from {_short(low)} to {_short(high)} (like 30s, 5m, 2h, 7d)"

    def convert(text: str) -> timedelta:
        try:
            value = parse_duration(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return convert


def _short(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit in ("d", "h", "m"):
        size = DURATION_UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{number(seconds / size)}{unit}"
    return f"{number(seconds)}s"


def vin(value: str) -> str:
    """A VIN as the decoders accept one: 17 digits and upper-case letters. A key or a query
    under anything else could never match a frame (a typo would register a key no vehicle
    uses, and leave the real one unverified)."""
    if not is_vin(value):
        raise argparse.ArgumentTypeError(
            f"expected a VIN of 17 digits and upper-case letters, got {_safe(value)}"
        )
    return value


def text(max_len: int) -> Callable[[str], str]:
    """Printable text of 1 to ``max_len`` characters that the database can store.

    Arguments that are not valid in the locale arrive as lone surrogates, which no driver can
    encode; control characters are never part of an id or a name.
    """

    def convert(value: str) -> str:
        ok = 0 < len(value) <= max_len and value.isprintable()
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            ok = False
        if not ok:
            raise argparse.ArgumentTypeError(
                f"expected 1 to {max_len} printable characters, got {_safe(value)}"
            )
        return value

    return convert


def matching(pattern: Pattern) -> Callable[[str], str]:
    """Text of the shape a setting with this ``pattern`` accepts (same rule, same words)."""

    def convert(value: str) -> str:
        if not pattern.matches(value):
            raise argparse.ArgumentTypeError(f"expected {pattern.meaning}, got {_safe(value)}")
        return value

    return convert


kafka_topic: Final = matching(KAFKA_TOPIC)
sql_name: Final = matching(SQL_IDENTIFIER)


login_name: Final = matching(SQL_ROLE)  # roles grant LOGIN: as the roles.* settings


def _safe(value: str) -> str:
    """``repr`` that cannot fail on the stream (lone surrogates) and stays on one line."""
    shown = repr(value[:80]) + ("..." if len(value) > 80 else "")
    encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
    return shown.encode(encoding, "backslashreplace").decode(encoding)


def add_database_arguments(parser: argparse.ArgumentParser) -> None:
    """``--dsn`` and ``--schema``, the flags of every command that opens the database; read
    them back with ``database_flags``."""
    parser.add_argument("--dsn", help="PostgreSQL DSN (overrides postgres.dsn)")
    parser.add_argument(
        "--schema", type=sql_name, help="schema of the tables (overrides storage.schema)"
    )


def database_flags(args: argparse.Namespace) -> dict[str, object]:
    """The settings ``add_database_arguments``' flags override (for ``settings_from_args``)."""
    flags: dict[str, object] = {}
    if args.dsn:
        flags["postgres.dsn"] = args.dsn
    if args.schema:
        flags["storage.schema"] = args.schema
    return flags


def add_limit_argument(
    parser: argparse.ArgumentParser, *, most: int, default: int, noun: str = ""
) -> None:
    """``--limit``: at most this many results (1..``most``)."""
    what = f"this many {noun}" if noun else "this many"
    parser.add_argument(
        "--limit", type=int_range(1, most), default=default, help=f"at most {what} (1..{most})"
    )
