"""The write stage: sealed batches -> one transaction each -> Kafka commit -> DLQ and alerts.

Order per batch, and why:
1. dead letters of frames that did not decode are produced (and acknowledged by the broker)
   BEFORE the transaction that moves the offsets past them, so a crash can duplicate a dead
   letter but never lose one;
2. the sink writes rows + alert changes + offsets in one transaction (retried while the
   failure is transient; the partitions are paused meanwhile, see ``backpressure``);
3. after the commit: the offsets are handed to the background Kafka committer (for lag
   tooling; the database copy is the one the consumer seeks to) and alert changes are
   published to the alerts topic from the outbox rows written in the transaction, which go
   once Kafka acknowledged them (rows the database rejected went to the DLQ inside the
   transaction). The publish retries while Kafka is away, but ``abandon`` (a stop or revoke
   past its deadline) cancels it: the messages stay in ``alerts_outbox``, unacknowledged, and
   the next owner of their partitions sends them (the same worker after a restart; with
   aiokafka's eager rebalances, every partition a worker keeps is assigned again).
Lanes: the partitions are split between ``lanes`` writers, each with its own database
connection and one batch at a time, in order; a partition always goes to the same lane, so its
order is kept. While one lane waits for the database another encodes and sends its batch: the
database's work overlaps the worker's (two lanes: ~+20 % for one worker, bench_pipeline).
Shards: each database of ``storage.shards`` has ``lanes`` lanes of its own and a batch part holds
the partitions of one shard only (``Batch.split``), so its transaction is that shard's (rows,
alerts, offsets: exactly-once per shard) and a shard that is down retries in its own lanes while
the others go on writing; its health pauses only its partitions (``Backpressure``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ingest.pipeline import wire
from ingest.pipeline.backpressure import Backpressure
from ingest.pipeline.batch import Batch
from ingest.pipeline.logs import RateLimiter
from ingest.pipeline.metrics import PipelineMetrics, observe_many
from ingest.pipeline.publish import (
    TRANSIENT_KAFKA,
    OutgoingLetters,
    PermanentKafkaError,
    Producers,
    Publisher,
)
from ingest.pipeline.sink import AlertMessage, Sink, SinkResult, TransientSinkError

__all__ = ["Writer"]

log = logging.getLogger(__name__)


# How long a batch's transaction waits, right before its commit, for the acknowledgement of its
# dead letters (sent when the write began; normally long done by then).
DLQ_COMMIT_WAIT_S: Final = 5.0


class DeadLettersPending(Exception):
    """The batch's dead letters were not acknowledged in time, or their send failed: the
    transaction rolled back; the batch is retried (the send goes on, or goes again)."""


_RETRY: Final[tuple[type[BaseException], ...]] = (
    TransientSinkError,
    DeadLettersPending,
    *TRANSIENT_KAFKA,
)


@dataclass(eq=False)
class _Lane:
    """One sequential writer: its queue, its wake-up, what it is writing now."""

    index: int
    queue: collections.deque[Batch] = field(default_factory=collections.deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    current: Batch | None = None
    attempt: asyncio.Task[SinkResult] | None = None
    publish: asyncio.Task[None] | None = None  # a committed batch's alert messages going out


class Writer:
    """Writes sealed batches in order; see the module docstring."""

    def __init__(
        self,
        *,
        sink: Sink,
        producers: Producers,
        metrics: PipelineMetrics,
        backpressure: Backpressure,
        dlq_topic: str,
        alerts_topic: str,
        commit: Callable[[dict[Any, int]], None],
        on_fenced: Callable[[dict[Any, int]], None],
        backoff_initial_s: float = 0.25,
        backoff_max_s: float = 5.0,
        lanes: int = 1,
        kinds: Mapping[str, str] | None = None,
        shards: int = 1,
    ) -> None:
        self._sink = sink
        self._kinds = kinds or {}  # topic -> entity kind, the metrics' kind label
        self._m = metrics
        self._bp = backpressure
        self._commit = commit
        self._on_fenced = on_fenced
        self._backoff_initial = backoff_initial_s
        self._backoff_max = backoff_max_s
        self._publisher = Publisher(
            producers,
            metrics,
            dlq_topic=dlq_topic,
            alerts_topic=alerts_topic,
            backoff_initial_s=backoff_initial_s,
            backoff_max_s=backoff_max_s,
        )
        self._per_shard = max(1, lanes)
        self._shards = max(1, shards)
        self._lanes = [_Lane(i) for i in range(self._per_shard * self._shards)]
        for shard in map(str, range(self._shards)):  # every shard's series, from 0 on
            metrics.shard_frames_written.labels(shard=shard)
            metrics.shard_write_errors.labels(shard=shard)
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._limiter = RateLimiter(10.0)
        self.generation = 0
        self.committed: dict[Any, int] = {}  # tp -> next offset, as committed in the database
        self.commit_time: dict[Any, float] = {}  # tp -> wall time of that commit
        self.last_commit = time.time()

    # -- what the consumer side calls ---------------------------------------------------------
    def submit(self, batch: Batch) -> None:
        if batch.changes_only and not batch.next and self._shards > 1:
            # Alert changes without frames (a reload, a restore): each shard saves its own.
            parts = [
                (s * self._per_shard, Batch(batch.generation, changes_only=True, shard=s))
                for s in range(self._shards)
            ]
        else:
            parts = batch.split(self._per_shard, self._shards)
        for index, part in parts:
            lane = self._lanes[index]
            self._bp.assign(part.shard, *part.held)  # its share of the bound (backpressure)
            lane.queue.append(part)
            lane.wakeup.set()
        self._idle.clear()

    @property
    def idle(self) -> bool:
        # A lane publishing its batch's alert messages after the commit is not idle: drain
        # (a stop, a revoke) must wait for them, or delete_published runs before they are
        # acknowledged (the next owner sends them again) and a stop's deadline never reaches
        # abandon, which cancels a publish to a broker that is away.
        return all(
            lane.current is None and not lane.queue and lane.publish is None for lane in self._lanes
        )

    def idle_but(self, shards: Collection[int]) -> bool:
        """Idle apart from the lanes of ``shards`` (those failing: they retry for as long as
        their database is down, and free nothing meanwhile)."""
        return all(
            lane.current is None and not lane.queue
            for lane in self._lanes
            if lane.index // self._per_shard not in shards
        )

    def in_flight_batches(self) -> list[Batch]:
        out: list[Batch] = []
        for lane in self._lanes:
            out.extend(lane.queue)
            if lane.current is not None:
                out.append(lane.current)
        return out

    async def drain(self, timeout_s: float) -> bool:
        """Wait until every submitted batch is committed; False if ``timeout_s`` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def abandon(self, reason: str) -> int:
        """Give up every queued and current batch uncommitted (their frames will be delivered
        again to whoever owns the partitions next). Returns the frames given up."""
        self.generation += 1
        dropped = 0
        for lane in self._lanes:
            for batch in lane.queue:
                batch.abandon()
                dropped += batch.size
                self._bp.done(*batch.held, shard=batch.shard)
            if lane.queue:
                self._m.batches_abandoned.labels(reason=reason).inc(len(lane.queue))
            lane.queue.clear()
            if lane.current is not None:
                # The attempt is cancelled; its transaction rolls back, or if its COMMIT
                # already reached the server, the offsets it stored fence the next owner.
                lane.current.abandon()
                dropped += lane.current.size
                self._bp.done(*lane.current.held, shard=lane.current.shard)
                self._m.batches_abandoned.labels(reason=reason).inc()
                if lane.attempt is not None:
                    lane.attempt.cancel()
            if lane.publish is not None:
                # Committed already: nothing to give up but the wait for Kafka; the messages
                # stay in the outbox and are sent again on the next assignment.
                lane.publish.cancel()
        if self.idle:
            self._idle.set()
        return dropped

    def drop_partitions(self, tps: Sequence[Any]) -> None:
        """Remove partitions from the queued batches (after a fence on one of them)."""
        for lane in self._lanes:
            for batch in lane.queue:
                self._bp.done(*batch.drop_partitions(tps), shard=batch.shard)
        self.forget(tps)  # the database holds another consumer's offset for them now

    def forget(self, tps: Iterable[Any]) -> None:
        """Drop this worker's last commit of ``tps`` (revoked, or fenced): the lag gauges
        prefer it to the offset stored in the database, and a partition that comes back after
        another owner wrote it would otherwise show that owner's work as lag, for good on an
        idle partition."""
        for tp in tps:
            self.committed.pop(tp, None)
            self.commit_time.pop(tp, None)

    @property
    def closed(self) -> bool:
        """``close`` was called: the lanes end once idle."""
        return self._closing

    def close(self) -> None:
        self._closing = True
        for lane in self._lanes:
            lane.wakeup.set()

    # -- the loop ----------------------------------------------------------------------------
    async def run(self) -> None:
        await asyncio.gather(*(self._run_lane(lane) for lane in self._lanes))

    async def _run_lane(self, lane: _Lane) -> None:
        while True:
            if not lane.queue:
                if self.idle:
                    self._idle.set()
                if self._closing:
                    return
                lane.wakeup.clear()
                await lane.wakeup.wait()
                continue
            batch = lane.queue.popleft()
            lane.current = batch
            try:
                await self._process(lane, batch)
            finally:
                lane.current = None
                lane.attempt = None
                # A consumer waiting at a bound looks again: this lane may have left the
                # writer idle without a commit (a batch a fence emptied), and only then may it
                # seal its open batch (ingest.pipeline.worker).
                self._bp.wake()

    async def _process(self, lane: _Lane, batch: Batch) -> None:
        started = time.monotonic()
        backoff = self._backoff_initial
        result: SinkResult | None = None

        # The decode step's dead letters go out while the rows load (their acknowledgement is
        # Kafka's round trip, which used to stand before every such batch's transaction: -35 %
        # of the good frames with 10 % bad ones, loadtest/bench_timewindow.py); the commit
        # still waits for it, so no offset ever moves past an unacknowledged dead letter.
        dlq: asyncio.Future[None] | None = None
        # What of them Kafka acknowledged stays acknowledged across the attempts: a send
        # that failed half way (a broker away) is taken up where it stopped.
        letters = OutgoingLetters(batch.dead)
        # The same for the letters of the frames the database refused, made in the first
        # transaction that refused them and taken up by every retry of the batch (the
        # database refuses the same frames again; should it refuse others, theirs are new).
        rejected_letters: dict[tuple[int, ...], OutgoingLetters] = {}

        async def before_commit(rejected: list[tuple[int, str]]) -> None:
            if dlq is not None:
                # Bounded: a slow broker must not hold the transaction (and its locks, which a
                # partition created on demand waits for) open; the send goes on, the
                # transaction rolls back and the batch is retried. Typed, so that a Kafka
                # OSError/TimeoutError is not taken for the database's.
                try:
                    await asyncio.wait_for(asyncio.shield(dlq), DLQ_COMMIT_WAIT_S)
                except PermanentKafkaError:
                    raise  # no retry gets past it: the worker exits with its line (below)
                except Exception as exc:
                    raise DeadLettersPending(f"{type(exc).__name__}: {exc}") from exc
                batch.dead_sent = True
            if rejected:
                key = tuple(i for i, _ in rejected)
                if key not in rejected_letters:
                    rejected_letters[key] = self._publisher.rejected_letters(batch, rejected)
                await self._publisher.dead_letter_rejected(rejected_letters[key])

        while result is None:
            if batch.generation != self.generation:
                return  # abandoned (rebalance / shutdown); abandon() already accounted for it
            if batch.size == 0 and not batch.changes_only:
                return
            try:
                failed_for_good = _error(dlq) if dlq is not None else None
                if isinstance(failed_for_good, PermanentKafkaError):
                    # Failed for good after the commit stopped waiting for it (an
                    # authorisation, a missing topic, a cut-down letter refused again).
                    # Retried, it would hold the partitions for ever with a WARNING line
                    # each time; raised, it ends the worker with one line, as for the letters
                    # of the database's refusals, and the supervisor's restarts make it loud.
                    raise failed_for_good from None
                if batch.dead and not batch.dead_sent and (dlq is None or _failed(dlq)):
                    dlq = asyncio.ensure_future(self._publisher.send_dead(letters))
                    dlq.add_done_callback(_failed)  # retrieved even if nobody awaits it
                lane.attempt = asyncio.ensure_future(self._sink.write(batch, before_commit))
                result = await lane.attempt
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling() == 0:
                    return  # abandon() cancelled the attempt; this task goes on
                raise
            except _RETRY as exc:
                # The dead letters now travel beside the write: the error says which failed.
                stage = "database" if isinstance(exc, TransientSinkError) else "dlq"
                self._m.write_retries.labels(stage=stage).inc()
                if stage == "database":
                    self._bp.set_sink_healthy(False, batch.shard)
                    self._m.shard_write_errors.labels(shard=str(batch.shard)).inc()
                self._log_retry(batch, stage, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._backoff_max)
        if batch.generation != self.generation:
            return
        self._bp.set_sink_healthy(True, batch.shard)
        # Committed: no longer the lane's to abandon (abandon() would count its frames as given
        # up a second time after _after_commit released them).
        lane.current = None
        lane.attempt = None
        await self._after_commit(lane, batch, result, time.monotonic() - started)

    def _fenced(self, fenced: dict[Any, int]) -> None:
        log.warning(
            "offsets moved on in the database (another consumer wrote these partitions): "
            "their frames were not written again; seeking to the stored offsets",
            extra={"partitions": {f"{tp[0]}[{tp[1]}]": off for tp, off in fenced.items()}},
        )
        self._m.batches_abandoned.labels(reason="fenced").inc()
        self.drop_partitions(list(fenced))
        self._on_fenced(fenced)

    async def _after_commit(
        self, lane: _Lane, batch: Batch, result: SinkResult, took: float
    ) -> None:
        now = time.time()
        fenced = result.fenced
        committed = {tp: off for tp, off in batch.next.items() if tp not in fenced}
        for tp, offset in committed.items():
            self.committed[tp] = offset
            self.commit_time[tp] = now
        self.last_commit = now
        m = self._m
        m.write_duration.observe(took)
        m.batch_size.observe(batch.size)
        if result.duplicates:
            m.duplicates_skipped.inc(result.duplicates)
        rejected = {i for i, _ in result.rejected}
        by_topic: dict[str, list[float]] = {}
        if not rejected and not fenced and len(batch.decoded) == 1:
            # The usual batch: one topic, everything written (no per-record checks).
            (topic,) = batch.decoded
            by_topic[topic] = [now - r / 1000 for r in batch.received_ms]
        else:
            for i, rec in enumerate(batch.records):
                if i not in rejected and (rec.topic, rec.partition) not in fenced:
                    by_topic.setdefault(rec.topic, []).append(now - batch.received_ms[i] / 1000)
        kind = self._kinds.get
        for topic, latencies in by_topic.items():
            m.frames_written.labels(topic, kind(topic, "")).inc(len(latencies))
            observe_many(m.e2e_latency.labels(topic, kind(topic, "")), latencies)
        if by_topic:
            written = sum(map(len, by_topic.values()))
            m.shard_frames_written.labels(shard=str(batch.shard)).inc(written)
        for topic, n in batch.consumed.items():
            m.frames_consumed.labels(topic, kind(topic, "")).inc(n)
        for topic, n in batch.decoded.items():
            m.frames_decoded.labels(topic, kind(topic, "")).inc(n)
        for (topic, reason), n in batch.dead_reasons.items():
            m.frames_dead_lettered.labels(topic, kind(topic, ""), reason).inc(n)
        for i in rejected:
            topic = batch.records[i].topic
            m.frames_dead_lettered.labels(topic, kind(topic, ""), wire.DB_REJECTED).inc()
        self._bp.done(*batch.held, shard=batch.shard)
        if fenced:
            self._fenced(fenced)
        self._commit(committed)  # to Kafka, in the background (ingest.pipeline.commits)
        if result.alerts:
            await self._publish(lane, result.alerts)

    async def _publish(self, lane: _Lane, alerts: list[AlertMessage]) -> None:
        """The batch's alert messages, in the lane (their order is the batch order) but as a
        task ``abandon`` can cancel: a stop must not wait for a broker that is away."""
        lane.publish = asyncio.ensure_future(self._publisher.publish_alerts(alerts))
        try:
            await lane.publish
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling() == 0:  # abandon() cancelled the publish
                log.warning(
                    "%d alert messages not acknowledged by Kafka before the stop or revoke: "
                    "left in the outbox, the next owner of their partitions sends them",
                    len(alerts),
                )
                return
            raise
        finally:
            lane.publish = None
        self._sink.alerts_published(alerts)  # acknowledged: outbox rows may go

    def _log_retry(self, batch: Batch, stage: str, exc: BaseException, backoff: float) -> None:
        suppressed = self._limiter.allow(f"retry-{stage}")
        if suppressed is None:
            return
        log.warning(
            "batch write failed (%s), retrying in %.2fs; partitions stay paused until it works",
            type(exc).__name__,
            backoff,
            extra={
                "stage": stage,
                "error": str(exc)[:300],
                "frames": batch.size,
                "shard": batch.shard,
                "partitions": [f"{tp[0]}[{tp[1]}]" for tp in batch.next],
                "suppressed": suppressed,
            },
        )


def _error(future: asyncio.Future[None]) -> BaseException | None:
    """What a finished send raised; None while it runs, when it worked or was cancelled."""
    if not future.done() or future.cancelled():
        return None
    return future.exception()


def _failed(future: asyncio.Future[None]) -> bool:
    """Whether a finished send failed (cancelled or raised); False while it runs. Reading the
    exception also marks it retrieved, so an abandoned batch's failed send logs nothing."""
    return future.done() and (future.cancelled() or future.exception() is not None)
