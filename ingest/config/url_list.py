"""A comma-separated list of database URLs (``storage.shards``, ``storage.replicas`` given as
text) as its URLs.

libpq and asyncpg take commas inside one URL: in the user name or password
(``postgresql://u:p,ss@h/db``: libpq reads the credentials up to the first ``@``), in the host
list (``postgresql://u@h1:5432,h2:5432/db``, ``[::1]:5432,[::2]:5433``) and in query values
(``?host=h1,h2&port=5432,5433``, ``?host=/tmp,/var/run/postgresql``,
``?options=-csearch_path%3Dnev,public``). So the list is split only before a scheme
(``postgresql://`` or ``postgres://``, any case: an upper-case one is then refused on its own,
not read as part of the URL before it), and each other comma is judged by where it stands in
its URL:

- in the user name or password (before the first ``@`` of the authority, which ends at the
  first ``/`` or ``?``): part of the credentials;
- in the host list: a second host, unless what follows it up to the next comma holds an ``@``
  (a host has no user: a second URL written without its scheme, refused);
- in the database name: refused (a second URL without its scheme, or a comma to write as
  ``%2C``). Judged whole because a ``?`` in an unencoded password ends the name early;
- in the query: part of a value, unless what follows it up to the next comma holds an ``@``,
  or a ``/`` not at its start before any ``&``: refused, since a second URL without its scheme
  (``?application_name=ingest,nev:pw@db1/nev``, ``?application_name=ingest,db1/nev``) would
  otherwise load as one shard, its host swallowed by the value. A socket directory
  (``?host=/tmp,/var/run/postgresql``) starts with its ``/``. An ``@`` meant for a value after
  such a comma is written ``%40``, a comma inside a value ``%2C``
  (``?application_name=ingest%2Cv2/blue``).

A comma followed by a keyword DSN (``host=db password=...``; not in the credentials) starts an
item of its own, refused by the URL check as not a URL rather than read as part of one: its
password would have become a database name or a query value the logs show.

Refusals are ``UserError`` lines that name the URL by its host and database name, never its
credentials or query (a query may hold a password)."""

from __future__ import annotations

import re
from typing import Final

from ingest.errors import UserError

__all__ = ["check_single_url", "no_scheme", "split_urls"]

# A comma before the next URL's scheme (blanks and empty items between them allowed).
_NEXT_URL: Final = re.compile(r",(?=[\s,]*postgres(?:ql)?://)", re.IGNORECASE)
_SCHEME: Final = re.compile(r"\s*postgres(?:ql)?://", re.IGNORECASE)
# The start of a keyword DSN (``host=db password=secret``): never part of a URL, since a host
# holds no = and libpq refuses a second = in one query parameter ("extra key/value separator").
_KEYWORD: Final = re.compile(r"\s*[A-Za-z_][A-Za-z0-9_]*\s*=")
_AUTHORITY_END: Final = re.compile(r"[/?]")
_BLANK_OR_COMMA: Final = " \t\r\n,"
_NO_SCHEME: Final = (
    "this URL has no scheme; write postgresql:// before it (each URL of a comma-separated "
    "list needs its own)"
)


def split_urls(value: str, where: str) -> list[str]:
    """The URLs of ``value`` (no empty ones); ``where`` names the setting in refusals
    (``storage.shards``: items are ``storage.shards[i]``)."""
    items: list[str] = []
    for chunk in _NEXT_URL.split(value):
        index = len(items)
        items += _items(chunk.strip(_BLANK_OR_COMMA), f"{where}[{index}]", f"{where}[{index + 1}]")
    return items


def check_single_url(value: str, where: str) -> None:
    """One item of a list given as a list (a TOML array: not split), named ``where``: its
    commas are judged as in the text form, and it is refused unless it is that one URL. A
    comma in an item is read by the drivers as in a URL of the text form, so two URLs in one
    item (postgresql://nev@db0,nev@db1/nev) would otherwise load as one shard."""
    if _SCHEME.match(value) is None:
        return  # not a URL: the URL check refuses it
    chunks = _NEXT_URL.split(value)
    items = _items(value, where, where) if len(chunks) == 1 else chunks
    if items != [value]:
        raise UserError(
            f"{where}: holds more than one URL (or a keyword DSN after a comma); give each "
            "database its own item of the list"
        )


def no_scheme(where: str, text: str) -> UserError:
    """The refusal of ``text``, a URL written without its scheme (the list's item named
    ``where``), named by its host and database name (after the last @: an unencoded @ in a
    password comes before it; up to a query), never its credentials."""
    place = text.rpartition("@")[2].split("?")[0].strip()
    return UserError(f"{where} ({place}): {_NO_SCHEME}")


def _items(chunk: str, this: str, following: str) -> list[str]:
    """One URL (``chunk``, the list's item named ``this``), or its text before a keyword DSN
    and that DSN's comma-separated text; a URL without its scheme after a comma is refused
    as the item named ``following``."""
    scheme = _SCHEME.match(chunk)
    if scheme is None:
        # Not a URL: each comma separates (every item is then refused by the URL check).
        return [item for item in chunk.split(",") if item.strip()]
    start = scheme.end()
    end = _AUTHORITY_END.search(chunk, start)
    authority_end = len(chunk) if end is None else end.start()
    at = chunk.find("@", start, authority_end)
    hosts_start = start if at < 0 else at + 1
    query_start = chunk.find("?", authority_end)
    if query_start < 0:
        query_start = len(chunk)
    url = _Url(chunk, this, following, hosts_start, authority_end)
    comma = chunk.find(",", hosts_start)
    while comma >= 0:
        if _KEYWORD.match(chunk, comma + 1):
            rest = chunk[comma + 1 :]
            return [chunk[:comma], *(item for item in rest.split(",") if item.strip())]
        if comma < authority_end:
            url.host_comma(comma)
        elif comma < query_start:
            url.path_comma(comma)
        else:
            url.query_comma(comma)
        comma = chunk.find(",", comma + 1)
    return [chunk]


class _Url:
    """The refusals of one URL's commas."""

    __slots__ = ("_authority_end", "_chunk", "_following", "_hosts_start", "_this")

    def __init__(
        self, chunk: str, this: str, following: str, hosts_start: int, authority_end: int
    ) -> None:
        self._chunk = chunk
        self._this = this
        self._following = following
        self._hosts_start = hosts_start
        self._authority_end = authority_end

    def host_comma(self, comma: int) -> None:
        end = self._chunk.find(",", comma + 1, self._authority_end)
        host = self._chunk[comma + 1 : self._authority_end if end < 0 else end]
        if "@" in host:
            raise self._no_scheme(comma)

    def path_comma(self, comma: int) -> None:
        piece = self._piece(comma)
        if "@" in piece or "/" in piece:
            raise self._no_scheme(comma)
        raise UserError(
            f"{self._this} ({self._place()}): a comma in the database name; a second URL "
            "without its scheme? write postgresql:// before it; a comma in the name: write it "
            "as %2C"
        )

    def query_comma(self, comma: int) -> None:
        piece = self._piece(comma)
        if "@" in piece:
            raise UserError(
                f"{self._this} ({self._place()}): a comma in the query is followed by text "
                "with an @; a second URL without its scheme? write postgresql:// before it; a "
                "comma inside a value: percent-encode it as %2C (an @ as %40)"
            )
        # A second URL without a user (db1/nev, db1:5433/nev?sslmode=require) has no @ but a
        # / after its host; a socket directory (host=/tmp,/var/run/postgresql) starts with
        # one. Only the text before a & is looked at: a later parameter's value may be a path
        # (host=h1,h2&sslrootcert=/etc/ssl/ca.pem).
        value = piece.split("&", 1)[0].lstrip()
        if "/" in value and not value.startswith("/"):
            raise UserError(
                f"{self._this} ({self._place()}): a comma in the query is followed by text "
                "with a / (host/dbname); a second URL without its scheme? write postgresql:// "
                "before it; a comma inside a value: percent-encode it as %2C"
            )

    def _piece(self, comma: int) -> str:
        """What follows ``comma`` up to the next comma."""
        return self._chunk[comma + 1 :].split(",", 1)[0]

    def _no_scheme(self, comma: int) -> UserError:
        """The refusal of what follows ``comma``: a URL without its scheme, the list's next
        item."""
        return no_scheme(self._following, self._piece(comma))

    def _place(self) -> str:
        """The URL's hosts and database name (up to a comma in it), no credentials, no query:
        the hosts follow the authority's LAST @ (an unencoded @ in a password comes before it,
        and the text between the first @ and the last is part of that password)."""
        authority = self._chunk[self._hosts_start : self._authority_end]
        hosts = authority.rpartition("@")[2]
        rest = self._chunk[self._authority_end :]
        name = rest[1:].split("?", 1)[0].split(",", 1)[0] if rest.startswith("/") else ""
        return f"{hosts}/{name}"
