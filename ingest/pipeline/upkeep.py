"""Storage upkeep across shards (``StorageSink.maintain``), which every worker's housekeeping
starts every few minutes as a task of its own (``ingest.pipeline.lag``).

Every shard at once, each on its own connection and within its own time: one that is down, or
hangs, must not keep the others' partitions ahead and retention waiting (its own writes pause
by themselves, ``StorageSink.health``), nor a worker's stop. The errors come after every pass
ended, each with a note naming its shard.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any, Final

import asyncpg

from storage.errors import StorageUnavailable
from storage.params import SchemaMode, StorageParams
from storage.writer import StorageWriter

__all__ = ["UPKEEP_SHARD_TIMEOUT_S", "describe_failure", "maintain_shards"]

# One shard's pass: a new day's partitions and a summary refresh take seconds; a shard that
# hangs this long (to get its connection, then again for the work) is given up on until the
# next pass.
UPKEEP_SHARD_TIMEOUT_S: Final = 120.0


async def maintain_shards(
    writers: Sequence[StorageWriter | None],
    storage: StorageParams,
    modes: dict[int, SchemaMode],
) -> None:
    """One upkeep pass on each shard (``writers[i]`` is shard i's; None: down since the start,
    nothing to do there now); ``modes``: the shards' schema modes read so far, filled in here."""
    results = await asyncio.gather(
        *(_upkeep(shard, w, storage, modes) for shard, w in enumerate(writers)),
        return_exceptions=True,
    )
    errors: list[Exception] = []
    for shard, result in enumerate(results):
        if isinstance(result, Exception):
            result.add_note(f"storage maintenance of shard {shard}")
            errors.append(result)
        elif isinstance(result, BaseException):
            raise result
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ExceptionGroup("storage maintenance failed on several shards", errors)


def describe_failure(exc: Exception) -> str | None:
    """One line for a failed ``maintain_shards`` whose every error is the database's (down,
    refusing, timed out: ``classify`` says transient), each named by its shard, e.g.
    ``storage maintenance of shard 1: TimeoutError: no connection within 120 s``; None for
    anything else (a bug, a schema problem: its traceback is wanted)."""
    errors = list(exc.exceptions) if isinstance(exc, ExceptionGroup) else [exc]
    if not all(_database_away(e) for e in errors):
        return None
    lines = []
    for e in errors:
        where = "; ".join(getattr(e, "__notes__", ())) or "storage maintenance"
        lines.append(f"{where}: {type(e).__name__}: {e}" if str(e) else f"{where}: {e!r}")
    return "; ".join(lines)


# SQLSTATE classes of a database that is away or busy, not of a query that is wrong: connection
# exceptions, operator intervention (shutdown, cancel), insufficient resources, rollbacks
# (deadlock, serialization).
_AWAY_CLASSES: Final = ("08", "57", "53", "40")


def _database_away(e: BaseException) -> bool:
    """Whether ``e`` says the database is down, unreachable or not answering. Narrower than
    ``classify``'s transient: that counts every OSError and asyncpg InterfaceError too, and a
    bug in the upkeep's SQL ("the server expects 1 argument") must keep its traceback."""
    if isinstance(e, TimeoutError | ConnectionError | StorageUnavailable):
        return True
    state = getattr(e, "sqlstate", None)
    if isinstance(state, str) and state:
        return state[:2] in _AWAY_CLASSES
    # asyncpg's own "connection is closed" (a connection dropped under the pass) is the
    # database's; its other InterfaceErrors (arguments, a released connection) are ours.
    return isinstance(e, asyncpg.InterfaceError) and "closed" in str(e)


async def _upkeep(
    shard: int, writer: StorageWriter | None, storage: StorageParams, modes: dict[int, SchemaMode]
) -> None:
    if writer is None:
        return
    bound = UPKEEP_SHARD_TIMEOUT_S
    try:
        conn = await writer.pool.acquire(timeout=bound)
    except TimeoutError as exc:  # bare: it would say nothing of what waited, nor how long
        raise TimeoutError(f"no connection within {bound:g} s") from exc
    try:
        await _bounded_pass(shard, conn, storage, modes, bound)
    finally:
        # The same bound for the pool's reset of the connection on its return.
        await writer.pool.release(conn, timeout=bound)


async def _bounded_pass(
    shard: int, conn: Any, storage: StorageParams, modes: dict[int, SchemaMode], bound: float
) -> None:
    # A server that stops answering mid-pass: cancelling the pass would not be enough, as
    # its rollback, its lock's release and the pool's reset of the connection would each
    # wait for that server again. Closing the connection fails them all at once: after
    # ``bound``, or as soon as this is cancelled (a worker's stop).
    gave_up = False

    def give_up() -> None:
        nonlocal gave_up
        gave_up = True
        # The driver's error for a connection already closed or released: nothing left to
        # close (a loop callback has no one to raise to).
        with contextlib.suppress(Exception):
            conn.terminate()

    timer = asyncio.get_running_loop().call_later(bound, give_up)
    work = asyncio.ensure_future(_upkeep_pass(shard, conn, storage, modes))
    try:
        await asyncio.shield(work)
    except asyncio.CancelledError:
        give_up()
        await asyncio.gather(work, return_exceptions=True)
        raise
    except Exception as exc:
        if gave_up:
            raise TimeoutError(f"no answer within {bound:g} s: its connection was closed") from exc
        raise
    finally:
        timer.cancel()


async def _upkeep_pass(
    shard: int, conn: Any, storage: StorageParams, modes: dict[int, SchemaMode]
) -> None:
    from storage.maintenance import run
    from storage.migrate import schema_status

    # A given-up pass's statement ends with its connection: the pool's connections carry
    # client_connection_check_interval (storage.connect), so a server that is slow but alive
    # does not run it on, holding the upkeep's and the partitions' locks, until
    # statement_timeout.
    if shard not in modes:
        mode = (await schema_status(conn, storage.schema)).mode
        if mode is None:
            return  # not migrated yet: nothing to keep up
        modes[shard] = mode
    await run(conn, storage, modes[shard], log_context={"shard": shard})
