"""The field machinery behind ``ingest.config``: one ``setting()`` per key, with its docs.

Every key of the settings object is a dataclass field made by :func:`setting`, whose metadata
carries what the loader validates (choices, bounds) and what the documentation shows (help,
unit, secrecy). Adding a key is one line in ``ingest/config/settings.py``; the loader,
``config show``, ``config docs`` and ``docs/configuration.md`` follow from it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

T = TypeVar("T")

MASK: Final = "********"


@dataclass(frozen=True, slots=True)
class Pattern:
    """The shape a text setting must have: a regular expression and what it means to a person
    (the error and the docs show ``meaning``; the regex is for the code)."""

    regex: str
    meaning: str

    def matches(self, value: str) -> bool:
        return re.fullmatch(self.regex, value) is not None


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """What the loader and the docs know about one key beyond its type and default."""

    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    pattern: Pattern | None = None
    # "secret": masked whole and readable from a ``<key>_file``; "dsn": the password inside a
    # connection URL is masked; "": shown as is.
    secret: str = ""
    example: str = ""
    # A file or directory: the loader expands a leading ~ (ssl and libpq would not).
    path: bool = False

    @property
    def is_secret(self) -> bool:
        return self.secret == "secret"  # noqa: S105 - a kind of field, not a password


def setting(
    default: T,
    help: str,
    *,
    choices: Sequence[str] = (),
    minimum: float | None = None,
    maximum: float | None = None,
    pattern: Pattern | None = None,
    secret: bool = False,
    dsn: bool = False,
    example: str = "",
    path: bool = False,
) -> T:
    """Declare one configuration key: its default, one-line help, and what values it accepts.

    Numbers take ``minimum``/``maximum`` (inclusive; both, so that the docs give a range),
    text may take ``choices`` or a ``pattern``.

    Paths (``path=True``) have a leading ``~`` expanded at load, so that every library that
    opens them gets the real path.

    Secrets (``secret=True``) are masked by ``config show`` and may be given as a file with the
    companion key ``<key>_file`` (the file's content, stripped of surrounding whitespace).
    """
    spec = FieldSpec(
        help=help,
        choices=tuple(choices),
        minimum=minimum,
        maximum=maximum,
        pattern=pattern,
        secret="secret" if secret else ("dsn" if dsn else ""),
        example=example,
        path=path,
    )
    # repr=False: a section's repr must never print a secret (sections mask in __repr__).
    field: Any = dataclasses.field(default=default, metadata={"spec": spec}, repr=not secret)
    return field  # type: ignore[no-any-return]


def show_number(value: float) -> str:
    """A bound as a person reads it: ``1000000``, ``0.5``, not ``1e+06``."""
    if math.isfinite(value) and value == int(value):
        return str(int(value))
    return f"{value:g}"


def spec_of(field: dataclasses.Field[Any]) -> FieldSpec:
    spec = field.metadata.get("spec")
    if not isinstance(spec, FieldSpec):
        raise TypeError(f"config field {field.name!r} was not declared with setting()")
    return spec


# libpq URI query parameters that carry secrets (``?password=...`` is as valid as ``u:p@``).
_SECRET_PARAMS: Final = frozenset({"password", "sslpassword"})


def _mask_query(query: str) -> str:
    items = query.split("&") if query else []
    for k, item in enumerate(items):
        key, eq, _ = item.partition("=")
        if eq and unquote(key).lower() in _SECRET_PARAMS:
            items[k] = f"{key}={MASK}"
    return "&".join(items)


def mask_dsn(dsn: str) -> str:
    """``postgresql://u:secret@h/db?password=x`` -> ``postgresql://u:********@h/db?password=
    ********``: the password in the user info and in the query are masked; other text unchanged.
    """
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return MASK
    query = _mask_query(parts.query)
    if parts.password is None and query == parts.query:
        return dsn
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostinfo = netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{hostinfo}"
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def masked_value(field: dataclasses.Field[Any], value: object) -> object:
    """The value as it may be shown to a person or written to a log."""
    kind = spec_of(field).secret
    if spec_of(field).is_secret:
        return MASK if value else value
    if kind == "dsn" and isinstance(value, str):
        return mask_dsn(value)
    if kind == "dsn" and isinstance(value, tuple):
        return tuple(mask_dsn(str(item)) for item in value)
    return value


class Section:
    """Base of every settings section: a repr that never shows a secret."""

    __slots__ = ()

    def __repr__(self) -> str:
        items = ", ".join(
            f"{f.name}={masked_value(f, getattr(self, f.name))!r}"
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
        )
        return f"{type(self).__name__}({items})"
