"""The batch writer: frames + their Kafka offsets -> one transaction, exactly once.

A batch may mix the decoded kinds (vehicle ``FrameRows``, ``ChargerRows``, ``PackFrameRows``:
a worker's partitions may belong to several topics); each goes to its own tables.

Per ``write_batch`` call, in ONE transaction (docs/storage.md, "Write path"):

1. fence: lock the batch's partitions in ``consumer_offsets``; a partition whose stored offset
   is past the batch's start is skipped (replay / stale consumer) and reported as fenced;
2. rows: a plain binary COPY per table of the frames of the other partitions - nothing stored
   can be in the way, the offsets prove it. Reissued (0x03) frames, which may repeat data the
   device sent before, go through the conflict-skipping path instead (staging + ON CONFLICT
   DO NOTHING), and so does a COPY that still meets an existing key (a device sending the same
   frame twice): the batch's load is redone that way inside a savepoint, off the hot path;
3. ``latest_state``: the newest state per vehicle, merged from the staged vehicle rows in one
   statement right after they load (storage/latest.py), and per charger connector and
   standalone pack (storage/latest_kinds.py). With ``latest_interval_ms`` > 0 the newest tuples
   wait in memory per partition instead (storage/latest_pending.py) and a partition's are
   merged here once per interval; the offsets then carry ``latest_from``, where they begin;
4. the caller's ``before_commit`` hook (the rule engine stores its alerts here);
5. the partitions' next offsets; COMMIT.

Before the transaction (plain PostgreSQL, ``partition_interval`` set): the partitions of the
batch's frame times that the writer has not seen yet are created on another connection
(``storage.partitions``): a cached set of slots, so a batch of known slots costs no query.
Which times may be stored at all is the pipeline's decision (its frame-time window), made
before the batch gets here. A COPY that still finds no partition (dropped behind the cache)
refreshes the cache and redoes the transaction once.

Transient errors (connection lost, serialization failure, deadlock, admin shutdown ...) retry
the whole batch with exponential backoff on a fresh connection; nothing is lost because
nothing was committed. Unless the error came with the COMMIT sent (its answer lost: the write
timeout cutting the connection then, a reset, a failover): the attempt may have committed, and
the retry asks the server - that transaction's status (``txid_status``, read behind the
fence's row locks), with every partition at that attempt's end offset (or past it) - and
finishes a batch that committed as that attempt left it (committed, its latest_state tuples
pending or merged) instead of taking it for another consumer's (fenced); one that did not is
written as usual. A caller retrying after ``StorageUnavailable`` gets the same. A batch
without offsets (alert changes only) records its transaction's id with an advisory lock
instead of the fence: not written twice either, unless the server can no longer say (then
written again: a duplicate, never a loss; storage/unsure.py).

A permanent data error (a value the column refuses) is unexpected: it is isolated by
bisecting the batch's frames under savepoints inside the same transaction, the bad frames are
left out and returned, the rest commit with the offsets. Bisecting is bounded
(``bisect_max_loads`` failed loads, ``bisect_max_s``): past the bound the frames still mixed
with a bad one are returned as rejected too (the caller dead-letters them, nothing is lost),
so one batch cannot hold its partitions - or a rebalance - for minutes (``storage.isolate``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from operator import attrgetter
from typing import Any, Final

from storage import offsets as offsets_sql
from storage.batch import (
    REISSUE,
    BatchOutcome,
    Decoded,
    RejectedFrame,
    WriteResult,
    WriterHooks,
    is_reissue,
    row_times_ms,
)
from storage.connect import PoolParams, ServerInfo, create_pool
from storage.errors import ErrorKind, SchemaError, StorageError, StorageUnavailable, classify
from storage.isolate import Attempt, LoadBatch, NoPartition, load_isolating
from storage.latest_pending import Delta, PendingLatest
from storage.latest_tx import flush, in_transaction
from storage.loaders import Loader, make_loader
from storage.migrate import require_current
from storage.offsets import OffsetRange, TopicPartition
from storage.params import TIMESERIES_TABLES, Dedupe, SchemaMode, WriterParams
from storage.partitions import SlotCache, ensure
from storage.unsure import (
    Sent,
    Unsure,
    UnsureWrites,
    committed_by,
    did_commit,
    mark,
    ranges_key,
)

__all__ = ["BeforeCommit", "StorageWriter"]

log = logging.getLogger(__name__)

_COMMAND: Final = attrgetter("command")

BeforeCommit = Callable[[Any, BatchOutcome], Awaitable[None]]


class StorageWriter:
    """Writes batches of decoded frames with their Kafka offsets (see the module docstring).

    Build with ``await StorageWriter.open(pool_params, writer_params)`` (owns its pool) or
    around an existing asyncpg pool. One writer may serve concurrent ``write_batch`` calls
    (each takes its own pool connection).
    """

    def __init__(
        self,
        pool: Any,
        params: WriterParams,
        *,
        server: ServerInfo,
        hooks: WriterHooks | None = None,
        owns_pool: bool = False,
        mode: SchemaMode | None = None,
    ) -> None:
        self._pool = pool
        self._params = params
        self._schema = params.schema
        self.server = server
        self.loader: Loader = make_loader(server.loader(params.loader))
        self._hooks = hooks or WriterHooks()
        self._owns_pool = owns_pool
        # Partitions on demand: plain PostgreSQL only, when an interval is configured.
        interval = params.partition_interval
        plain = mode is SchemaMode.PLAIN and interval is not None
        self._slots = SlotCache(interval) if plain and interval is not None else None
        # The latest_state tuples committed but not merged yet, per partition.
        self.latest = PendingLatest(params.latest_interval_ms / 1000, params.latest_cap)
        # Batches given up on (StorageUnavailable) after a COMMIT whose answer was lost: their
        # retry looks whether the database has them (storage/unsure.py).
        self._unsure = UnsureWrites()

    @classmethod
    async def open(
        cls, pool: PoolParams, params: WriterParams, *, hooks: WriterHooks | None = None
    ) -> StorageWriter:
        """Connect, check that the schema is migrated, and return a writer owning its pool."""
        if pool.schema != params.schema:
            raise ValueError(f"pool schema {pool.schema} != writer schema {params.schema}")
        asyncpg_pool, server = await create_pool(pool)
        try:
            async with asyncpg_pool.acquire() as conn:
                status = await require_current(conn, params.schema)
        except BaseException:
            await asyncpg_pool.close()
            raise
        return cls(
            asyncpg_pool, params, server=server, hooks=hooks, owns_pool=True, mode=status.mode
        )

    async def close(self) -> None:
        """Close the pool if this writer opened it."""
        if self._owns_pool:
            await self._pool.close()

    @property
    def pool(self) -> Any:
        return self._pool

    async def load_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """Stored next offset per partition (absent: none stored); seek there on assignment.

        Call it when the partitions are assigned: a ``latest_from`` stored below the offset
        (pending latest_state tuples a crash lost) makes them refill first (``self.latest``).
        """
        async with self._pool.acquire() as conn:
            stored = await offsets_sql.load_stored(
                conn, self._schema, self._params.consumer_group, partitions
            )
        for tp, s in stored.items():
            self.latest.assigned(tp, s.next, s.latest_from)
        return {tp: s.next for tp, s in stored.items()}

    async def flush_latest(
        self, partitions: Iterable[TopicPartition], *, skip_locked: bool = False
    ) -> int:
        """Merge the pending latest_state tuples of ``partitions`` now, in a transaction of
        their own (revocation, graceful stop: waits for the partitions' offset rows; an idle
        partition: ``skip_locked``, one a write holds merges with that write); returns the
        entities merged (storage.latest_tx.flush)."""
        kind = self.loader.kind
        return await flush(
            self._pool, self._params, kind, self.latest, partitions, skip_locked=skip_locked
        )

    async def ping(self) -> None:
        """``StorageUnavailable`` unless a pooled connection answers."""
        try:
            async with self._pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
        except Exception as exc:
            if classify(exc) is ErrorKind.TRANSIENT:
                raise StorageUnavailable(f"database not answering: {exc}") from exc
            raise

    async def write_batch(
        self,
        frames: Sequence[Decoded],
        offsets: Mapping[TopicPartition, OffsetRange],
        *,
        partitions: Sequence[TopicPartition] | None = None,
        kafka_offsets: Sequence[int] | None = None,
        raw: Sequence[bytes] | None = None,
        before_commit: BeforeCommit | None = None,
        unsure: Unsure | None = None,
    ) -> WriteResult:
        """Write ``frames`` and store ``offsets`` in one transaction (module docstring).

        ``partitions[i]`` is the (topic, partition) of ``frames[i]`` (may be omitted when
        ``offsets`` has one partition); ``kafka_offsets[i]`` its Kafka offset (reported with
        rejects, archived with ``raw``); ``raw[i]`` its bytes for the ``raw_frames`` archive
        (used when the writer's ``raw_frames`` is on). Raises ``StorageUnavailable`` when
        transient errors outlast the retries (nothing committed, or an attempt's COMMIT got no
        answer: calling again with the same offsets - or, without offsets, the same
        ``unsure`` - finds out), ``SchemaError`` when the tables are not what this code
        expects; what ``before_commit`` raised that is not a database error comes back
        unchanged, after the rollback (the caller's to handle).

        ``unsure``: the batch's own record of an attempt whose COMMIT got no answer, kept by
        the caller across calls, for a batch without ``offsets`` (alert changes only: nothing
        tells such batches apart here, so the writer keeps none of theirs after it gave up;
        storage/unsure.py). Without it, the writer keeps a batch's by its offset ranges.
        """
        sources = self._sources(frames, offsets, partitions)
        for name, seq in (("kafka_offsets", kafka_offsets), ("raw", raw)):
            if seq is not None and len(seq) != len(frames):
                raise ValueError(f"{name} has {len(seq)} items for {len(frames)} frames")
        started = time.perf_counter()
        state = Attempt(deadline=started + self._params.bisect_max_s)
        retry = self._params.retry
        delay = retry.initial
        attempt = 0
        key = ranges_key(offsets)
        # The last attempt that sent its COMMIT without an answer (storage/unsure.py): the
        # caller's, or the writer's by the ranges (none for a batch without ranges).
        keeps = unsure is None and bool(key)
        if unsure is None:
            unsure = Unsure(self._unsure.take(key) if keeps else None)
        while True:
            attempt += 1
            state.reset()
            try:
                if self._slots is not None:
                    await self._ensure_partitions(frames, state)
                async with self._pool.acquire() as conn:
                    result = await self._bounded(
                        conn,
                        self._transaction(
                            conn, frames, offsets, sources, kafka_offsets, raw, before_commit,
                            state, unsure,
                        ),
                    )  # fmt: skip
            except NoPartition as exc:
                # A partition was dropped behind the cache (retention, by hand): look again,
                # once; a second miss is bisected like any other data error.
                log.warning("%s; refreshing the partition cache and writing again", exc)
                state.refreshed = True
                if self._slots is not None:
                    self._slots.clear()
                continue
            except _Committed as known:
                # Rolled back (it only locked): the attempt before committed the batch.
                result = self._confirmed(known.sent, known.done, known.fenced)
            except _HookFailed as failed:
                # Not the database's: the caller's own error (e.g. Kafka), rolled back and
                # handed back unchanged for the caller to decide.
                raise failed.error from None
            except Exception as exc:
                # unsure.sent: this attempt's, when it failed with its COMMIT sent (or being
                # sent: it may have committed), else still an earlier one's, or none
                kind = classify(exc)
                if kind is ErrorKind.TRANSIENT and attempt < retry.attempts:
                    log.warning(
                        "batch write failed (%s: %s); retry %d/%d in %.2fs",
                        type(exc).__name__,
                        exc,
                        attempt,
                        retry.attempts - 1,
                        delay,
                    )
                    self._hooks.on_retry(attempt, delay, exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, retry.maximum)
                    continue
                error = self._final_error(kind, exc, attempt, unsure.sent is not None)
                if unsure.sent is not None and keeps:
                    self._unsure.keep(key, unsure.sent)  # the caller's retry looks again
                self._hooks.on_failed(error)
                raise error from exc
            unsure.sent = None  # known now: a caller's record is done with
            done = WriteResult(
                committed=result.committed,
                fenced=result.fenced,
                rejected=result.rejected,
                frames=result.frames,
                rows=result.rows,
                latest=result.latest,
                duplicates_skipped=result.duplicates_skipped,
                conflict_fallbacks=result.conflict_fallbacks,
                attempts=attempt,
                seconds=time.perf_counter() - started,
                bisect_loads=state.splits,
                partitions_created=state.created,
                latest_merged=result.latest_merged,
            )
            self._hooks.on_written(done)
            return done

    async def _bounded(self, conn: Any, work: Awaitable[WriteResult]) -> WriteResult:
        """``work`` (a transaction on ``conn``) cut at ``write_timeout_s``: a lock wait or a
        network black hole would hold it until the server's statement timeout or for ~15 min
        of TCP retransmissions, its shard never seen failing. The connection is terminated,
        not the task cancelled: a cancelled query's ROLLBACK and the pool's reset would wait
        on the same dead link. The statement in progress then fails at once, as transient."""
        limit = self._params.write_timeout_s
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            conn.terminate()

        timer = asyncio.get_running_loop().call_later(limit, expire)
        try:
            return await work
        except Exception as exc:
            if expired:
                raise TimeoutError(
                    f"write transaction not done in {limit:g}s (storage.write_timeout_s); "
                    "its connection was dropped"
                ) from exc
            raise
        finally:
            timer.cancel()

    async def _ensure_partitions(self, frames: Sequence[Decoded], state: Attempt) -> None:
        """Create the partitions of the batch's frame times that the cache does not know, on
        a connection of their own, before the batch's transaction (the creation locks the
        parent tables only for its own short transaction)."""
        slots = self._slots
        assert slots is not None
        missing = slots.missing(row_times_ms(frames))
        if not missing:
            return
        ranges = [slots.bounds(k) for k in missing]
        async with self._pool.acquire() as conn:
            created = await ensure(conn, self._schema, TIMESERIES_TABLES, ranges, slots.interval)
        slots.add(missing)
        state.created += len(created)
        if created:
            log.info(
                "created %d partitions on demand for frame times %s .. %s",
                len(created),
                ranges[0][0].isoformat(),
                ranges[-1][1].isoformat(),
            )

    @staticmethod
    def _final_error(kind: ErrorKind, exc: Exception, attempts: int, unsure: bool) -> Exception:
        if kind is ErrorKind.TRANSIENT:
            done = (
                "an attempt's COMMIT got no answer (the retry finds out whether it committed)"
                if unsure
                else "nothing was committed"
            )
            return StorageUnavailable(
                f"batch not written after {attempts} attempts ({type(exc).__name__}: {exc}); "
                f"{done} - keep the batch and try again when the database is back"
            )
        if kind is ErrorKind.SCHEMA:
            return SchemaError(
                f"the database refused the batch ({type(exc).__name__}: {exc}); is the schema "
                "migrated (nev-ingest migrate) and the role allowed to write it?"
            )
        if isinstance(exc, StorageError):
            return exc
        return StorageError(f"batch write failed: {type(exc).__name__}: {exc}")

    @staticmethod
    def _sources(
        frames: Sequence[Decoded],
        offsets: Mapping[TopicPartition, OffsetRange],
        partitions: Sequence[TopicPartition] | None,
    ) -> list[TopicPartition]:
        if partitions is None:
            if len(offsets) != 1 and frames:
                raise ValueError("partitions= is required when offsets has several partitions")
            only = next(iter(offsets)) if offsets else ("", -1)
            return [only] * len(frames)
        if len(partitions) != len(frames):
            raise ValueError(f"partitions has {len(partitions)} items for {len(frames)} frames")
        out = [(tp[0], tp[1]) for tp in partitions]
        unknown = set(out) - {(t, p) for t, p in offsets}
        if unknown:
            raise ValueError(f"frames of partitions without an offset range: {sorted(unknown)}")
        return out

    async def _transaction(
        self,
        conn: Any,
        frames: Sequence[Decoded],
        offsets: Mapping[TopicPartition, OffsetRange],
        sources: list[TopicPartition],
        kafka_offsets: Sequence[int] | None,
        raw: Sequence[bytes] | None,
        before_commit: BeforeCommit | None,
        state: Attempt,
        unsure: Unsure,
    ) -> WriteResult:
        """One attempt; ``unsure``: an earlier one whose COMMIT got no answer, replaced by
        this one's right before its COMMIT (the caller's, should the COMMIT fail)."""
        group, schema = self._params.consumer_group, self._schema
        ranges = {(t, p): r for (t, p), r in offsets.items()}
        began = {tp: self.latest.parts.get(tp) for tp in ranges}  # a set gone by the commit: lost
        async with conn.transaction():
            fence = await offsets_sql.fence(conn, schema, group, ranges)
            stored = fence.stored
            # No offsets (alert changes only): the id and a lock of its own for a retry.
            xact, server_life = (fence.xact, None) if ranges else await mark(conn)
            fenced: dict[TopicPartition, int] = {}
            for tp, rng in ranges.items():
                have = stored.get(tp)
                if have is not None and (rng.start is None or have > rng.start):
                    fenced[tp] = have
            # The offsets first (they may prove it did not commit: no query), then the
            # transaction's own status: another consumer may have stored the same offsets.
            done = committed_by(unsure.sent, ranges, stored)
            if (
                unsure.sent is not None
                and done is not None
                and await did_commit(conn, unsure.sent, offsets=bool(ranges))
            ):
                raise _Committed(unsure.sent, done, fenced)  # nothing to write
            unsure.sent = None  # it did not (or the partitions went on since): no more doubt
            staging = self._params.dedupe is Dedupe.STAGING
            live, hot, slow = _loads(frames, sources, fenced, state.bad, staging)
            archive = raw if self._params.raw_frames else None
            early = _Early(self.latest, frames, live, sources, ranges, kafka_offsets)
            batch = LoadBatch(
                frames=frames,
                sources=sources,
                kafka_offsets=kafka_offsets,
                raw=archive,
                loader=self.loader,
                schema=self._schema,
                params=self._params,
                may_miss_partitions=self._slots is not None,
                latest=not self.latest.bounded,
                meanwhile=early.run if self.latest.bounded else None,
            )
            for indices, skip in ((hot, False), (slow, True)):
                if indices:
                    await load_isolating(conn, batch, indices, skip, state)
            kept = [i for i in live if i not in state.bad] if state.bad else list(live)
            rejected = [
                RejectedFrame(
                    index=i,
                    topic=sources[i][0],
                    partition=sources[i][1],
                    offset=kafka_offsets[i] if kafka_offsets is not None else None,
                    sqlstate=getattr(exc, "sqlstate", None),
                    detail=f"{type(exc).__name__}: {exc}",
                )
                for i, exc in sorted(state.bad.items())
            ]
            live_tps = [tp for tp in ranges if tp not in fenced]
            deltas, merged, latest_from, placed = await in_transaction(
                conn, self._params, self.loader.kind, self.latest, frames, kept, sources,
                ranges, kafka_offsets, live_tps, state,
                early.deltas if len(kept) == len(live) else None,
            )  # fmt: skip
            if before_commit is not None:
                try:
                    await before_commit(conn, BatchOutcome(kept, rejected, dict(fenced)))
                except Exception as exc:
                    if classify(exc) is not ErrorKind.FATAL:
                        raise  # the hook's own SQL: retried or reported like the batch's
                    raise _HookFailed(exc) from exc
            committed = {tp: rng.next for tp, rng in ranges.items() if tp not in fenced}
            await offsets_sql.store(conn, schema, group, committed, latest_from)
            result = WriteResult(
                committed=committed,
                fenced=fenced,
                rejected=rejected,
                frames=len(kept),
                rows=dict(state.rows),
                latest=state.latest,
                duplicates_skipped=state.skipped,
                conflict_fallbacks=state.fallbacks,
                attempts=0,
                seconds=0.0,
                latest_merged=frozenset(committed if not self.latest.bounded else merged),
            )
            # Last before the COMMIT: an error from here on may come after it took effect.
            sent = unsure.sent = Sent(
                result, deltas, merged, placed, began, committed, xact, server_life
            )
        self._applied(sent, fenced)
        return result

    def _applied(self, sent: Sent, fenced: Mapping[TopicPartition, int]) -> None:
        """``sent`` committed: its tuples join the pending sets, the merged sets are gone;
        the ``fenced`` partitions' sets go (another consumer's now)."""
        committed = sent.committed
        self.latest.committed(
            sent.deltas, sent.merged, committed, time.monotonic(), sent.placed, sent.began
        )
        self.latest.forget(fenced)

    def _confirmed(
        self, sent: Sent, done: set[TopicPartition], fenced: Mapping[TopicPartition, int]
    ) -> WriteResult:
        """The attempt ``sent`` committed though its COMMIT got no answer (storage/unsure.py):
        the batch is done as it left it. Its partitions now past its end offsets were written
        by another consumer since: fenced."""
        gone = {tp: off for tp, off in fenced.items() if tp not in done}
        gone.update({tp: off for tp, off in sent.result.fenced.items() if tp not in done})
        mine = replace(
            sent,
            deltas={tp: d for tp, d in sent.deltas.items() if tp in done},
            merged=[tp for tp in sent.merged if tp in done],
            committed={tp: off for tp, off in sent.committed.items() if tp in done},
        )
        self._applied(mine, gone)
        log.info(
            "commit outcome was unknown; the database has it: the batch is committed",
            extra={"partitions": [f"{t}[{p}]" for t, p in sorted(done)], "fenced": len(gone)},
        )
        return replace(
            sent.result,
            committed=mine.committed,
            fenced=gone,
            latest_merged=sent.result.latest_merged & done,
        )


def _loads(
    frames: Sequence[Decoded],
    sources: list[TopicPartition],
    fenced: Mapping[TopicPartition, int],
    bad: Mapping[int, BaseException],
    staging: bool,
) -> tuple[list[int], list[int], list[int]]:
    """The frames to load (``live``: not of a fenced partition, not rejected before), and of
    them those of the plain COPY (``hot``) and those that skip conflicts (``slow``: reissued
    frames, or every frame under staging dedupe). The usual batch (nothing fenced or rejected,
    no reissue) is answered without a Python statement per frame."""
    if fenced or bad:
        live = [i for i, tp in enumerate(sources) if tp not in fenced and i not in bad]
    else:
        live = list(range(len(sources)))
    if staging:
        return live, [], live
    if REISSUE not in map(_COMMAND, frames):  # == as is_reissue compares
        return live, list(live), []
    hot = [i for i in live if not is_reissue(frames[i])]
    return live, hot, [i for i in live if is_reissue(frames[i])]


class _Early:
    """The batch's latest_state tuples, taken while the server loads its rows (``meanwhile``
    of ``LoadBatch``): for the frames ``live`` when the transaction began, so they stand only
    if the load rejects none of them."""

    def __init__(
        self,
        latest: PendingLatest,
        frames: Sequence[Decoded],
        live: list[int],
        sources: list[TopicPartition],
        ranges: dict[TopicPartition, OffsetRange],
        kafka_offsets: Sequence[int] | None,
    ) -> None:
        self._args = (frames, live, sources, ranges, kafka_offsets)
        self._latest = latest
        self._ran = False  # once per attempt, whatever it gave
        self.deltas: dict[TopicPartition, Delta] | None = None

    def run(self) -> None:
        if self._ran:
            return
        self._ran = True
        try:
            self.deltas = self._latest.batch_deltas(*self._args)
        except Exception:
            # Raised inside the COPY, a bug here would look like a bad row to the load and
            # be bisected, every half running it again, until every frame is rejected. Left
            # to ``in_transaction``, which takes the tuples again after the load and fails
            # the batch as before (nothing committed).
            log.exception("latest_state tuples not taken while the rows loaded")


class _Committed(Exception):
    """An attempt whose COMMIT got no answer committed (storage/unsure.py): the retry's
    transaction has nothing to do but roll back."""

    def __init__(
        self, sent: Sent, done: set[TopicPartition], fenced: dict[TopicPartition, int]
    ) -> None:
        super().__init__("the batch's earlier attempt committed")
        self.sent = sent
        self.done = done
        self.fenced = fenced


class _HookFailed(Exception):
    """The ``before_commit`` hook raised something that is not a database error."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error
