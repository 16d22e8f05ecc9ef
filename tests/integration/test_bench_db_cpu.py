"""The benchmarks' database-CPU figure (loadtest.db_cpu) on the real local cluster: it finds
the server, counts a backend's work while it runs, and still counts it after the backend
ended (the postmaster's collected children), so a connection closed within a benchmark's span
does not take its CPU with it."""

from __future__ import annotations

import os
import time

import asyncpg
import pytest

from loadtest.db_cpu import HostIdle, ServerCpu, _is_postgres, _stat, cpu_seconds

pytestmark = pytest.mark.integration

# Enough work for several clock ticks of one backend's CPU (~0.2-0.5 s here), not a figure
# the test compares against.
_BURN = "SELECT sum(i) FROM generate_series(1, 3000000) AS i"


async def test_a_backends_cpu_counts_while_it_runs_and_after_it_ended(postgres_dsn: str) -> None:
    server = await ServerCpu.locate(postgres_dsn)
    assert server is not None, "the test cluster runs on this host: it must be found"
    conn = await asyncpg.connect(postgres_dsn)
    pid = int(await conn.fetchval("SELECT pg_backend_pid()"))
    before = server.seconds()
    await conn.fetchval(_BURN)
    used = cpu_seconds(pid)
    assert used > 0, "the burn used no measurable CPU: make it longer"
    live = server.seconds() - before
    assert live >= used - 0.02, f"a live backend's CPU not counted: {live:.3f} < {used:.3f}"

    await conn.close()
    # The postmaster collects the ended backend's CPU (cutime) when it reaps it: wait for the
    # reap (a connection's round trip per look), not for a time.
    for _ in range(1000):
        if _stat(pid) is None:
            break
        await (await asyncpg.connect(postgres_dsn)).close()
    else:
        pytest.fail(f"backend {pid} was never reaped")
    ended = server.seconds() - before
    assert ended >= used - 0.02, f"an ended backend's CPU was lost: {ended:.3f} < {used:.3f}"


async def test_only_a_postgres_process_is_taken_for_the_server(postgres_dsn: str) -> None:
    server = await ServerCpu.locate(postgres_dsn)
    assert server is not None
    assert _is_postgres(server.postmaster)
    assert not _is_postgres(os.getpid())  # a pid that names another program: not the server


def test_host_idle_leaves_out_the_core_this_test_keeps_busy() -> None:
    first, wall0, cpu0 = HostIdle.now(), time.monotonic(), time.process_time()
    while time.process_time() - cpu0 < 0.3:  # one core busy here
        sum(range(10_000))
    wall = time.monotonic() - wall0
    busy = (time.process_time() - cpu0) / wall
    idle = HostIdle.now().cores_since(first, wall)
    # user time counted as idle would exceed what the other cores can give
    assert 0.0 <= idle <= (os.cpu_count() or 1) - busy + 0.05
