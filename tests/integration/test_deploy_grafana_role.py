"""deploy/compose/grafana-role.sh, the compose stack's first-start script, on a real PostgreSQL:
the role it makes can read what ``nev-ingest migrate`` creates afterwards (default privileges of
the migrating user), finds the storage schema's tables unqualified (its search_path, which the
Regulator dashboard's queries rely on) and cannot write."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from tests.integration.grafana_role_support import grafana_role
from tests.integration.pipeline_support import migrate_database

pytestmark = pytest.mark.integration


async def test_the_grafana_role_reads_the_migrated_schema_and_writes_nothing(
    fresh_database: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    with grafana_role(fresh_database, unique_name("grafana"), tmp_path) as as_role:
        await migrate_database(fresh_database)  # after the script, as in compose
        with psycopg.connect(as_role) as conn:
            assert conn.execute("SHOW search_path").fetchone() == ("nev",)
            assert conn.execute("SELECT count(*) FROM nev.vehicle_telemetry").fetchone() == (0,)
            assert conn.execute("SELECT count(*) FROM latest_state").fetchone() == (0,)
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                conn.execute("DELETE FROM latest_state")
