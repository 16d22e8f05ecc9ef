"""What a benchmark's database does while the service drains: sampled ``pg_stat_activity``.

Statement statistics (pg_stat_statements) say how long each statement ran, not whether the
database had anything to run: on a 2-core machine the worker and PostgreSQL take turns, and a
write lane's open transaction can wait for the worker's event loop between two statements.
This samples the service's connections to one database every ``interval_s`` and reports, over
the samples:

* ``db_idle_share``: the share with no statement running (the database waited for the worker);
* ``active_mean``: statements running at once, on average (at most the write lanes);
* ``idle_in_transaction_mean``: open transactions waiting for their next statement.

Used by ``loadtest.bench_pipeline --db-activity`` (docs/performance.md, "Slices and batch
size"). The sampler's own connection goes to the maintenance database.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import asyncpg

__all__ = ["Activity"]

# The service's connections only: its pools name themselves (storage.connect), the
# benchmark's own progress queries to the same database do not.
_SQL = """
SELECT state FROM pg_stat_activity
WHERE datname = $1 AND backend_type = 'client backend' AND application_name LIKE 'nev-ingest%'
"""


@dataclass
class Activity:
    """Start with ``start()`` once the service works, ``stop()`` returns the figures."""

    dsn: str  # any database of the server (the maintenance one)
    datname: str  # the service's database
    interval_s: float = 0.01
    _samples: int = 0
    _idle: int = 0
    _active: int = 0
    _in_tx: int = 0
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    async def start(self) -> None:
        conn = await asyncpg.connect(self.dsn)
        self._task = asyncio.create_task(self._run(conn))

    async def _run(self, conn: Any) -> None:
        try:
            while True:
                states = [r["state"] for r in await conn.fetch(_SQL, self.datname)]
                active = states.count("active")
                self._samples += 1
                self._active += active
                self._in_tx += states.count("idle in transaction")
                self._idle += active == 0
                await asyncio.sleep(self.interval_s)
        finally:
            await conn.close()

    async def stop(self) -> dict[str, Any]:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        n = max(1, self._samples)
        return {
            "samples": self._samples,
            "db_idle_share": round(self._idle / n, 3),
            "active_mean": round(self._active / n, 3),
            "idle_in_transaction_mean": round(self._in_tx / n, 3),
        }
