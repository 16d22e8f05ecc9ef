"""deploy/compose/grafana-role.sh, the compose stack's first-start script, on a real PostgreSQL:
the role it makes can read what ``nev-ingest migrate`` creates afterwards (default privileges of
the migrating user) and cannot write."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from tests.integration.pipeline_support import migrate_database

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).parents[2] / "deploy" / "compose" / "grafana-role.sh"


def _run_script(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, check=False
    )


async def test_the_grafana_role_reads_the_migrated_schema_and_writes_nothing(
    fresh_database: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    url = urlsplit(fresh_database)
    role = unique_name("grafana")
    secret = tmp_path / "pw"
    secret.write_text("s3cret-pw\n")
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
    done = await asyncio.to_thread(_run_script, env)
    assert done.returncode == 0, done.stderr
    try:
        await migrate_database(fresh_database)  # after the script, as in compose
        as_role = url._replace(netloc=f"{role}:s3cret-pw@{url.hostname}:{url.port}").geturl()
        with psycopg.connect(as_role) as conn:
            assert conn.execute("SELECT count(*) FROM nev.vehicle_telemetry").fetchone() == (0,)
            assert conn.execute("SELECT count(*) FROM nev.latest_state").fetchone() == (0,)
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                conn.execute("DELETE FROM nev.latest_state")
    finally:
        with psycopg.connect(fresh_database, autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')
