"""`devstack up --replica`: a streaming read replica of the shard's cluster (pg_basebackup -R on
its own port), `env` exporting it, a row written on the primary read on the replica once
replayed, and `nev-ingest query` reading the replica set in `storage.replicas`; with --secure,
the replica streams over TLS + scram and serves the service role like its primary."""

from __future__ import annotations

import json
import shlex
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from devtools.devstack import ENV_REPLICAS, postgres, stack
from devtools.devstack.process import free_port
from devtools.devstack.replica import wait_replayed
from devtools.settings import DevSettings, DevstackSettings
from ingest.cli import main

pytestmark = pytest.mark.integration

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def _exports(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        name, _, value = line.removeprefix("export ").partition("=")
        out[name] = shlex.split(value)[0]
    return out


def test_a_row_written_on_the_primary_is_read_on_the_replica_and_by_query(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = DevSettings(
        devstack=DevstackSettings(state_dir=str(tmp_path / "ds"), kafka_heap="256m")
    )
    try:
        # kafka is needed by `env` only; the replica is what is under test
        state = stack.up(settings, replicas=True, report=False)
        primary, standby = state.services["postgres"], state.services["postgres-replica"]
        assert standby.running and standby.port != primary.port
        assert _exports(stack.env_lines(settings))[ENV_REPLICAS] == standby.url

        with psycopg.connect(standby.url, autocommit=True) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
            assert row == (True,)  # a standby, replaying the primary's WAL
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                conn.execute("CREATE TABLE nope (x int)")

        assert main(["migrate", "--set", f"postgres.dsn={primary.url}"]) == 0
        vin = "LREPLICA000000001"
        with psycopg.connect(primary.url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO nev.latest_state (entity_kind, entity_id, ts, soc_pct) "
                "VALUES ('vehicle', %s, %s, 57)",
                (vin, T0),
            )
        wait_replayed(primary.url, standby.url)
        with psycopg.connect(standby.url) as conn:
            got = conn.execute(
                "SELECT soc_pct FROM nev.latest_state WHERE entity_id = %s", [vin]
            ).fetchone()
        assert got is not None and float(got[0]) == 57

        # The query command reads the replica: postgres.dsn points at a closed port, so an
        # answer can only come from storage.replicas.
        capsys.readouterr()
        nowhere = f"postgresql://nev@127.0.0.1:{free_port()}/nev"
        flags = ["--set", f"postgres.dsn={nowhere}", "--set", f"storage.replicas={standby.url}"]
        assert main(["query", "latest", vin, "--format", "json", *flags]) == 0
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [(r["entity_id"], float(r["soc_pct"])) for r in rows] == [(vin, 57)]

        # a plain `up` after `down` brings the replica back (it was made once)
        stack.down(settings, report=False)
        again = stack.up(settings, report=False)
        assert again.services["postgres-replica"].running
    finally:
        stack.down(settings, report=False, purge=True)


def test_replicas_must_match_the_shards(capsys: pytest.CaptureFixture[str]) -> None:
    one = "postgresql://nev@127.0.0.1:1/nev"
    flags = ["--set", "storage.shards=postgresql://a@h:1/x,postgresql://a@h:2/x"]
    assert main(["query", "latest", "V", *flags, "--set", f"storage.replicas={one}"]) == 2
    assert "one replica per shard" in capsys.readouterr().err


def test_a_replica_of_a_secure_cluster_streams_over_tls_and_serves_the_service_role(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = DevSettings(devstack=DevstackSettings(state_dir=str(tmp_path / "ds")))
    only = ("postgres", "postgres-replica")  # no Kafka: the replication link is under test
    try:
        state = stack.up(settings, only=only, secure=True, report=False)
        primary, standby = state.services["postgres"], state.services["postgres-replica"]
        files = postgres.secure_files(standby)
        assert files is not None and standby.url.startswith("postgresql://nev_service@")
        # libpq reads these: every connection below is the service role's, verify-full
        monkeypatch.setenv("PGPASSWORD", files.password("postgres-service"))
        monkeypatch.setenv("PGSSLMODE", "verify-full")
        monkeypatch.setenv("PGSSLROOTCERT", str(files.ca))

        with psycopg.connect(primary.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE secured (x int)")
            conn.execute("INSERT INTO secured VALUES (7)")
        wait_replayed(primary.url, standby.url)  # streamed: the walreceiver is connected
        # as the superuser: only it sees the walsenders' rows
        superuser = files.password("postgres-superuser")
        with psycopg.connect(primary.extra["maintenance_dsn"], password=superuser) as conn:
            link = conn.execute(
                "SELECT s.ssl FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)"
            ).fetchall()
        assert link == [(True,)]  # the replication connection is encrypted too
        with psycopg.connect(standby.url) as conn:
            assert conn.execute("SELECT x FROM secured").fetchall() == [(7,)]
            assert conn.info.pgconn.ssl_in_use
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(standby.url, sslmode="disable")  # pg_hba: hostssl only
    finally:
        stack.down(settings, report=False, purge=True)
