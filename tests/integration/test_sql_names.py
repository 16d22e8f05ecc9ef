"""The rule for names spliced into SQL unquoted (``contract.sql_names``: settings' schema and
role names, ``--schema``, ``roles grant LOGIN``) is PostgreSQL's own, checked on the server."""

from __future__ import annotations

import psycopg
import pytest

from contract.sql_names import RESERVED, is_plain_name

pytestmark = pytest.mark.integration


class _Rollback(Exception):
    """Undoes a CREATE SCHEMA that worked."""


def test_the_reserved_words_hold_the_server_s(postgres_dsn: str) -> None:
    # Every word this server reserves (the list holds later versions' too: system_user, 16+).
    with psycopg.connect(postgres_dsn) as conn:
        rows = conn.execute("SELECT word FROM pg_get_keywords() WHERE catcode IN ('R', 'T')")
        assert {r[0] for r in rows} <= RESERVED


@pytest.mark.parametrize("name", ["pg_nev_test", "user", "select", "left", "nev_plain_ok"])
def test_the_server_refuses_exactly_the_names_the_rule_refuses(
    postgres_dsn: str, name: str
) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        refused = False
        try:
            with conn.transaction():
                conn.execute(f"CREATE SCHEMA {name}".encode())
                raise _Rollback
        except _Rollback:
            pass
        except psycopg.Error:
            refused = True
    assert refused == (not is_plain_name(name))


@pytest.mark.parametrize("name", ["public", "none"])
def test_public_and_none_are_refused_as_roles(postgres_dsn: str, name: str) -> None:
    # why roles grant's LOGIN refuses them too (ingest.cli.args.login_name)
    with psycopg.connect(postgres_dsn, autocommit=True) as conn, pytest.raises(psycopg.Error):
        conn.execute(f"CREATE ROLE {name}".encode())
