"""Checks of single rule-file values: each returns None when the value is fine, else the
message of the problem (the loader adds the line, rule and key)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

__all__ = [
    "MAX_MAGNITUDE",
    "as_list",
    "bits",
    "edition_list",
    "id_list",
    "is_bool",
    "is_id",
    "is_number",
    "is_number_check",
    "is_str",
    "level",
    "non_negative",
    "one_of",
    "positive",
    "str_list",
]

_ID = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# The largest magnitude a number of a rule file may have. TOML reads inf, nan and 1e400 (= inf)
# as floats: none means anything as a limit, and the engine's generated code and arithmetic
# (window_s * 1000 ms, a rate times an interval) must stay finite. 1e15 is far beyond any
# field's range or any sensible window, and the product of two such numbers is still finite.
MAX_MAGNITUDE: Final = 1e15


def is_number(v: Any) -> bool:
    """A finite number within +-MAX_MAGNITUDE (nan compares False, so it is refused too)."""
    return (
        isinstance(v, int | float)
        and not isinstance(v, bool)
        and -MAX_MAGNITUDE <= v <= MAX_MAGNITUDE
    )


def is_number_check(v: Any) -> str | None:
    if is_number(v):
        return None
    if isinstance(v, int | float) and not isinstance(v, bool):
        return f"must be a finite number within +-{MAX_MAGNITUDE:g}, got {v!r}"
    return f"must be a number, got {v!r}"


def positive(v: Any) -> str | None:
    why = is_number_check(v)
    return why if why or v > 0 else f"must be a number > 0, got {v!r}"


def non_negative(v: Any) -> str | None:
    why = is_number_check(v)
    return why if why or v >= 0 else f"must be a number >= 0, got {v!r}"


def is_bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else f"must be true or false, got {v!r}"


def is_str(v: Any) -> str | None:
    return None if isinstance(v, str) else f"must be a string, got {v!r}"


def is_id(v: Any) -> str | None:
    ok = isinstance(v, str) and _ID.match(v)
    return None if ok else "must be lower_snake_case (a-z, 0-9, _), at most 63 characters"


def one_of(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        return None if v in choices else f"must be one of {', '.join(choices)}; got {v!r}"

    return check


def as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def str_list(v: Any) -> str | None:
    ok = all(isinstance(x, str) and x for x in as_list(v))
    return None if ok else "must be a string or a list of non-empty strings"


def id_list(v: Any) -> str | None:
    ok = isinstance(v, list) and v and all(isinstance(x, str) for x in v)
    return None if ok else "must be a non-empty list of rule ids"


def edition_list(v: Any) -> str | None:
    ok = isinstance(v, list) and v and all(x in (2016, 2025) for x in v)
    return None if ok else "must be a non-empty list of 2016 and/or 2025"


def bits(v: Any) -> str | None:
    ok = isinstance(v, list) and all(isinstance(x, int) and 0 <= x <= 31 for x in v)
    return None if ok else "must be a list of general-alarm bit numbers 0..31 (bit 0 = LSB)"


def level(v: Any) -> str | None:
    ok = isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4
    return None if ok else "must be an alarm level 1..4 (4 = 2025 thermal event)"
