"""The ``_scoped`` views in place of what a scoped login may not read (``nev-ingest query``).

On TimescaleDB an OEM or charging login has no grant on the hypertables, the continuous
aggregates nor the two views over them (``vehicle_pack_history``, ``charging_sessions``): it
reads their ``<name>_scoped`` views (storage.roles, migration 0087), which hold the same columns
and its own rows. On plain PostgreSQL it may read both and nothing changes; a regulator has no
grant on the ``_scoped`` views and nothing changes either. So the query tool asks the server,
once per command, which relations the login cannot read while it can read their ``_scoped``
view, and reads those instead: the same statements serve every login on both flavours.
"""

from __future__ import annotations

import re
from typing import Any, Final

from storage.params import check_identifier
from storage.queries import Statement

__all__ = ["readable", "through_scoped", "unreadable_with_scoped"]

_UNREADABLE: Final = """
SELECT c.relname FROM pg_class c
JOIN pg_class v ON v.relnamespace = c.relnamespace AND v.relname = c.relname || '_scoped'
WHERE c.relnamespace = to_regnamespace(%s)::oid
  AND NOT has_table_privilege(c.oid, 'SELECT') AND has_table_privilege(v.oid, 'SELECT')
"""


def unreadable_with_scoped(conn: Any, schema: str) -> frozenset[str]:
    """Relations of ``schema`` the session's login may not SELECT but may through their
    ``_scoped`` view (psycopg connection)."""
    with conn.cursor() as cur:
        cur.execute(_UNREADABLE, (check_identifier(schema),))
        return frozenset(str(r[0]) for r in cur.fetchall())


_READABLE: Final = """
SELECT coalesce(has_table_privilege(to_regclass(%s), 'SELECT'), true)
    OR coalesce(has_table_privilege(to_regclass(%s), 'SELECT'), false)
"""


def readable(conn: Any, schema: str, relation: str) -> bool:
    """Whether the session's login may SELECT ``<schema>.<relation>``, itself or through its
    ``_scoped`` view (psycopg connection). A relation that does not exist counts as readable:
    the statement reading it says the schema is not migrated."""
    s = check_identifier(schema)
    name = f"{s}.{check_identifier(relation)}"
    with conn.cursor() as cur:
        cur.execute(_READABLE, (name, f"{name}_scoped"))
        row = cur.fetchone()
        return bool(row[0])


def through_scoped(statement: Statement, schema: str, names: frozenset[str]) -> Statement:
    """``statement`` reading ``<schema>.<name>_scoped`` for each of ``names`` (the statements
    of storage.queries* name every relation schema-qualified)."""
    if not names:
        return statement
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    # \b: nev.charging_sessions, not nev.charging_sessions_scoped nor nev.charging_sessionsx
    pattern = re.compile(rf"\b{re.escape(check_identifier(schema))}\.({alternatives})\b")
    return Statement(pattern.sub(rf"{schema}.\1_scoped", statement.sql), statement.params)
