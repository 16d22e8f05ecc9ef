"""The sink's writers, one per shard, of which some may not be connected yet.

A worker starts with the shards that answer: a shard that cannot be reached, or whose server
refuses the connection itself (login, pg_hba, CONNECT privilege, the database missing or not
accepting connections: ``storage.errors.ServerRefused``), is down, not fatal. Its partitions
stay paused (its offsets cannot be read, so they are never sought) and it is tried again in
the background until it answers; then its partitions are loaded and resume like those of a
shard that came back. Only when no shard answers does the start fail (the supervisor restarts
the worker with its backoff), with one line naming each database and what to do.

Until its writer opens, a shard has a stand-in for the latest keeper (an empty pending set:
none of its partitions was loaded, so there is nothing to merge) and ``writer_of`` raises
``StorageUnavailable``, which every caller takes for the shard being down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Final
from urllib.parse import urlsplit

from ingest.transport_errors import postgres_hint
from storage.batch import WriterHooks
from storage.connect import PoolParams
from storage.errors import ErrorKind, StorageUnavailable, classify
from storage.latest_pending import PendingLatest
from storage.offsets import TopicPartition
from storage.params import WriterParams
from storage.writer import StorageWriter

__all__ = ["RETRY_MAX_S", "ShardWriters", "ShardsUnreachable"]

log = logging.getLogger(__name__)

RETRY_INITIAL_S: Final = 1.0  # between attempts to open a shard that was down, doubling ...
RETRY_MAX_S: Final = 30.0  # ... up to this


class ShardsUnreachable(StorageUnavailable):
    """No database of the worker answered at start (each named in the message)."""


class _Absent:
    """A shard whose writer is not open yet, as the latest keeper sees it."""

    def __init__(self, params: WriterParams) -> None:
        self.latest = PendingLatest(params.latest_interval_ms / 1000, params.latest_cap)

    async def flush_latest(
        self, partitions: Iterable[TopicPartition], *, skip_locked: bool = False
    ) -> int:
        return 0  # none of its partitions was loaded: nothing pending to merge


class ShardWriters:
    """``writers[i]``: shard i's ``StorageWriter``, or None while it is down since the start."""

    def __init__(
        self,
        pools: Sequence[PoolParams],
        params: WriterParams,
        *,
        names: Sequence[str],
        hooks: Callable[[int], WriterHooks],
        opened: Callable[[int, StorageWriter], None],
        health: Callable[[bool, int], None],
    ) -> None:
        self._pools = list(pools)
        self._params = params
        self._names = list(names)
        self._hooks = hooks
        self._opened = opened  # set up a writer just opened (before anyone uses it)
        self._health = health
        self.writers: list[StorageWriter | None] = [None] * len(self._pools)
        self._absent = [_Absent(params) for _ in self._pools]
        self._retry: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Open every shard that answers; mark the others down and retry them meanwhile."""
        errors = await asyncio.gather(
            *(self._open(i) for i in range(len(self._pools))), return_exceptions=True
        )
        down: list[int] = []
        for shard, error in enumerate(errors):
            if error is None:
                continue
            if isinstance(error, BaseException) and not _down(error):
                await self.close()
                raise error
            down.append(shard)
        if len(down) == len(self._pools):
            lines = "; ".join(self._why(i, errors[i]) for i in down)  # type: ignore[arg-type]
            raise ShardsUnreachable(f"no database answers: {lines}")
        for shard in down:
            self._health(False, shard)
            log.warning(
                "%s; its partitions stay paused, the other shards write on, and the worker "
                "connects to it again every %g-%g s",
                self._why(shard, errors[shard]),  # type: ignore[arg-type]
                RETRY_INITIAL_S,
                RETRY_MAX_S,
                extra={"shard": shard},
            )
        if down:
            self._retry = asyncio.create_task(self._reconnect(down), name="shard-reconnect")

    async def _open(self, shard: int) -> None:
        writer = await StorageWriter.open(
            self._pools[shard], self._params, hooks=self._hooks(shard)
        )
        self._opened(shard, writer)
        self.writers[shard] = writer

    def _why(self, shard: int, error: BaseException) -> str:
        name = self._names[shard]
        host = urlsplit(self._pools[shard].dsn).hostname or ""
        # The pool wraps a refusal at connect in ServerRefused: the hint reads the driver's own
        # error (a wrong password, pg_hba asking for TLS) under it.
        fix = postgres_hint(error.__cause__ or error, host, name) or (
            f"check that its server is up and reachable and lets this user connect ({name})"
        )
        return f"shard {shard} ({name}) not connected ({type(error).__name__}: {error}): {fix}"

    async def _reconnect(self, down: list[int]) -> None:
        delay = RETRY_INITIAL_S
        while down:
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
            for shard in list(down):
                try:
                    await self._open(shard)
                except Exception as exc:
                    # Not down but unusable (a schema not migrated): said at every attempt,
                    # its partitions paused, until it is fixed.
                    if not _down(exc):
                        log.error(
                            "shard %d (%s) cannot be used: %s", shard, self._names[shard], exc
                        )
                    else:
                        log.debug("shard %d still not connected: %r", shard, exc)
                    continue
                down.remove(shard)
                log.info(
                    "shard %d (%s) connected: its partitions are loaded and resume",
                    shard,
                    self._names[shard],
                    extra={"shard": shard},
                )
                self._health(True, shard)

    def writer_of(self, shard: int) -> StorageWriter:
        writer = self.writers[shard]
        if writer is None:
            raise StorageUnavailable(f"{self._names[shard]} is not connected")
        return writer

    def open_writers(self) -> Iterator[tuple[int, StorageWriter]]:
        for shard, writer in enumerate(self.writers):
            if writer is not None:
                yield shard, writer

    def for_latest(self) -> list[StorageWriter | _Absent]:
        """Each shard's writer, or its stand-in (the latest keeper's view)."""
        return [w if w is not None else self._absent[i] for i, w in enumerate(self.writers)]

    async def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry
            self._retry = None
        for _, writer in self.open_writers():
            await writer.close()


def _down(error: BaseException) -> bool:
    """A shard that does not answer or refuses the connection: down, not a worker failure."""
    return isinstance(error, Exception) and classify(error) is ErrorKind.TRANSIENT
