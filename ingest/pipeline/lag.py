"""Housekeeping of a worker: consumer lag, DB pool and readiness gauges, a DB ping when idle.

Lag per partition = end offset (ListOffsets, every ``interval_s``) minus the offset committed
with the rows. Lag in seconds = age of the oldest consumed-but-uncommitted record of the
partition; when the lag is not zero but nothing of it is in flight (not fetched yet, or the
partition is paused) it is the time since the partition's last commit, an upper bound that
grows while the partition makes no progress, which is what an alert on it should see. So it is
too while the end offsets cannot be read (the brokers away): the lag in frames then stays at
its last known value.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Iterable
from typing import Any, Final, Protocol

from ingest.pipeline.backpressure import Backpressure
from ingest.pipeline.batch import BatchBuilder
from ingest.pipeline.closing import HOUSEKEEPING_S, end_within
from ingest.pipeline.metrics import PipelineMetrics
from ingest.pipeline.sink import Sink
from ingest.pipeline.upkeep import describe_failure
from ingest.pipeline.writer import Writer

__all__ = ["UPKEEP_INTERVAL_S", "LagReporter", "WorkerState"]

log = logging.getLogger(__name__)

# Partitions are made days ahead; every few minutes keeps them there with a wide margin.
UPKEEP_INTERVAL_S: Final = 300
# Scheduled garbage collection of workers (automatic collection is off there): the young
# generations hold what a few seconds of batches left alive; a full pass is rarely needed.
GC_YOUNG_S: Final = 10.0
GC_FULL_S: Final = 300.0


class WorkerState(Protocol):
    """What housekeeping reads of its worker (``ingest.pipeline.worker.Worker`` has it); a
    protocol, so that this module does not import the worker that runs it."""

    sink: Sink
    metrics: PipelineMetrics
    bp: Backpressure
    builder: BatchBuilder
    writer: Writer | None
    consumer: Any
    owned: set[Any]
    stored: dict[Any, int | None]
    last_turn: float


class LagReporter:
    """Updates the gauges of one worker every ``interval_s`` seconds."""

    def __init__(self, worker: WorkerState, *, group_id: str, interval_s: float) -> None:
        self._w = worker
        self._group_id = group_id
        self._interval = interval_s
        self._labelled: set[Any] = set()
        self._since: dict[Any, float] = {}  # tp -> when it was assigned (for lag seconds)
        self._last_lag: dict[Any, int] = {}  # tp -> lag in frames at the last end offsets read
        self._next_upkeep = 0.0
        self._upkeep: asyncio.Task[None] | None = None  # the storage upkeep pass under way
        self._next_young_gc = time.monotonic() + GC_YOUNG_S
        self._next_full_gc = time.monotonic() + GC_FULL_S

    async def run(self) -> None:
        w = self._w
        w.metrics.db_connected.set(1)
        w.metrics.kafka_connected.set(0)
        try:
            while True:
                try:
                    await self.update()
                except Exception:  # a gauge must never take the worker down
                    log.exception("housekeeping failed")
                self._collect_garbage()
                if time.monotonic() >= self._next_upkeep:
                    self._next_upkeep = time.monotonic() + UPKEEP_INTERVAL_S
                    if self._upkeep is None or self._upkeep.done():
                        # Storage upkeep (partitions ahead on plain PostgreSQL) as a task of
                        # its own: a shard slow to answer must not stop the gauges, the
                        # database ping and the collections here. Every worker asks; the
                        # storage side lets one of them work at a time.
                        self._upkeep = asyncio.create_task(self._maintain(), name="upkeep")
                await asyncio.sleep(self._interval)
        finally:
            if self._upkeep is not None:
                # The sink closes a stuck shard's connection on cancel, which can hang too:
                # bounded within the worker's own bound on this task (Worker.run), so that this
                # task ends and only the upkeep pass is left behind.
                await end_within(self._upkeep, "the storage upkeep pass", HOUSEKEEPING_S / 2)

    async def _maintain(self) -> None:
        try:
            await self._w.sink.maintain()
        except Exception as exc:
            line = describe_failure(exc)
            if line is None:
                log.exception("storage maintenance failed; retrying in %ds", UPKEEP_INTERVAL_S)
                return
            # A shard down or hung: one line that names it, what failed, after how long; its
            # writes say the same in their own lines, so no traceback.
            log.warning(
                "%s; retrying in %ds: check that the shard's database is up, reachable and "
                "answering (its partitions' writes pause and retry meanwhile)",
                line,
                UPKEEP_INTERVAL_S,
            )

    def _collect_garbage(self) -> None:
        """The scheduled stand-in for automatic garbage collection (disabled in workers, see
        ``process._run``): young generations every ``GC_YOUNG_S``, everything every
        ``GC_FULL_S``. A no-op where automatic collection is on (tests, in-process use)."""
        if gc.isenabled():
            return
        now = time.monotonic()
        if now >= self._next_full_gc:
            self._next_full_gc = now + GC_FULL_S
            self._next_young_gc = now + GC_YOUNG_S
            gc.collect()
        elif now >= self._next_young_gc:
            self._next_young_gc = now + GC_YOUNG_S
            gc.collect(1)

    def forget(self, tps: Iterable[Any]) -> None:
        """Zero the per-partition gauges of partitions this worker gave up (see metrics.py:
        multi-process gauges cannot be removed, and ``livemax`` lets the new owner's win)."""
        m = self._w.metrics
        for tp in tps:
            labels = self._labels(tp)
            m.lag.labels(**labels).set(0)
            m.lag_seconds.labels(**labels).set(0)
            m.current_offset.labels(**labels).set(0)
            self._labelled.discard(tp)
            self._since.pop(tp, None)
            self._last_lag.pop(tp, None)

    def _labels(self, tp: Any) -> dict[str, str]:
        return {
            "consumergroup": self._group_id,
            "topic": tp.topic,
            "partition": str(tp.partition),
        }

    async def update(self) -> None:
        w = self._w
        m = w.metrics
        now = time.time()
        m.heartbeat.set(w.last_turn)
        in_use, idle, size_max = w.sink.pool_stats()
        m.db_pool.labels(state="in_use").set(in_use)
        m.db_pool.labels(state="idle").set(idle)
        m.db_pool.labels(state="max").set(size_max)
        # The copies of alerts whose entity moved to another worker's partition go first, or
        # the gauge would count them (with the new owner's) until the next rebalance.
        try:
            await w.sink.drop_moved()
        except Exception:  # a bug there must not stop the gauges below
            log.exception("the check for alerts of entities moved elsewhere failed")
        # By kind, rule and severity: critical ones page (issue 15), of any entity kind.
        m.set_open_alerts(w.sink.open_alert_counts())
        writer = w.writer
        if writer is None or w.consumer is None:
            return
        m.last_commit.set(writer.last_commit)
        owned = sorted(w.owned)
        ends: dict[Any, int] = {}
        try:
            if owned:
                ends = await asyncio.wait_for(w.consumer.end_offsets(owned), 5)
            else:
                await asyncio.wait_for(w.consumer.topics(), 5)
            m.kafka_connected.set(1)
        except Exception as exc:  # the broker is away: that is what we report
            m.kafka_connected.set(0)
            log.debug("end offsets unavailable: %r", exc)
        # Database: a failing write already says "down"; when idle, ask it.
        # With shards: connected = every shard answers (one down shows here and on /readyz).
        if w.bp.all_healthy and now - writer.last_commit > self._interval and not w.bp.in_flight:
            try:
                await asyncio.wait_for(w.sink.ping(), 5)
                m.db_connected.set(1)
            except Exception:  # reported through the gauge and /readyz
                m.db_connected.set(0)
        else:
            m.db_connected.set(1 if w.bp.all_healthy else 0)
        oldest: dict[Any, int] = {}
        for batch in [*writer.in_flight_batches(), w.builder.batch]:
            for tp, ts in batch.first_ts_ms.items():
                if ts < oldest.get(tp, 1 << 62):
                    oldest[tp] = ts
        backlog = 0
        for tp in owned:
            since = self._since.setdefault(tp, now)
            committed = writer.committed.get(tp, w.stored.get(tp))
            if committed is None:
                continue
            end = ends.get(tp)
            if end is None:
                # The brokers do not answer: how far the partition is behind is unknown, and
                # a gauge left as it was (0 when caught up) would hide frames piling up in
                # Kafka from the lag alerts. Its lag in frames stays the last known (for the
                # backlog too); its lag in seconds is the upper bound of a partition that
                # makes no progress, the time since its last commit, which grows for as long
                # as the outage lasts (NevIngestKafkaUnreachable says why).
                lag = self._last_lag.get(tp, 0)
            else:
                lag = max(0, end - committed)
                self._last_lag[tp] = lag
            backlog += lag
            if lag == 0 and end is not None:
                seconds = 0.0
            elif tp in oldest:
                seconds = max(0.0, now - oldest[tp] / 1000)
            else:
                seconds = now - writer.commit_time.get(tp, since)
            labels = self._labels(tp)
            m.lag.labels(**labels).set(lag)
            m.lag_seconds.labels(**labels).set(seconds)
            m.current_offset.labels(**labels).set(committed)
            self._labelled.add(tp)
        m.backlog.set(backlog + w.builder.size)
