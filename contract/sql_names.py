"""Which names may be spliced into SQL text unquoted: schema and role names (they cannot be
bind parameters). One rule for the settings (``ingest.config.bounds.SQL_IDENTIFIER``), the
command lines and the storage layer (``storage.params.check_identifier``)."""

from __future__ import annotations

import re
from typing import Final

__all__ = ["PLAIN_NAME", "PLAIN_ROLE", "RESERVED", "is_plain_name"]

# PostgreSQL's reserved words and type/function-name words (pg_get_keywords() catcode R and T):
# neither is a name unquoted (CREATE SCHEMA user, CREATE ROLE all fail). PostgreSQL 15's, and
# system_user, reserved from 16 on: a name must work on every server the service supports.
RESERVED: Final = frozenset(
    [
        "all",
        "analyse",
        "analyze",
        "and",
        "any",
        "array",
        "as",
        "asc",
        "asymmetric",
        "authorization",
        "binary",
        "both",
        "case",
        "cast",
        "check",
        "collate",
        "collation",
        "column",
        "concurrently",
        "constraint",
        "create",
        "cross",
        "current_catalog",
        "current_date",
        "current_role",
        "current_schema",
        "current_time",
        "current_timestamp",
        "current_user",
        "default",
        "deferrable",
        "desc",
        "distinct",
        "do",
        "else",
        "end",
        "except",
        "false",
        "fetch",
        "for",
        "foreign",
        "freeze",
        "from",
        "full",
        "grant",
        "group",
        "having",
        "ilike",
        "in",
        "initially",
        "inner",
        "intersect",
        "into",
        "is",
        "isnull",
        "join",
        "lateral",
        "leading",
        "left",
        "like",
        "limit",
        "localtime",
        "localtimestamp",
        "natural",
        "not",
        "notnull",
        "null",
        "offset",
        "on",
        "only",
        "or",
        "order",
        "outer",
        "overlaps",
        "placing",
        "primary",
        "references",
        "returning",
        "right",
        "select",
        "session_user",
        "similar",
        "some",
        "symmetric",
        "system_user",
        "table",
        "tablesample",
        "then",
        "to",
        "trailing",
        "true",
        "union",
        "unique",
        "user",
        "using",
        "variadic",
        "verbose",
        "when",
        "where",
        "window",
        "with",
    ]
)

# Lower-case letters, digits and '_', not starting with a digit, at most 63 characters (the
# server's limit); not a reserved word; not starting with pg_ (PostgreSQL's own schemas and
# roles: CREATE SCHEMA pg_x and CREATE ROLE pg_x are refused).
PLAIN_NAME: Final = "(?!pg_)(?!(?:" + "|".join(sorted(RESERVED)) + r")$)[a-z_][a-z0-9_]{0,62}"
_PLAIN: Final = re.compile(PLAIN_NAME)
# A role name besides: public and none name no role (CREATE ROLE public: "role name is
# reserved"), though a schema may be called public.
PLAIN_ROLE: Final = "(?!(?:public|none)$)" + PLAIN_NAME


def is_plain_name(name: str) -> bool:
    """Whether ``name`` may be spliced into SQL unquoted as a schema or role name."""
    return _PLAIN.fullmatch(name) is not None
