"""deploy/compose/grafana-role.sh, the compose stack's first-start script, run against a
database of the dev cluster as TimescaleDB's entrypoint runs it (psql as ``POSTGRES_USER``),
and the role it made dropped again (roles are cluster-wide: one left behind outlives the
test's database)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

SCRIPT = Path(__file__).parents[2] / "deploy" / "compose" / "grafana-role.sh"
PASSWORD = "s3cret-pw"


@contextmanager
def grafana_role(dsn: str, role: str, tmp_path: Path) -> Iterator[str]:
    """Run the script for ``role`` in ``dsn``'s (empty) database; yield the DSN that logs in
    as that role, as Grafana's data source does; drop what the role owns and the role after."""
    url = urlsplit(dsn)
    secret = tmp_path / "grafana-db-password"
    secret.write_text(PASSWORD + "\n")
    env = {
        **os.environ,
        "PGHOST": url.hostname or "127.0.0.1",
        "PGPORT": str(url.port or 5432),
        "POSTGRES_USER": url.username or "postgres",
        "POSTGRES_DB": url.path.lstrip("/"),
        "GRAFANA_DB_USER": role,
        "GRAFANA_DB_PASSWORD_FILE": str(secret),
    }
    if url.password:
        env["PGPASSWORD"] = url.password
    done = subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    try:
        yield url._replace(netloc=f"{role}:{PASSWORD}@{url.hostname}:{url.port}").geturl()
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')
