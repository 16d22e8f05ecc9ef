"""A streaming read replica of a dev stack PostgreSQL cluster (``devstack up --replica``).

Each shard's cluster ``<name>`` gets a standby ``<name>-replica``: ``pg_basebackup -R`` of the
running primary into ``<state_dir>/<name>-replica/data`` (a hot standby with ``standby.signal``
and ``primary_conninfo`` written by ``-R``), started on a free loopback port of its own. It is
PostgreSQL's own physical replication, as production runs it for regulator queries: every
database of the primary (``nev``, ``nev_query``, tests' databases) is replayed, read-only.

The primary needs nothing changed: PostgreSQL 10+ defaults to ``wal_level = replica`` and
``max_wal_senders = 10``, and initdb's pg_hba.conf trusts replication connections from
127.0.0.1 (the dev clusters are trust-auth on loopback only).

A ``--secure`` primary (postgres_secure.py) takes replication connections only over TLS with
scram-sha-256 (its pg_hba.conf has a ``hostssl replication`` line): the base backup connects as
the superuser with its password and ``verify-full``, and ``-R`` writes those settings into the
standby's ``primary_conninfo`` (postgresql.auto.conf, 0600 in its data directory). The copy
brings the primary's certificate, pg_hba.conf and roles along, so the standby is just as secure.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Final

import psycopg

from devtools.devstack import postgres, prereq
from devtools.devstack.postgres_secure import give_to, psql_env
from devtools.devstack.process import free_port, run
from devtools.devstack.state import ServiceState
from ingest.errors import UserError

SUFFIX: Final = "-replica"


def replica_name(primary: str) -> str:
    return f"{primary}{SUFFIX}"


def primary_name(replica: str) -> str:
    return replica.removesuffix(SUFFIX)


def up(
    state_dir: Path,
    primary: ServiceState,
    previous: ServiceState | None,
    bin_dir: str,
    timeout_s: float,
    *,
    name: str,
) -> ServiceState:
    """Make the standby on first use (a base backup of the running ``primary``), then start it."""
    if not primary.running:
        raise UserError(f"devstack: {name} replicates {primary.name}, which is not running")
    binaries = prereq.postgres(bin_dir)
    user = prereq.server_user()
    home = postgres.home_of(state_dir, user, name)
    data = home / "data"
    home.mkdir(parents=True, exist_ok=True)
    give_to(home, user)
    port = free_port(previous.port if previous else None)
    files = postgres.secure_files(primary)
    if not (data / "standby.signal").is_file():
        if data.exists():
            shutil.rmtree(data)  # a half-copied backup from an interrupted first `up`
        env = None
        if files is not None:
            # pg_basebackup runs as the server's user, and the walreceiver later reads the CA
            # named in primary_conninfo: a copy it can reach (the tls directory may not be).
            ca = home / "ca.crt"
            shutil.copyfile(files.ca, ca)
            give_to(ca, user)
            env = {**(psql_env(files) or {}), "PGSSLROOTCERT": str(ca)}
        run(
            [
                binaries.exe("pg_basebackup"),
                "-D",
                str(data),
                "-d",
                postgres.dsn(primary.port, "postgres"),
                "-R",  # standby.signal + primary_conninfo: start as a streaming standby
                "-X",
                "stream",  # the WAL written during the copy comes along: consistent at once
                "-c",
                "fast",  # checkpoint now rather than wait for the next one
            ],
            what=f"pg_basebackup of {primary.name} (for {name})",
            log=home / "setup.log",
            env=env,
            user=user,
        )
    svc = postgres.start(
        binaries, name, data, port, timeout_s, user=user, create_database=None, files=files
    )
    svc.extra["primary"] = primary.name
    return svc


def wait_replayed(primary_dsn: str, replica_dsn: str, timeout_s: float = 60.0) -> str:
    """Block until the replica has replayed everything the primary had written when this was
    called (``pg_last_wal_replay_lsn() >= pg_current_wal_lsn()``); returns that LSN. A test's
    or a tool's way to read its own writes on the replica without guessing a delay."""
    with psycopg.connect(primary_dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    target = str(row[0])
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(replica_dsn, autocommit=True) as conn:
        while True:
            # pg_wal_lsn_diff compares the LSNs as numbers; NULL until replay has begun
            done = conn.execute(
                "SELECT coalesce(pg_wal_lsn_diff(pg_last_wal_replay_lsn(), %s::pg_lsn) >= 0, "
                "false)",
                [target],
            ).fetchone()
            if done is not None and done[0]:
                return target
            if time.monotonic() > deadline:
                raise UserError(
                    f"devstack: the replica has not replayed {target} within {timeout_s:g}s; "
                    "see its postgres.log (is the primary reachable?)"
                )
            # Each round trip is the wait: no fixed delay, the loop ends as soon as replay does.
