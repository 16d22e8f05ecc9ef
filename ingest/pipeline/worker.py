"""One pipeline worker: an aiokafka consumer in the group, a batch builder and a writer.

Tasks (one ``asyncio.TaskGroup``: if one fails, all stop and the process exits non-zero, and the
supervisor restarts it):
- the consume loop: ``getmany`` bounded by the in-flight room -> decode into the open batch ->
  seal on size or linger -> hand to the writer; applies backpressure (pause/resume);
- the writer (``writer.Writer``): one transaction per batch, then Kafka commit, DLQ, alerts;
- housekeeping: lag, pool and readiness gauges, database ping when idle.

Offsets: on assignment the consumer seeks to the offsets stored in the database (the copy that
is committed with the rows), not to Kafka's, and only after the sink restored the partition's
alert state (its open alerts and unpublished alert messages); until both worked the partition stays
paused and its records are neither evaluated nor written (retried with backoff). A large restore
goes a slice per consume-loop turn, partition after partition: each partition resumes when its
own state is restored (the consumer keeps polling meanwhile). On
revocation the open batch is sealed and the writer gets ``revoke_timeout_s`` to commit
everything in flight; what it cannot commit in time is abandoned uncommitted (the next owner
reads it again; the fenced offsets in the database keep a late commit from duplicating rows);
then the stop's steps after the drain, each within its bound (``closing.after_revoke_drain_s``).
On stop: no more fetching, flush, commit, leave. A poll waiting for a rebalance to end (aiokafka
returns nothing until the group has settled, which a member that died without leaving holds up
for its whole session timeout) is given up at once, and an assignment that comes while stopping
restores nothing: the stop takes the shutdown deadline, not the rebalance's.

Shards (``storage.shards``): a partition's offsets and alert state are loaded from its shard
(``storage.shards.shard_of``), shard by shard, so a shard that is down keeps only its partitions
paused; a shard whose writes fail pauses its partitions until a write to it works again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from ingest.pipeline.alert_state import SLICE_S, STEP_TIMEOUT_S
from ingest.pipeline.backpressure import Backpressure, Decision
from ingest.pipeline.batch import Batch, BatchBuilder, TopicDecoder
from ingest.pipeline.closing import (
    COMMIT_FLUSH_S,
    DELETE_PUBLISHED_S,
    EXITS,
    FLUSH_LATEST_S,
    HOUSEKEEPING_S,
    POOLS_S,
    WRITER_S,
    close_within,
    end_within,
    within,
)
from ingest.pipeline.commits import KafkaCommitter
from ingest.pipeline.kafka_clients import (
    RebalanceListener,
    RenewableProducer,
    start_client,
    stop_clients,
    stop_quietly,
)
from ingest.pipeline.lag import LagReporter
from ingest.pipeline.latest_keeper import end_refills, flush_latest, seek_target, take_refill
from ingest.pipeline.metrics import PipelineMetrics
from ingest.pipeline.options import WorkerOptions
from ingest.pipeline.sink import Sink
from ingest.pipeline.turns import lanes_turn
from ingest.pipeline.writer import Writer
from storage.shards import shard_of

__all__ = ["Worker"]

log = logging.getLogger(__name__)

# A revoke step left behind: the revoke, and the worker, go on (``_after_revoke_drain``).
_REVOKE_GOES_ON: Final = "the revoke goes on without it"

# A shard's stored offsets (one small query): a database that does not answer within this keeps
# the shard's partitions paused, retried after a backoff.
READ_OFFSETS_S: Final = 10.0
# One call of the alert state's restore: a slice of work, its last page bounded on its own, and
# the connection's release (which asyncpg shields, so the sink's own bounds do not end it).
RESTORE_CALL_S: Final = SLICE_S + STEP_TIMEOUT_S + 5.0
# The assignment callback's share of kafka.session_timeout_ms for its reads: aiokafka starts
# the member's heartbeat only once the callback returns, and a heartbeat comes at most a third
# of the session after that (kafka_limits), so the broker never goes a session without one.
ASSIGNED_SHARE: Final = 1 / 3

# Records decoded between two of the write lanes' turns (``Worker._add``): ~5 ms of decoding.
DECODE_SLICE: Final = 500


def _clocks() -> tuple[float, float]:
    """The wall and this thread's CPU clocks, before an await of the consume loop."""
    return time.perf_counter(), time.thread_time()


def _idle_since(start: tuple[float, float]) -> float:
    """Of the wall time since ``start`` (``_clocks``), the part the event loop's thread was
    idle: while the consume loop awaits, the same loop runs the write lanes, aiokafka's
    fetcher, commits and housekeeping, whose CPU is no wait (measured: 42 % of a poll, 21 % of
    a room wait). What is left is the time the loop had nothing to run (its thread's CPU
    clock, not the process's: a thread's work is not the loop's). Floored at 0: the two
    clocks tick at different resolutions."""
    wall, cpu = start
    return max(0.0, (time.perf_counter() - wall) - (time.thread_time() - cpu))


class Worker:
    """See the module docstring. ``run`` returns when ``stop`` is set and everything flushed."""

    def __init__(
        self,
        *,
        options: WorkerOptions,
        make_consumer: Callable[[], Any],
        make_producer: Callable[[], Any],
        sink: Sink,
        decoders: dict[str, TopicDecoder],
        metrics: PipelineMetrics,
    ) -> None:
        self.options = options
        self._make_consumer = make_consumer
        self._make_producer = make_producer
        self.sink = sink
        self.metrics = metrics
        self.bp = Backpressure(
            options.max_in_flight,
            max_bytes=options.max_in_flight_bytes,
            resume_ratio=options.resume_ratio,
            pause_after_s=options.pause_after_s,
            shards=options.shards,
            min_share=options.batch_max_frames,
            observe=metrics.in_flight.set,
            observe_bytes=metrics.in_flight_bytes.set,
        )
        # The consume loop's waits by cause (metrics.WAIT_CAUSES), children looked up once.
        wait = metrics.worker_wait
        self._wait_poll = wait.labels(cause="poll")
        self._wait_room = wait.labels(cause="room")
        self._wait_lane = wait.labels(cause="lane")
        self._wait_restore = wait.labels(cause="restore")
        self.builder = BatchBuilder(
            decoders, window=options.window, max_value_bytes=options.max_record_bytes
        )
        self.consumer: Any = None
        self.committer: KafkaCommitter
        self.writer: Writer | None = None
        self.owned: set[Any] = set()
        self.positions: dict[Any, int | None] = {}  # tp -> offset the DB holds before next batch
        self.needs_seek: set[Any] = set()  # assigned, but offsets / alert state not loaded yet
        self.restored: set[Any] = set()  # assigned, and the sink restored its alert state
        self.rewind: dict[Any, int] = {}  # tp -> first offset fetched before the seek (skipped)
        self.stored: dict[Any, int | None] = {}  # tp -> offset stored in the DB at assignment
        # tp -> how often it was moved from outside the consume loop (revoked, assigned, sought):
        # records fetched before a move are stale, and a decode in progress stops (``_add``).
        self.moves: dict[Any, int] = {}
        self.lag: LagReporter | None = None
        self.last_turn = time.time()
        self._loading = asyncio.Lock()
        # Per shard, between failed loads of its offsets / alert state: the wait and when the
        # next attempt is due. Not a sleep of the loop: the other shards' partitions go on.
        self._backoff_s: dict[int, float] = {}
        self._retry_at: dict[int, float] = {}
        self._assignments = 0  # bumped on every assignment
        self._stopping = False
        self._stop: asyncio.Event | None = None  # set: stop fetching (run's argument)
        self._down: set[int] = set()  # shards whose partitions are paused (for the log)
        self._full: set[int] = set()  # shards held for their share of the bound (the log)

    # -- lifecycle ---------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        o = self.options
        self._stop = stop
        self.sink.set_health_listener(self.bp.set_sink_healthy)
        # Until the consume loop turns, the start phase stamps the heartbeat at each step it
        # makes (here, each Kafka connection attempt) and says what it knows of the database:
        # a worker waiting for Kafka is reported as that ("not connected to Kafka",
        # NevIngestKafkaUnreachable), not as stalled or without a database.
        self.metrics.heartbeat.set(time.time())
        # Not in the group until the first assignment: Kafka answering (kafka_connected) is
        # not membership, and a group stuck in a rebalance assigns nobody.
        self.metrics.in_group.set(0)
        await self.sink.start()
        # The sink's pools opened: every shard answered, or the ones down are failing now.
        self.metrics.db_connected.set(1 if self.bp.all_healthy else 0)
        self.metrics.heartbeat.set(time.time())
        producer = await self._start_kafka("producer", self._make_producer, stop)
        consumer = None
        if producer is not None:
            consumer = await self._start_kafka("consumer", self._make_consumer, stop)
        if producer is None or consumer is None:
            # Stopped before the broker answered: nothing was fetched, nothing to flush.
            if producer is not None:
                await stop_quietly(producer)
            await self._close_sink()
            log.info("stopped while waiting for Kafka")
            return
        self.consumer = consumer
        # Replaced by a new one when the broker refuses a dead letter (ingest.pipeline.publish).
        producers = RenewableProducer(
            producer, self._make_producer, self.metrics.producer_replacements.inc
        )
        self.committer = KafkaCommitter(consumer, lambda: self.owned)
        self.writer = writer = Writer(
            sink=self.sink,
            producers=producers,
            metrics=self.metrics,
            backpressure=self.bp,
            dlq_topic=o.dlq_topic,
            alerts_topic=o.alerts_topic,
            commit=self._committer_offer,
            on_fenced=self._on_fenced,
            backoff_initial_s=o.retry_backoff_initial_s,
            backoff_max_s=o.retry_backoff_max_s,
            lanes=o.write_lanes,
            kinds=o.topic_kinds,
            shards=o.shards,
        )
        self.lag = lag = LagReporter(self, group_id=o.group_id, interval_s=o.lag_interval_s)
        # Outside the task group, watched from inside it (a failure still stops everything):
        # the group's exit waits for its tasks without a bound, and these are ended on the way
        # out within HOUSEKEEPING_S (their awaits, a Kafka commit or a storage upkeep pass,
        # can outlive a cancellation).
        # The writer too: closed, it ends once its lanes are idle, but an abandoned write whose
        # cancellation is swallowed (a COMMIT under way) would hold the group's exit for ever.
        side = (
            asyncio.create_task(lag.run(), name="housekeeping"),
            asyncio.create_task(self.committer.run(), name="kafka-commit"),
        )
        write_task = asyncio.create_task(writer.run(), name="writer")
        raised: set[asyncio.Task[None]] = set()  # failures _watch raised (reported so)
        try:
            consumer.subscribe(list(o.topics), listener=RebalanceListener(self))
            log.info("consumer started", extra={"topics": list(o.topics), "group": o.group_id})
            async with asyncio.TaskGroup() as tg:
                watch_task = tg.create_task(
                    _watch((*side, write_task), lambda: writer.closed, raised), name="watch"
                )
                stop_task = tg.create_task(stop.wait(), name="stop")
                consume_task = tg.create_task(self._consume_loop(stop), name="consume")
                await asyncio.wait({stop_task, consume_task}, return_when="FIRST_COMPLETED")
                await self._shutdown(consume_task, write_task)
                # Kafka's copy of the offsets, best effort: the database has them anyway.
                await close_within(
                    "Kafka's copy of the offsets", self.committer.flush, COMMIT_FLUSH_S, quiet=True
                )
                watch_task.cancel()
        finally:
            # The writer ended in _shutdown already, unless the run failed before.
            await asyncio.gather(
                end_within(write_task, "the writer", WRITER_S, reported=write_task in raised),
                end_within(
                    side[0], "the housekeeping task", HOUSEKEEPING_S, reported=side[0] in raised
                ),
                end_within(
                    side[1], "the Kafka commit task", HOUSEKEEPING_S, reported=side[1] in raised
                ),
            )
            await self._close(consumer, producers)

    async def _start_kafka(
        self, what: str, make: Callable[[], Any], stop: asyncio.Event
    ) -> Any | None:
        o = self.options
        return await start_client(
            what,
            make,
            stop,
            metrics=self.metrics,
            backoff_initial_s=o.retry_backoff_initial_s,
            backoff_max_s=o.retry_backoff_max_s,
        )

    async def _shutdown(
        self, consume_task: asyncio.Task[None], write_task: asyncio.Task[None]
    ) -> None:
        """Stop fetching, flush the open batch, wait for the writer, within the deadline."""
        self._stopping = True
        # Returns promptly: it checks the flag after each poll, and a poll in progress gives
        # up when the stop is set (``_poll``).
        await consume_task
        assert self.writer is not None
        self._seal()
        deadline = self.options.shutdown_timeout_s
        if await self.writer.drain(deadline):
            log.info("flushed and committed everything in flight")
        else:
            frames = self.writer.abandon("shutdown")
            log.warning(
                "shutdown deadline of %.0fs passed: %d in-flight frames left uncommitted "
                "(they will be read again after the restart; nothing is lost)",
                deadline,
                frames,
            )
        await self._merge_and_delete(self.owned, EXITS)
        self.writer.close()
        await end_within(write_task, "the writer", WRITER_S, cancel=False)

    async def _close(self, consumer: Any, producer: Any) -> None:
        # Every step bounded for real (ingest.pipeline.closing): what does not close in time is
        # left behind. Nothing is lost so: the offsets were committed with the rows before this
        # (or the batches given up uncommitted, read again by the next owner).
        await stop_clients(consumer, producer)
        await self._close_sink()

    async def _close_sink(self) -> None:
        # asyncpg's pool close waits for every connection to be released first: one still
        # held by a task that outlived its cancellation would hold the exit.
        await close_within("the database pools", self.sink.close, POOLS_S)

    # -- consume loop ------------------------------------------------------------------------
    async def _consume_loop(self, stop: asyncio.Event) -> None:
        o = self.options
        consumer = self.consumer
        linger = o.linger_ms / 1000
        while not self._stopping and not stop.is_set():
            self.last_turn = now = time.time()
            # The heartbeat /readyz and NevIngestWorkerStalled read, stamped every turn (one
            # shared-memory write per poll, not per frame): its age is the loop's own, not up
            # to pipeline.lag_interval_s more as when only the housekeeping wrote it.
            self.metrics.heartbeat.set(now)
            if self.needs_seek:  # a restore after a rebalance: stored offsets still to read
                waited = _clocks()
                await self._load_pending_offsets()
                self._wait_restore.inc(_idle_since(waited))
            self._apply_backpressure()
            room = self.bp.room()
            if self.bp.paused or room == 0:
                # All of it is a wait for room, the paused poll too: it fetches (at most a
                # record) only to stay in the group while the database is the bound.
                waited = _clocks()
                if not self.bp.paused:
                    self._seal_at_bound()
                    await self.bp.wait_room(self.bp.pause_due_in())
                else:
                    # Paused: poll anyway, so the group does not drop us (max.poll.interval.ms).
                    # A partition assigned during the poll is not paused yet: what it returns
                    # of one still to be sought is noted, as below, so a seek without a stored
                    # offset comes back to it.
                    polled = await self._poll(
                        stop, timeout_ms=o.poll_timeout_ms // 5, max_records=1
                    )
                    for tp, records in polled.items():
                        if tp in self.needs_seek and records:
                            self.rewind.setdefault(tp, records[0].offset)
                    await self.bp.wait_room(o.poll_timeout_ms / 1000)
                self._wait_room.inc(_idle_since(waited))
                self._maybe_seal(linger)
                continue
            if self.builder.size:
                wait_ms = max(1, int((linger - self.builder.age()) * 1000))
            else:
                wait_ms = o.poll_timeout_ms
            want = min(room, o.batch_max_frames - self.builder.size)
            waited = _clocks()
            data = await self._poll(stop, timeout_ms=wait_ms, max_records=max(1, want))
            self._wait_poll.inc(_idle_since(waited))
            marks = {tp: self.moves.get(tp, 0) for tp in data}  # before any await
            for tp, records in data.items():
                if self.moves.get(tp, 0) != marks[tp]:
                    continue  # moved while an earlier partition decoded: see _add
                if tp not in self.owned:
                    continue  # fetched just before a rebalance: not ours to write
                if tp in self.needs_seek:
                    # Fetched before the stored offset was known: skipped now, and if the
                    # database holds no offset for tp the seek comes back to the first of them.
                    self.rewind.setdefault(tp, records[0].offset)
                    continue
                records = take_refill(self.sink, self.builder, tp, records)  # latest_keeper
                await self._add(tp, records, marks[tp])
            waited = _clocks()
            if await end_refills(self.sink, self.owned - self.needs_seek, consumer.position):
                self._wait_restore.inc(_idle_since(waited))  # a refill still under way
            self._maybe_seal(linger)
            writer = self.writer
            idle = writer is not None and writer.idle and not self.builder.size
            if idle and writer is not None and self.sink.has_pending_changes():
                writer.submit(Batch(self.builder.generation, changes_only=True))

    async def _poll(self, stop: asyncio.Event, **kwargs: Any) -> dict[Any, Sequence[Any]]:
        """``consumer.getmany(**kwargs)``, given up (nothing returned) when ``stop`` is set
        first. Its timeout does not bound it: while the group rebalances aiokafka waits for the
        new assignment, as long as a dead member holds the rebalance (its session timeout),
        and a stop would wait with it, past the shutdown deadline. Giving it up loses nothing:
        records count as consumed only when it returns them, and offsets are committed only
        after their rows are durable."""
        fetch = asyncio.ensure_future(self.consumer.getmany(**kwargs))
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({fetch, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not fetch.done():
                fetch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await fetch
        if fetch.cancelled():
            return {}
        result: dict[Any, Sequence[Any]] = fetch.result()
        return result

    async def _add(self, tp: Any, records: Sequence[Any], mark: int) -> None:
        """Decode ``records`` of ``tp`` into the open batch, ``DECODE_SLICE`` at a time, with
        the write lanes' turn of the event loop before each slice (ingest.pipeline.turns): a
        fetch of one partition can be a whole batch (~10 µs a frame), and while it decodes
        the write lanes' open transactions wait for their next statement. ``mark``: ``tp``'s
        move count when the records were fetched. A revoke, an assignment or a seek (a fence)
        may run in such a turn; it moves ``tp``, and the rest of the records is dropped
        unread: the partition is gone, or its position was set again and the consumer reads
        them anew (none may join the batch with a start offset they do not follow, nor be
        counted in flight for a batch the revoke drops). Each slice takes the start offset
        afresh: a seal between slices moves it."""
        for i in range(0, len(records), DECODE_SLICE):
            # Before each slice, the first of a partition too: a fetch holds several
            # partitions, whose slices would otherwise run back to back.
            waited = _clocks()
            await lanes_turn()
            self._wait_lane.inc(_idle_since(waited))
            if self.moves.get(tp, 0) != mark:
                return
            part = records[i : i + DECODE_SLICE]
            self.bp.add(*self.builder.add(tp, part, self.positions.get(tp)))

    def _moved(self, tps: Iterable[Any]) -> None:
        for tp in tps:
            self.moves[tp] = self.moves.get(tp, 0) + 1

    def _maybe_seal(self, linger: float) -> None:
        size = self.builder.size
        if size and (size >= self.options.batch_max_frames or self.builder.age() >= linger):
            self._seal()

    def _seal_at_bound(self) -> None:
        """At a bound with the writer idle, the open batch holds all that is in flight (the
        byte bound can be reached so): it is written now, or nothing would free room until its
        linger, and the wait would end in a pause as if writes were slow. With the writer busy,
        its commits free room: sealing at each would cut the batches into the pieces they
        free. A failing shard's lanes retry and free nothing, nor do a held shard's (hung
        writes): the other shards' idleness is what counts."""
        writer = self.writer
        if writer is not None and writer.idle_but(self.bp.unhealthy | self.bp.held):
            self._seal()

    def _seal(self) -> None:
        if not self.builder.size or self.writer is None:
            return
        batch = self.builder.take()
        for tp, offset in batch.next.items():
            self.positions[tp] = offset
        self.writer.submit(batch)

    def _apply_backpressure(self) -> None:
        decision = self.bp.decide()
        consumer = self.consumer
        assignment = set(consumer.assignment())
        if decision is Decision.PAUSE:
            log.warning(
                "pausing %d partitions: %s",
                len(assignment),
                "the database is failing" if not self.bp.sink_healthy else "writes are slow",
                extra={"in_flight": self.bp.in_flight, "in_flight_bytes": self.bp.in_flight_bytes},
            )
        elif decision is Decision.RESUME:
            log.info("resuming partitions", extra={"in_flight": self.bp.in_flight})
        shards = self.options.shards
        down = set(self.bp.unhealthy) if shards > 1 else set()
        if down != self._down:
            log.warning(
                "shards failing: %s; their partitions stay paused, the other shards write on",
                sorted(down) or "none",
            )
            self._down = down
        if self.bp.held != self._full:
            # A shard whose lanes hold its share of the in-flight bound (slow or hung writes):
            # only its partitions pause, until its lanes drain (backpressure.py).
            log.info(
                "shards holding their share of the in-flight frames: %s; their partitions "
                "pause until their writes catch up",
                sorted(self.bp.held) or "none",
                extra={"in_flight": self.bp.shard_in_flight},
            )
            self._full = set(self.bp.held)
        # Re-applied every turn: a rebalance hands out partitions unpaused.
        if self.bp.paused:
            held = assignment
        else:
            stopped = down | self.bp.held
            held = {tp for tp in assignment if shard_of(tp.partition, shards) in stopped}
        # Partitions whose offsets and alert state are still being loaded are paused too, but
        # that is the normal start of an assignment (minutes for a large restore), not
        # backpressure: they have a gauge of their own, so that the paused-partition alerts
        # (NevIngestShardDown, NevIngestPartitionsPaused) see only a slow or failing database.
        restoring = (assignment & self.needs_seek) - held
        want_paused = held | restoring
        paused = set(consumer.paused())
        if want_paused - paused:
            consumer.pause(*(want_paused - paused))
        if (paused & assignment) - want_paused:
            consumer.resume(*((paused & assignment) - want_paused))
        self.metrics.paused_partitions.set(len(held))
        self.metrics.restoring_partitions.set(len(restoring))
        # By shard, the partitions held because their shard's writes fail: a pause for slow
        # writes (every shard healthy) is no shard down (NevIngestShardDown is critical).
        per_shard = [0] * shards
        for tp in held:
            shard = shard_of(tp.partition, shards)
            if shard in self.bp.unhealthy:
                per_shard[shard] += 1
        for shard, n in enumerate(per_shard):
            self.metrics.shard_paused_partitions.labels(shard=str(shard)).set(n)

    # -- offsets -----------------------------------------------------------------------------
    def _committer_offer(self, offsets: dict[Any, int]) -> None:
        self.committer.offer(offsets)

    def _on_fenced(self, fenced: dict[Any, int]) -> None:
        """Another consumer stored these partitions past what this one wrote: forget what is
        in flight for them and read on from the stored offset (if they are still ours)."""
        key_of = {(tp.topic, tp.partition): tp for tp in self.owned}
        tps = [key_of.get((t[0], t[1]), t) for t in fenced]
        self.bp.done(*self.builder.batch.drop_partitions(tps))
        for tp, offset in zip(tps, fenced.values(), strict=True):
            if tp in self.owned:
                self._seek(tp, offset)

    async def _load_pending_offsets(
        self, *, backoff: bool = True, deadline: float | None = None
    ) -> None:
        # The consume loop and the assignment callback both call this: one load at a time, and
        # a load that a newer assignment overtook is thrown away (its offsets may be stale).
        # ``deadline`` (time.monotonic()): the callback's, past which every read is given up
        # (the shards not reached stay pending for the consume loop).
        if not self.needs_seek or self._loading.locked():
            return
        async with self._loading:
            pending = sorted(self.needs_seek & self.owned)
            self.needs_seek &= self.owned
            if not pending:
                return
            by_shard: dict[int, list[Any]] = {}
            for tp in pending:
                by_shard.setdefault(shard_of(tp.partition, self.options.shards), []).append(tp)
            generation = self._assignments
            for shard, tps in sorted(by_shard.items()):
                # Shard by shard: one that is down keeps only its partitions paused. Its next
                # attempt waits for its backoff (the rebalance callback tries at once).
                if generation != self._assignments:
                    return
                if backoff and time.monotonic() < self._retry_at.get(shard, 0.0):
                    continue
                if deadline is not None and time.monotonic() >= deadline:
                    return
                await self._load_shard(shard, tps, generation, deadline)

    async def _load_shard(
        self, shard: int, pending: list[Any], generation: int, deadline: float | None = None
    ) -> None:
        """Offsets and alert state of one shard's pending partitions, then the seek. A shard
        that cannot be read keeps them pending and paused, its next attempt after a backoff.
        Each read is bounded for real (``closing.within``), by ``deadline`` too if given."""

        # A read the callback's deadline cut short is not the database failing: the shard is
        # not marked unhealthy and the consume loop goes on at once (a healthy restore larger
        # than a third of the session would otherwise pause everything as "unreachable").
        cut = False

        def bound(step_s: float) -> float:
            nonlocal cut
            if deadline is None:
                return step_s
            left = deadline - time.monotonic()
            cut = cut or left < step_s
            return max(0.0, min(step_s, left))

        try:
            stored = await within(
                self.sink.stored_offsets(pending),
                bound(READ_OFFSETS_S),
                "reading the stored offsets",
            )
            # Alert state first: a partition whose open alerts are unknown would raise them
            # again under new keys and leave the stored ones open forever.
            unrestored = [tp for tp in pending if tp not in self.restored]
            if unrestored:
                # No bound on the whole restore (it grows with the partitions' entities): the
                # sink bounds each step (no progress: an error) and returns after a slice of
                # work with the partitions restored so far, keeping what it did; the next
                # turn goes on from there.
                ready = await within(
                    # the sink ends its slice by the deadline itself: left behind only
                    # when a page outlasts it
                    self.sink.on_partitions_assigned(unrestored, until=deadline),
                    bound(RESTORE_CALL_S),
                    "restoring the alert state",
                )
                if generation != self._assignments:
                    # A rebalance overtook this load (the partitions may have been
                    # drained and handed back meanwhile): its snapshot is stale. Forget
                    # it; the next turn loads them again.
                    self.sink.on_partitions_lost(unrestored)
                    return
                # The others stay pending and paused (the consume loop polls meanwhile).
                self.restored.update(ready)
        except Exception as exc:  # DB down: stay paused, try again next turn
            if cut and isinstance(exc, TimeoutError):
                log.info(
                    "%s; the consume loop goes on with it (the partitions stay paused)",
                    exc,
                    extra={"shard": shard},
                )
                return
            self.bp.set_sink_healthy(False, shard)
            wait = min(
                max(self._backoff_s.get(shard, 0.0) * 2, self.options.retry_backoff_initial_s),
                self.options.retry_backoff_max_s,
            )
            first = shard not in self._backoff_s
            self._backoff_s[shard] = wait
            self._retry_at[shard] = time.monotonic() + wait
            # Once per outage (the paused-partition gauges say it goes on), not every retry.
            log.log(
                logging.WARNING if first else logging.DEBUG,
                "cannot read the stored offsets and alert state yet (%r); the partitions "
                "stay paused, retrying in %.2fs",
                exc,
                wait,
                extra={
                    "partitions": [f"{tp.topic}[{tp.partition}]" for tp in pending],
                    "shard": shard,
                },
            )
            return
        self._backoff_s.pop(shard, None)
        self._retry_at.pop(shard, None)
        gone = [tp for tp in self.restored if tp not in self.owned]
        if gone:  # revoked while this load ran: its state must not linger
            self.sink.on_partitions_lost(sorted(gone))
            self.restored -= set(gone)
        if generation != self._assignments:
            return
        self.bp.set_sink_healthy(True, shard)
        for tp in pending:
            if tp in self.needs_seek and tp in self.restored:
                self._seek(tp, stored.get(tp))
                self.needs_seek.discard(tp)

    def _seek(self, tp: Any, offset: int | None) -> None:
        self.positions[tp] = offset
        self.stored[tp] = offset
        rewind = self.rewind.pop(tp, None)
        if offset is None and rewind is not None:
            offset = rewind
        if offset is not None:
            # Only a real seek moves the partition: without one (no stored offset, nothing
            # skipped) what was fetched still follows on and must not be dropped (_add).
            self._moved((tp,))
            self.consumer.seek(tp, seek_target(self.sink, tp, offset))  # latest_keeper
            log.info(
                "seek to the stored offset",
                extra={"topic": tp.topic, "partition": tp.partition, "offset": offset},
            )

    # -- rebalance ---------------------------------------------------------------------------
    async def on_revoked(self, revoked: set[Any]) -> None:
        # Every rebalance begins here (with nothing to revoke too): out of the group until
        # the next assignment (/readyz, "not in the consumer group yet").
        self.metrics.in_group.set(0)
        if not revoked:
            return
        self.metrics.rebalances.labels(event="revoked").inc()
        self._moved(revoked)  # a decode in progress stops before its next slice
        writer = self.writer
        assert writer is not None
        self._seal()
        t0 = time.monotonic()
        if await writer.drain(self.options.revoke_timeout_s):
            log.info(
                "partitions revoked after committing everything in flight",
                extra={"partitions": len(revoked), "took_s": round(time.monotonic() - t0, 3)},
            )
        else:
            frames = writer.abandon("revoked")
            log.warning(
                "partitions revoked: the database did not commit in %.0fs, %d in-flight "
                "frames abandoned uncommitted (the next owner reads them again)",
                self.options.revoke_timeout_s,
                frames,
            )
        await self._after_revoke_drain(revoked)
        # What the loop fetched and decoded while the writer drained: never written, so no
        # longer in flight (the next owner reads it again).
        self.bp.done(*self.builder.reset(writer.generation).held)
        self.sink.on_partitions_lost(sorted(revoked))
        writer.forget(revoked)  # committed: what comes back is read from the database again
        for tp in revoked:
            self.positions.pop(tp, None)
            self.stored.pop(tp, None)
            self.rewind.pop(tp, None)
        self.owned -= revoked
        self.needs_seek -= revoked
        self.restored -= revoked
        if self.lag is not None:
            self.lag.forget(revoked)

    async def _after_revoke_drain(self, revoked: set[Any]) -> None:
        """The stop's steps after its drain, for the revoked partitions: the whole group waits
        for this callback (kafka_limits.REVOKE_MARGIN_MS past the drain's revoke_timeout_s),
        so each is bounded for real (``closing.close_within``; ``asyncio.wait_for`` waits on
        for a close that swallows its cancellation, as asyncpg's ROLLBACK on a stalled
        server does). A step left behind is still cancelled; if it finishes after all, it is
        harmless: the merge only touches partitions whose stored offset is still this
        worker's, deleted outbox rows were acknowledged, and Kafka's copy is only a copy."""
        await self._merge_and_delete(revoked, _REVOKE_GOES_ON)
        await close_within(  # before the partitions go
            "Kafka's copy of the offsets",
            self.committer.flush,
            COMMIT_FLUSH_S,
            verb="finish",
            goes_on=_REVOKE_GOES_ON,
            undone="the database holds the offsets, which the next owner seeks to",
        )

    async def _merge_and_delete(self, partitions: Iterable[Any], goes_on: str) -> None:
        """The database steps after a drain, the stop's and a revoke's: the pending latest_state
        tuples of ``partitions`` merged, then the acknowledged outbox rows deleted (before the
        next owner reads the outbox, or it sends them again); each within its bound, every
        shard together (``closing.close_within``: a step past it is left behind, the caller
        ``goes_on``)."""
        gone = list(partitions)
        await close_within(
            "merging latest_state",
            lambda: flush_latest(self.sink, gone),
            FLUSH_LATEST_S,
            verb="finish",
            goes_on=goes_on,
            undone="the stored latest_from still covers them: the next owner reads them again",
        )
        await close_within(
            "deleting the published alert messages' outbox rows",
            self.sink.delete_published,
            DELETE_PUBLISHED_S,
            verb="finish",
            goes_on=goes_on,
            undone="the next owner sends those alert messages again, which consumers deduplicate",
        )

    async def on_assigned(self, assigned: set[Any]) -> None:
        self.metrics.rebalances.labels(event="assigned").inc()
        self.metrics.in_group.set(1)  # an empty assignment too: a member, with nothing to do
        self._moved(assigned)
        self._assignments += 1
        self.owned = set(assigned)
        # Each shard's share of the in-flight bound follows the partitions owned on it.
        self.bp.own(shard_of(tp.partition, self.options.shards) for tp in assigned)
        self.metrics.assigned_partitions.set(len(assigned))
        self.needs_seek = set(assigned)
        log.info(
            "partitions assigned",
            extra={"partitions": sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned)},
        )
        # Restore the alert state and seek now when the database answers; otherwise the
        # consume loop keeps them paused and retries (never fetch from Kafka's offsets: the
        # database's are the truth; never evaluate rules without the stored open alerts).
        self.restored &= self.owned
        if self._stopping or (self._stop is not None and self._stop.is_set()):
            # A rebalance that ends during the stop: nothing will be fetched, so a restore
            # (minutes for a large one) would only hold the stop past its deadline. The
            # partitions stay pending; their next owner restores them.
            return
        # Bounded: a database that answers nothing must not hold the callback past the group's
        # session (the member dropped, a second rebalance); the consume loop retries.
        share_s = self.options.session_timeout_ms / 1000 * ASSIGNED_SHARE
        await self._load_pending_offsets(backoff=False, deadline=time.monotonic() + share_s)


async def _watch(
    tasks: Iterable[asyncio.Task[None]],
    writer_closed: Callable[[], bool],
    raised: set[asyncio.Task[None]],
) -> None:
    """Raise what the first of ``tasks`` to fail raised (in the task group, so that it stops
    the worker as if they were in it), noted in ``raised``; one that ends otherwise is a bug,
    raised at once (the writer's end once closed excepted). Cancelled, it leaves them running:
    asyncio.wait does not cancel what it waits for."""
    pending = set(tasks)
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            exc = None if task.cancelled() else task.exception()
            if exc is not None:
                raised.add(task)
                raise exc
            if task.get_name() == "writer" and not task.cancelled() and writer_closed():
                continue
            # They run until the worker cancels them, after this task.
            how = "was cancelled" if task.cancelled() else "ended"
            raise RuntimeError(f"the {task.get_name()} task {how} before the worker's stop")
