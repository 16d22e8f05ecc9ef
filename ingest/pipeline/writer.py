"""The write stage: sealed batches -> one transaction each -> Kafka commit -> DLQ and alerts.

Order per batch, and why:
1. dead letters of frames that did not decode are produced (and acknowledged by the broker)
   BEFORE the transaction that moves the offsets past them, so a crash can duplicate a dead
   letter but never lose one;
2. the sink writes rows + alert changes + offsets in one transaction (retried while the
   failure is transient; the partitions are paused meanwhile, see ``backpressure``);
3. after the commit: the Kafka offsets are committed (for lag tooling; the database copy is
   the one the consumer seeks to), rows the database rejected go to the DLQ, and alert changes
   are published to the alerts topic.
Batches are written one at a time, in order, so per-partition order is kept.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, Protocol

from aiokafka.errors import KafkaError

from ingest.logging import RateLimiter
from ingest.metrics import PipelineMetrics, observe_many
from ingest.pipeline import contract
from ingest.pipeline.backpressure import Backpressure
from ingest.pipeline.batch import Batch
from ingest.pipeline.contract import DeadLetter
from ingest.pipeline.sink import Sink, TransientSinkError, WriteResult

__all__ = ["Producer", "Writer"]

log = logging.getLogger(__name__)

_STAGE_STORE: Final = "store"


class Producer(Protocol):
    """The part of aiokafka's AIOKafkaProducer the writer uses."""

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> Awaitable[Any]: ...


# Errors of the broker side (producing dead letters / alerts) that are worth retrying: all of
# them, since giving up would lose a dead letter; a permanent one (authorisation) keeps being
# logged until an operator fixes it.
TRANSIENT_KAFKA: Final[tuple[type[BaseException], ...]] = (KafkaError, OSError, TimeoutError)
_RETRY: Final[tuple[type[BaseException], ...]] = (TransientSinkError, *TRANSIENT_KAFKA)


class Writer:
    """Writes sealed batches in order; see the module docstring."""

    def __init__(
        self,
        *,
        sink: Sink,
        producer: Producer,
        metrics: PipelineMetrics,
        backpressure: Backpressure,
        dlq_topic: str,
        alerts_topic: str,
        commit: Callable[[dict[Any, int]], Awaitable[None]],
        on_fenced: Callable[[dict[Any, int]], None],
        backoff_initial_s: float = 0.25,
        backoff_max_s: float = 5.0,
    ) -> None:
        self._sink = sink
        self._producer = producer
        self._m = metrics
        self._bp = backpressure
        self._dlq_topic = dlq_topic
        self._alerts_topic = alerts_topic
        self._commit = commit
        self._on_fenced = on_fenced
        self._backoff_initial = backoff_initial_s
        self._backoff_max = backoff_max_s
        self._queue: collections.deque[Batch] = collections.deque()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._current: Batch | None = None
        self._attempt: asyncio.Task[WriteResult] | None = None
        self._closing = False
        self._limiter = RateLimiter(10.0)
        self.generation = 0
        self.committed: dict[Any, int] = {}  # tp -> next offset, as committed in the database
        self.commit_time: dict[Any, float] = {}  # tp -> wall time of that commit
        self.last_commit = time.time()

    # -- what the consumer side calls ---------------------------------------------------------
    def submit(self, batch: Batch) -> None:
        self._queue.append(batch)
        self._idle.clear()
        self._wakeup.set()

    @property
    def idle(self) -> bool:
        return self._current is None and not self._queue

    def in_flight_batches(self) -> list[Batch]:
        out = list(self._queue)
        if self._current is not None:
            out.append(self._current)
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
        dropped = sum(b.size for b in self._queue)
        if self._queue:
            self._m.batches_abandoned.labels(reason=reason).inc(len(self._queue))
        self._queue.clear()
        if self._current is not None:
            # The current batch's attempt is cancelled; its transaction rolls back, or if its
            # COMMIT already reached the server, the offsets it stored fence the next owner.
            dropped += self._current.size
            self._m.batches_abandoned.labels(reason=reason).inc()
            if self._attempt is not None:
                self._attempt.cancel()
        self._bp.done(dropped)
        if self._current is None:
            self._idle.set()
        return dropped

    def drop_partitions(self, tps: Sequence[Any]) -> None:
        """Remove partitions from the queued batches (after a fence on one of them)."""
        for batch in self._queue:
            self._bp.done(batch.drop_partitions(tps))

    def close(self) -> None:
        self._closing = True
        self._wakeup.set()

    # -- the loop ----------------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = self._queue.popleft()
            self._current = batch
            try:
                await self._process(batch)
            finally:
                self._current = None
                self._attempt = None

    async def _process(self, batch: Batch) -> None:
        started = time.monotonic()
        backoff = self._backoff_initial
        result: WriteResult | None = None

        async def on_rejected(rejected: list[tuple[int, str]]) -> None:
            await self._dead_letter_rejected(batch, rejected)

        while result is None:
            if batch.generation != self.generation:
                return  # abandoned (rebalance / shutdown); abandon() already accounted for it
            if batch.size == 0 and not batch.changes_only:
                return
            try:
                if batch.dead and not batch.dead_sent:
                    await self._send_dead(batch.dead)
                    batch.dead_sent = True
                self._attempt = asyncio.ensure_future(self._sink.write(batch, on_rejected))
                result = await self._attempt
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling() == 0:
                    return  # abandon() cancelled the attempt; this task goes on
                raise
            except _RETRY as exc:
                stage = "dlq" if not batch.dead_sent and batch.dead else "database"
                self._m.write_retries.labels(stage=stage).inc()
                if stage == "database":
                    self._bp.set_sink_healthy(False)
                self._log_retry(batch, stage, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._backoff_max)
        if batch.generation != self.generation:
            return
        self._bp.set_sink_healthy(True)
        await self._after_commit(batch, result, time.monotonic() - started)

    def _fenced(self, fenced: dict[Any, int]) -> None:
        log.warning(
            "offsets moved on in the database (another consumer wrote these partitions): "
            "their frames were not written again; seeking to the stored offsets",
            extra={"partitions": {f"{tp[0]}[{tp[1]}]": off for tp, off in fenced.items()}},
        )
        self._m.batches_abandoned.labels(reason="fenced").inc()
        self.drop_partitions(list(fenced))
        self._on_fenced(fenced)

    async def _after_commit(self, batch: Batch, result: WriteResult, took: float) -> None:
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
        for topic, latencies in by_topic.items():
            m.frames_written.labels(topic=topic).inc(len(latencies))
            observe_many(m.e2e_latency.labels(topic=topic), latencies)
        for topic, n in batch.consumed.items():
            m.frames_consumed.labels(topic=topic).inc(n)
        for topic, n in batch.decoded.items():
            m.frames_decoded.labels(topic=topic).inc(n)
        for (topic, reason), n in batch.dead_reasons.items():
            m.frames_dead_lettered.labels(topic=topic, reason=reason).inc(n)
        for i in rejected:
            rec = batch.records[i]
            m.frames_dead_lettered.labels(topic=rec.topic, reason=contract.DB_REJECTED).inc()
        self._bp.done(batch.size)
        if fenced:
            self._fenced(fenced)
        try:
            await self._commit(committed)
        except Exception as exc:  # the database holds the offsets; log and go on
            log.info("Kafka offset commit failed (the database has them): %r", exc)
        if result.alerts:
            await self._publish_alerts(result)

    async def _dead_letter_rejected(self, batch: Batch, rejected: list[tuple[int, str]]) -> None:
        """Inside the batch's transaction: the dead letters of the frames the database refused.

        Acknowledged by the broker before the offsets that skip them commit. If the broker
        does not take them after a few tries, the failure is raised as a ``ConnectionError``,
        which the storage writer treats as transient: the whole batch goes again later.
        """
        letters = []
        for i, detail in rejected:
            rec = batch.records[i]
            letters.append(
                contract.dead_letter(
                    key=rec.key,
                    value=rec.value,
                    headers=list(rec.headers or ()),
                    reason=contract.DB_REJECTED,
                    detail=detail,
                    stage=_STAGE_STORE,
                    topic=rec.topic,
                    partition=rec.partition,
                    offset=rec.offset,
                    timestamp_ms=rec.timestamp,
                )
            )
            if self._limiter.allow(contract.DB_REJECTED) is not None:
                log.warning(
                    "the database rejected a frame's rows: sent to the dead-letter topic",
                    extra={
                        "reason": contract.DB_REJECTED,
                        "detail": detail[:300],
                        "topic": rec.topic,
                        "partition": rec.partition,
                        "offset": rec.offset,
                    },
                )
        for attempt in range(3):
            try:
                await self._send_dead(letters)
                return
            except TRANSIENT_KAFKA as exc:
                if attempt == 2:
                    raise ConnectionError(f"dead-letter topic unreachable: {exc!r}") from exc
                await asyncio.sleep(self._backoff_initial * 2**attempt)

    async def _publish_alerts(self, result: WriteResult) -> None:
        for change in result.alerts:
            self._m.alerts.labels(
                rule=change.rule, severity=change.severity, change=change.change
            ).inc()

        async def publish() -> None:
            futures = [
                await self._producer.send(self._alerts_topic, change.message, key=change.key)
                for change in result.alerts
            ]
            await asyncio.gather(*futures)

        await self._retry_forever("alerts", publish)
        self._m.alerts_published.inc(len(result.alerts))
        for change in result.alerts:
            log.info(
                "alert %s: %s",
                change.change,
                change.rule,
                extra={
                    "rule": change.rule,
                    "severity": change.severity,
                    "entity": change.key.decode(errors="replace"),
                },
            )

    async def _send_dead(self, letters: Sequence[DeadLetter]) -> None:
        futures = [
            await self._producer.send(self._dlq_topic, d.value, key=d.key, headers=d.headers)
            for d in letters
        ]
        await asyncio.gather(*futures)

    async def _retry_forever(self, stage: str, op: Callable[[], Awaitable[None]]) -> None:
        backoff = self._backoff_initial
        while True:
            try:
                await op()
                return
            except TRANSIENT_KAFKA as exc:
                self._m.write_retries.labels(stage=stage).inc()
                log.warning(
                    "producing to Kafka failed, retrying in %.2fs: %r",
                    backoff,
                    exc,
                    extra={"stage": stage},
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._backoff_max)

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
                "partitions": [f"{tp[0]}[{tp[1]}]" for tp in batch.next],
                "suppressed": suppressed,
            },
        )
