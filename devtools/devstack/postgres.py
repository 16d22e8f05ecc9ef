"""The dev stack's PostgreSQL: an initdb cluster in the state directory on a loopback port."""

from __future__ import annotations

import contextlib
import hashlib
import pwd
import shutil
import tempfile
from pathlib import Path
from typing import Final

from devtools.devstack import kafka_secure, prereq
from devtools.devstack.postgres_secure import (
    SERVICE_ROLE,
    give_to,
    psql_env,
    secure_cluster,
    secure_initdb,
    service_role,
)
from devtools.devstack.process import free_port, run, start_time, tail, wait_gone
from devtools.devstack.state import ServiceState
from ingest.errors import UserError

NAME: Final = "postgres"
HOST: Final = "127.0.0.1"
SUPERUSER: Final = "nev"
DATABASE: Final = "nev"  # the service's database; tests make their own next to it
QUERY_DATABASE: Final = "nev_query"  # with shards: the postgres_fdw views, on the first cluster


def dsn(port: int, database: str = DATABASE) -> str:
    return f"postgresql://{SUPERUSER}@{HOST}:{port}/{database}"


def tuned_conf(port: int, *, preload_timescaledb: bool) -> str:
    """postgresql.conf additions for an ingest-heavy dev cluster (2 cores, a few GB to spare).

    Durability stays ON (fsync, synchronous_commit, full_page_writes): the pipeline commits Kafka
    offsets with its rows, and tests that kill processes mid-batch must see what production sees.
    """
    preload = "'timescaledb'" if preload_timescaledb else "''"
    return f"""
# ---- nev-ingest devstack (written by `nev-ingest devstack up`; see devtools/devstack/postgres.py)
listen_addresses = '{HOST}'      # loopback only: a dev cluster with trust auth
port = {port}                     # a free port picked at first `up`, kept in state.json
unix_socket_directories = ''     # TCP only: no clash with a system server's socket, no path limit
max_connections = 200            # pipeline workers x pool + tests' databases in parallel
shared_buffers = 512MB           # keep the hot chunks of the telemetry tables in memory
work_mem = 32MB                  # per sort/hash: regulator queries aggregate by vehicle and time
maintenance_work_mem = 256MB     # faster index builds and VACUUM after bulk COPY
effective_cache_size = 4GB       # planner hint: the OS page cache holds far more than that
random_page_cost = 1.1           # SSD: index scans on (vin, ts) are cheap, prefer them
wal_compression = on             # COPY batches write full-page images; compressing them halves WAL
wal_buffers = 16MB               # absorb a whole COPY batch of WAL before flushing
max_wal_size = 4GB               # fewer forced checkpoints during sustained ingest
min_wal_size = 512MB
checkpoint_timeout = 15min       # spread checkpoint I/O; crash recovery of dev data stays short
checkpoint_completion_target = 0.9
synchronous_commit = on          # offsets are committed with rows: a commit must be durable
jit = off                        # JIT compile time dominates the short queries of the ingest path
max_parallel_workers_per_gather = 1  # 2 cores are shared with Kafka and the workers
autovacuum_vacuum_insert_scale_factor = 0.05  # visibility maps of append-only tables stay fresh
autovacuum_naptime = 10s         # notice freshly filled partitions sooner
timezone = 'UTC'                 # timestamptz shown in UTC; frames carry +08:00 explicitly
log_timezone = 'UTC'
lc_messages = 'C'                # error text tests and people can grep, whatever the locale
log_min_duration_statement = 1000  # log statements slower than 1 s
log_checkpoints = on             # checkpoints are what stall ingest: see when they happen
log_lock_waits = on              # deadlocks and lock waits between workers show up in the log
shared_preload_libraries = {preload}  # timescaledb when this server has it
"""


def _has_timescaledb(binaries: prereq.PostgresBinaries) -> bool:
    share = binaries.share_dir
    return share is not None and (share / "extension" / "timescaledb.control").is_file()


def _reachable(path: Path, user: str) -> bool:
    # The server runs as `user`, who must be able to walk down to its data directory.
    entry = pwd.getpwnam(user)
    for parent in path.resolve().parents:
        info = parent.stat()
        if info.st_uid != entry.pw_uid and not info.st_mode & 0o001:
            return False
    return True


def home_of(state_dir: Path, user: str | None, name: str) -> Path:
    """Where the cluster lives: ``<state_dir>/<name>``, unless we are root and the server's
    user cannot reach the state directory (a checkout under /root, say); then a directory in
    /tmp named after the state directory, recorded in state.json like everything else."""
    home = state_dir / name
    if user is None or _reachable(state_dir, user):
        return home
    fallback = _fallback_root(state_dir) / name
    print(f"devstack: {user} cannot reach {state_dir}; the cluster lives in {fallback}", flush=True)
    return fallback


def fallback_root_glob() -> str:
    """Where ``home_of`` keeps the clusters it cannot put in their state directories."""
    return str(Path(tempfile.gettempdir()) / "nev-devstack-*")


def _fallback_root(state_dir: Path) -> Path:
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"nev-devstack-{digest}"


def fallback_home(state_dir: Path, name: str, data_dir: str | None = None) -> Path | None:
    """The directory ``home_of`` made in /tmp for the cluster of service ``name`` of
    ``state_dir``, if there is one. ``data_dir``: where ``state.json`` says the cluster is
    (found by that should ``TMPDIR`` differ from ``up``'s); else where ``home_of`` would put it
    now (an ``up`` that failed before recording it). Only a real directory
    ``nev-devstack-<digest of state_dir>/<name>`` qualifies, whatever ``state.json`` says."""
    root = _fallback_root(state_dir)
    candidates = [root / name]
    if data_dir:
        candidates.insert(0, Path(data_dir).parent)
    for home in candidates:
        mine = home.name == name and home.parent.name == root.name
        if mine and home.is_dir() and not home.is_symlink():
            return home
    return None


def remove_home(state_dir: Path, name: str, data_dir: str | None = None) -> Path | None:
    """Delete the stopped cluster of service ``name`` of ``state_dir`` that ``home_of`` put in
    /tmp (``fallback_home``): removing the state directory does not reach it, and the next
    ``up`` of a state directory at the same path would start the old cluster again. Returns
    the directory deleted, or None when there is none (the cluster lives in the state
    directory: the caller's to delete). Refused while a server runs in it."""
    home = fallback_home(state_dir, name, data_dir)
    if home is None:
        return None
    refuse_if_live(home / "data")
    shutil.rmtree(home)
    with contextlib.suppress(OSError):
        home.parent.rmdir()  # once the last of the state directory's clusters is gone
    return home


def refuse_if_live(data: Path) -> None:
    """A ``UserError`` that says how to stop it if a server runs in cluster ``data``."""
    try:
        pid = int((data / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return
    if start_time(pid) is None:
        return
    user = prereq.server_user()
    stop = f"pg_ctl -D {data} stop -m fast"
    if user is not None:
        stop = f"runuser -u {user} -- {stop}"  # pg_ctl refuses to run as root
    raise UserError(
        f"devstack: PostgreSQL (pid {pid}) still runs in {data}; nothing was deleted: stop it "
        f"({stop}, pg_ctl from the server's bin directory), then purge again"
    )


def up(
    state_dir: Path,
    previous: ServiceState | None,
    bin_dir: str,
    timeout_s: float,
    *,
    name: str = NAME,
    secure: bool = False,
) -> ServiceState:
    """Create the cluster on first use, then start it; returns its new state. ``name`` is the
    service (``postgres``, or ``postgres-<i>`` for shard i) and its directory. ``secure``: TLS
    and scram-sha-256 only, the service role ``nev_service`` (kept over restarts once chosen)."""
    secure = secure or bool(previous and previous.extra.get("secure"))
    files = kafka_secure.prepare(state_dir) if secure else None
    binaries = prereq.postgres(bin_dir)
    user = prereq.server_user()
    home = home_of(state_dir, user, name)
    data = home / "data"
    setup_log = home / "setup.log"  # initdb / pg_ctl output, written by us
    home.mkdir(parents=True, exist_ok=True)
    give_to(home, user)
    port = free_port(previous.port if previous else None)

    if not (data / "PG_VERSION").is_file():
        if data.exists():
            shutil.rmtree(data)  # a half-made cluster from an interrupted first `up`
        run(
            [
                binaries.exe("initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                *(secure_initdb(files, home, user) if files else ["--auth=trust"]),
                "--encoding=UTF8",
                "--locale=C",  # byte-order collation: fast, and the same on every machine
            ],
            what=f"initdb ({binaries.bin_dir})",
            log=setup_log,
            user=user,
        )
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(tuned_conf(port, preload_timescaledb=_has_timescaledb(binaries)))
        if files is not None:
            secure_cluster(files, data, user)
    return start(
        binaries, name, data, port, timeout_s, user=user, create_database=DATABASE, files=files
    )


def start(
    binaries: prereq.PostgresBinaries,
    name: str,
    data: Path,
    port: int,
    timeout_s: float,
    *,
    user: str | None,
    create_database: str | None,
    files: kafka_secure.SecureFiles | None = None,
) -> ServiceState:
    """Start the cluster in ``data`` on ``port`` (a primary or a standby) and wait until it
    accepts connections; ``create_database`` is made unless it exists (None on a standby,
    which is read-only and gets every database from its primary). ``files``: a ``--secure``
    cluster, whose url is the service role's (the role and its password replicate too)."""
    log = data.parent / "postgres.log"
    setup_log = data.parent / "setup.log"
    _set_port(data / "postgresql.conf", port)
    run(
        [
            binaries.exe("pg_ctl"),
            "start",
            "-D",
            str(data),
            "-l",
            str(log),
            "-w",  # pg_ctl waits until the server accepts connections (postmaster.pid "ready")
            "-t",
            str(int(timeout_s)),
        ],
        what=f"PostgreSQL start (server log: {log})",
        log=setup_log,
        user=user,
    )
    try:
        pid = _postmaster_pid(data)
        started = start_time(pid)
        if started is None:
            raise UserError(f"PostgreSQL exited after start; see {log}: {tail(log)}")
        if create_database is not None:
            env = psql_env(files)
            _create_database(binaries.exe("psql"), port, create_database, env)
            if files is not None:
                psql = binaries.exe("psql")
                service_role(psql, dsn(port, "postgres"), create_database, files, env)
    except BaseException:
        _stop(binaries.bin_dir, data, user, setup_log, timeout_s)
        raise
    extra = {
        "data_dir": str(data),
        "bin_dir": str(binaries.bin_dir),
        "version": binaries.version,
        "maintenance_dsn": dsn(port, "postgres"),
        "user": user,
        "secure": files is not None,
    }
    if files is not None:
        extra["tls_dir"] = str(files.tls_dir)
    return ServiceState(
        name=name,
        port=port,
        # secure: what the service connects as (the superuser is maintenance_dsn's)
        url=dsn(port).replace(f"{SUPERUSER}@", f"{SERVICE_ROLE}@") if files else dsn(port),
        log=str(log),
        pid=pid,
        started=started,
        extra=extra,
    )


def _set_port(conf: Path, port: int) -> None:
    # The last `port =` line wins in postgresql.conf: rewrite ours when the old port was taken.
    lines = conf.read_text().splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("port = "):
            comment = lines[i].partition("#")[2]
            lines[i] = f"port = {port}".ljust(34) + (f"#{comment}" if comment else "")
            break
    conf.write_text("\n".join(lines) + "\n")


def _postmaster_pid(data: Path) -> int:
    try:
        return int((data / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        raise UserError(f"PostgreSQL started but {data}/postmaster.pid is unreadable") from None


def ensure_database(svc: ServiceState, database: str) -> str:
    """Create ``database`` on the running cluster ``svc`` unless it exists; its DSN."""
    env = psql_env(secure_files(svc))
    _create_database(str(Path(svc.extra["bin_dir"]) / "psql"), svc.port, database, env)
    return dsn(svc.port, database)


def secure_files(svc: ServiceState) -> kafka_secure.SecureFiles | None:
    """The certificates and passwords of a cluster started ``--secure`` (else None)."""
    if not svc.extra.get("secure"):
        return None
    return kafka_secure.SecureFiles(Path(svc.extra["tls_dir"]))


def _create_database(
    psql_exe: str, port: int, database: str, env: dict[str, str] | None = None
) -> None:
    psql = [
        psql_exe,
        "-X",
        "-Atq",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        dsn(port, "postgres"),
    ]
    # database is one of our constants (nev, nev_query), never user input
    query = f"SELECT 1 FROM pg_database WHERE datname = '{database}'"
    exists = run([*psql, "-c", query], what=f"psql (is there a {database} database?)", env=env)
    if exists.strip() != "1":
        run(
            [*psql, "-c", f"CREATE DATABASE {database}"],
            what=f"CREATE DATABASE {database}",
            env=env,
        )


def down(svc: ServiceState, timeout_s: float) -> None:
    """Stop the cluster with pg_ctl (it signals the postmaster pid from postmaster.pid)."""
    _stop(
        Path(svc.extra["bin_dir"]),
        Path(svc.extra["data_dir"]),
        svc.extra.get("user"),
        Path(svc.log).with_name("setup.log"),
        timeout_s,
    )
    # pg_ctl -w returns once postmaster.pid is gone, which the postmaster removes just before
    # it exits: on a loaded machine the process can outlive pg_ctl by a moment. `down` means
    # stopped, so wait for the process itself (by pid and start time). One that is still there
    # is an error: the caller would otherwise record the service as stopped, and `down --purge`
    # would go on to delete the data of a server that still runs.
    pid, started = svc.pid, svc.started
    if pid is not None and started is not None and not wait_gone(pid, started, timeout_s):
        raise UserError(
            f"PostgreSQL (pid {pid}) still runs {timeout_s:g} s after pg_ctl stop "
            f"returned; check it with ps -p {pid}, stop it, then run down again"
        )


def _stop(bin_dir: Path, data: Path, user: str | None, log: Path, timeout_s: float) -> None:
    # "fast": roll back open sessions and shut down cleanly (a checkpoint, no recovery next time).
    run(
        [
            str(bin_dir / "pg_ctl"),
            "stop",
            "-D",
            str(data),
            "-m",
            "fast",
            "-w",
            "-t",
            str(int(timeout_s)),
        ],
        what="PostgreSQL stop",
        log=log,
        user=user,
    )
