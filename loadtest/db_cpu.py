"""The database server's CPU and the host's idle cores over a benchmark's span, from /proc.

On the 2-core machine the benchmarks run on, the worker and PostgreSQL share the cores, and the
lower ceiling (raw COPY) is PostgreSQL's COPY with the other core mostly idle. Whether a run is
bound by the worker, by the database's work per frame or by neither (the two taking turns) is
read from three figures of the same span: the worker's CPU per frame (bench_support), the
server's CPU per frame and the host's idle cores (docs/performance.md, "The database's CPU per
frame").

The server's CPU is its whole process tree: the postmaster's own time and what it collected from
children that ended (``cutime``/``cstime``), plus every live child's (backends, autovacuum, the
WAL writer, the checkpointer). Every process of the server counts: the work a batch causes
includes its WAL and the vacuum of what it updated. Found from the benchmark's own backend
(``pg_backend_pid()``, whose parent is the postmaster), so it needs no privilege; when the server
is not on this host (its backend is not in /proc), or its live children cannot be listed here
(``/proc/PID/task/PID/children``: a kernel without CONFIG_PROC_CHILDREN, or another user's
process under a restrictive ``hidepid``), ``locate`` gives None and the figures are left out
(``null``), never guessed: a total without the live backends would pass for the server's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import asyncpg

__all__ = ["HostIdle", "ServerCpu", "children", "cpu_seconds"]

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (index 0 = state), or None."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far (0 when it is gone)."""
    fields = _stat(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / _TICK


@dataclass(frozen=True)
class ServerCpu:
    """A local PostgreSQL server, found by its postmaster's pid."""

    postmaster: int

    @classmethod
    async def locate(cls, dsn: str) -> ServerCpu | None:
        """The server behind ``dsn`` if it runs on this host, else None."""
        conn = await asyncpg.connect(dsn)
        try:
            backend = int(await conn.fetchval("SELECT pg_backend_pid()"))
            fields = _stat(backend)
            # Another host's backend pid may exist here as an unrelated process: the parent
            # must be a postgres process too.
            if fields is None or not _is_postgres(int(fields[1])):
                return None
            found = cls(int(fields[1]))
            if children(found.postmaster) is None:
                return None
            return found
        finally:
            await conn.close()

    def seconds(self) -> float:
        """CPU seconds the server has used so far (all of its processes)."""
        own = _stat(self.postmaster)
        if own is None:
            raise RuntimeError(f"the PostgreSQL server (pid {self.postmaster}) is gone")
        # utime, stime, cutime, cstime: fields 14-17 of stat, 11-14 here
        # Read order: the postmaster's cutime first, then the list of live children. A backend
        # that ends and is reaped in between is in neither (missed in this one reading, ~its
        # CPU of that instant); it is in cutime at the next one, so a span's difference is off
        # by at most that, never counted twice (a child is reaped once, listed only alive).
        total = sum(int(v) for v in own[11:15])
        pids = children(self.postmaster)
        if pids is None:  # readable at locate: the server went away meanwhile
            raise RuntimeError(
                f"the PostgreSQL server's (pid {self.postmaster}) children cannot be listed "
                "any more: it stopped or restarted during the benchmark; run it again"
            )
        # a child ended since the listing counts 0 here: in cutime at the next reading
        return total / _TICK + sum(cpu_seconds(int(pid)) for pid in pids)


def children(pid: int) -> list[str] | None:
    """The live children of single-threaded ``pid`` (the postmaster, a service's main
    process), or None if the kernel's list cannot be read."""
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None


def _is_postgres(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip().startswith(("postgres", "postmaster"))
    except OSError:
        return False


@dataclass(frozen=True)
class HostIdle:
    """The host's idle CPU time so far (idle + iowait, seconds summed over its cores)."""

    seconds: float

    @classmethod
    def now(cls) -> HostIdle:
        with open("/proc/stat") as f:
            parts = f.readline().split()  # "cpu user nice system idle iowait ..."
        return cls((int(parts[4]) + int(parts[5])) / _TICK)

    def cores_since(self, earlier: HostIdle, wall_s: float) -> float:
        """Idle cores on average between ``earlier`` and this reading ``wall_s`` apart."""
        return (self.seconds - earlier.seconds) / wall_s if wall_s > 0 else 0.0
