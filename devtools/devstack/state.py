"""The dev stack's state directory and its ``state.json``: what runs where, for tests and tools.

Layout under the state directory (default ``.devstack/``)::

    state.json          services, pids, ports, addresses (read by tests, the demo, devstack env)
    lock                held while up/down change anything (two `up`s at once queue up)
    postgres/           data/ (the initdb cluster) and postgres.log
    postgres-1/         with `up --shards 2`: the second shard's cluster (nev_query is on postgres)
    postgres-replica/   with `up --replica`: a streaming replica of postgres (and postgres-1-replica
                        of postgres-1, ...), pg_basebackup -R, read-only
    kafka/              server.properties, log4j2.properties, data/, server.log
    timescale/          data/ (PGlite files) and server.log
    tls/                with `up --secure`: the CA, the server certificate, secrets/ (0600)

``state.json`` keeps a stopped service's port, so the next ``up`` reuses the same address when it
is still free and ``eval "$(nev-ingest devstack env)"`` keeps pointing at the right place.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from devtools.devstack.process import is_running

STATE_VERSION: Final = 1
MAX_SHARDS: Final = 4
# postgres is shard 0; postgres-<i> the cluster of shard i (devstack up --shards N).
SHARD_SERVICES: Final = tuple(f"postgres-{i}" for i in range(1, MAX_SHARDS))
# <shard>-replica: a streaming read replica of that shard's cluster (devstack up --replica).
REPLICA_SERVICES: Final = tuple(f"{name}-replica" for name in ("postgres", *SHARD_SERVICES))
# down stops them in reverse: timescale, kafka, the replicas, then their primaries.
STATE_FILE: Final = "state.json"
SERVICES: Final = ("postgres", *SHARD_SERVICES, *REPLICA_SERVICES, "kafka", "timescale")


@dataclass(slots=True)
class ServiceState:
    """One service as ``up`` left it. ``pid``/``started`` are None while it is stopped."""

    name: str
    port: int
    url: str  # what clients use: a postgresql:// DSN or host:port bootstrap servers
    log: str
    pid: int | None = None
    started: int | None = None  # kernel start time of pid, see process.start_time
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return is_running(self.pid, self.started)


@dataclass(slots=True)
class StackState:
    state_dir: Path
    services: dict[str, ServiceState] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.state_dir / STATE_FILE

    @classmethod
    def load(cls, state_dir: Path) -> StackState:
        state = cls(state_dir=state_dir)
        try:
            data = json.loads(state.path.read_text())
        except FileNotFoundError:
            return state
        except (OSError, ValueError):
            # A damaged file must not block `down`: start from nothing; ports are re-picked.
            return state
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            return state
        try:
            services = {name: ServiceState(**svc) for name, svc in data["services"].items()}
        except (KeyError, TypeError, AttributeError):
            return state  # hand-edited or from another version: as damaged as bad JSON
        state.services.update(services)
        return state

    def save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        data = {
            "version": STATE_VERSION,
            "state_dir": str(self.state_dir),
            "services": {name: asdict(svc) for name, svc in self.services.items()},
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, self.path)  # atomic: readers never see half a file

    def running(self, name: str) -> ServiceState | None:
        svc = self.services.get(name)
        return svc if svc is not None and svc.running else None


@contextlib.contextmanager
def locked(state_dir: Path) -> Iterator[None]:
    """Serialise up/down across processes (a test session and a developer's shell, say)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / "lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
