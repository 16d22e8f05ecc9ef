"""The pipeline's ``Sink``: the storage writer and the rule engine in one transaction per batch.

Per batch: the rule engine evaluates the decoded frames once (partition by partition, in
offset order) and its changes ride in the writer's ``before_commit`` hook, so alerts are
durable exactly when the rows that produced them are, and so are their alerts-topic messages
(``alerts_outbox``): published after the commit, deleted in a later transaction once Kafka
acknowledged them, re-sent on assignment if a crash came between. On assignment the open
alerts of the new partitions are restored from the database (no second raise after a move);
when that fails the worker keeps the partitions paused and tries again. On revocation their
state is forgotten. SIGHUP swaps the rule set; its changes (alerts of removed rules
cleared) go with the next batch.

One rule engine per entity kind that has rules (vehicles, chargers, packs), each fed the
frames of its kind's topics (``alert_topics``: raw topic -> kind), partition by partition.

Shards (``storage.shards``): one ``StorageWriter`` (pool) per database. A batch is written to
its shard (``Batch.shard``: the writer's lanes give it the partitions of one shard only), with
the alert changes of its partitions and the outbox deletions of that shard; the changes that
came without a batch (restore, rule reload) wait for a write to their partition's shard.
Offsets, open alerts, unpublished outbox rows and the replay window are read from each
partition's shard. Outbox ids are per database, so they are kept as (shard, id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from alerts import AlertChange, RuleEngine, RuleSet, outbox, replay, to_message
from alerts.model import AlertRecord
from alerts.store import save_changes
from ingest.config import Settings
from ingest.pipeline.alert_state import AssignedState, RefillWarm, Replay
from ingest.pipeline.batch import Batch
from ingest.pipeline.entities import entities_of, unstamped
from ingest.pipeline.evaluation import AlertWork, evaluate_batch
from ingest.pipeline.latest_keeper import LatestKeeper
from ingest.pipeline.metrics import PipelineMetrics
from ingest.pipeline.moved import (
    CHECK_TIMEOUT_S,
    MOVED_CHECK_S,
    Claims,
    Moved,
    drop_moved,
    restore_moved,
)
from ingest.pipeline.moved_paths import Checked
from ingest.pipeline.publish import delete_acked
from ingest.pipeline.rule_errors import RuleErrors
from ingest.pipeline.shard_writers import ShardWriters
from ingest.pipeline.sink import AlertMessage, BeforeCommit, SinkResult, TransientSinkError
from ingest.pipeline.upkeep import maintain_shards
from ingest.pipeline.vehicle_models import check_model_scopes, load_models
from ingest.pipeline.waiting import Hold, Waiting
from ingest.wiring import databases, shard_pool_params, storage_params, writer_params
from storage.batch import WriteResult, WriterHooks
from storage.connect import PoolParams
from storage.errors import ErrorKind, StorageUnavailable, classify
from storage.offsets import OffsetRange
from storage.params import SchemaMode, StorageParams, WriterParams
from storage.shards import shard_of
from storage.unsure import Unsure
from storage.writer import StorageWriter

__all__ = ["StorageSink"]

log = logging.getLogger(__name__)

_Row = tuple[int, int]  # an alerts_outbox row: (shard, id)


class _Hooks(WriterHooks):
    """Health for backpressure: a transient error pauses the shard's partitions at once."""

    def __init__(self, sink: StorageSink, shard: int) -> None:
        self._sink = sink
        self._shard = shard

    def on_written(self, result: WriteResult) -> None:
        self._sink.health(True, self._shard)
        if result.bisect_loads:
            self._sink.metrics.bisect_loads.inc(result.bisect_loads)
        if result.partitions_created:
            self._sink.metrics.partitions_created.inc(result.partitions_created)

    def on_retry(self, attempt: int, delay_s: float, error: BaseException) -> None:
        self._sink.health(False, self._shard)
        self._sink.metrics.write_retries.labels(stage="database").inc()
        self._sink.metrics.shard_write_errors.labels(shard=str(self._shard)).inc()


class StorageSink:
    """See the module docstring."""

    def __init__(
        self,
        *,
        pools: Sequence[PoolParams],  # one per shard, in shard order (one: no sharding)
        writer: WriterParams,
        storage: StorageParams,
        metrics: PipelineMetrics,
        alert_topics: dict[str, str],  # raw topic -> entity kind, for topics with rules
        rules_file: str = "",
        models_file: str = "",
        alerts_enabled: bool = True,
        raw_frames: bool = False,
        rules_max_future_s: float = 600.0,
        names: Sequence[str] = (),  # each shard's setting, for the logs (default: by count)
    ) -> None:
        if not pools:
            raise ValueError("StorageSink needs at least one database")
        self._pool_params = list(pools)
        self._writer_params = writer
        self._storage = storage
        self.metrics = metrics
        self._alert_topics = alert_topics
        # The frame-time window's bound ahead (pipeline.frame_max_future_s): every frame stored
        # is judged by the rules. A smaller bound of the engine's own left frames 300-600 s
        # ahead stored but never evaluated (a vehicle whose clock runs fast had no alert).
        self._rules_max_future_s = rules_max_future_s
        self._rule_counts: dict[str, dict[str, int]] = {}  # per kind, at the last count
        self._rule_errors = RuleErrors(self.metrics)
        self._rules_file = rules_file
        self._models_file = models_file
        self._models: dict[str, str] = {}  # VIN -> vehicle model (alerts.models_file)
        self._alerts_enabled = alerts_enabled
        self._raw_frames = raw_frames
        if not names:
            one = len(pools) == 1
            names = ["postgres.dsn" if one else f"storage.shards[{i}]" for i in range(len(pools))]
        # By shard; one down at the start is opened later (ingest/pipeline/shard_writers.py).
        self._shards = ShardWriters(
            self._pool_params,
            writer,
            names=names,
            hooks=lambda shard: _Hooks(self, shard),
            opened=self._opened,
            health=self.health,
        )
        self._started = False
        self._engines: dict[str, RuleEngine] = {}  # entity kind -> its engine
        self._enabled = False  # alerts on and the engines built
        self._assigned: set[tuple[str, int]] = set()  # alert topics' partitions owned now
        # the restore's replay in progress, per assigned partition (lag: alert_state.Replay)
        self._replay = Replay(
            lag_s=2 * writer.latest_interval_ms / 1000, lagging=lambda k: self.latest.refilling(k)
        )
        # Saved by the next batch of their alert's shard, in the engines' order: from restore
        # / swap_rules (source None), the changes a batch of another shard made to an alert
        # stored on this one and those behind them (source: the frame's (topic, partition),
        # ready once its batch committed; ingest/pipeline/waiting.py).
        self._pending = Waiting(self._home)
        # Outbox rows a crash left unpublished, by (shard, id), with their (topic, partition);
        # the ones a write in flight is sending (claimed: another lane's write must not send
        # them too).
        self._resend: dict[_Row, tuple[tuple[str | None, int | None], AlertMessage]] = {}
        self._claimed: set[_Row] = set()
        self._acked: set[_Row] = set()  # outbox rows Kafka acknowledged, deleted next batch
        # topic -> {entity: partition} stamped in latest_state since the assignment (replay);
        # by topic, so that a batch's placements are checked against it without a tuple each
        self._placed: dict[str, dict[str, int]] = {}
        self._next_moved_check = 0.0  # monotonic time of the next drop_moved
        self._claims: Claims = {}  # entities drop_moved placed back here, at which watermark
        # (entity, topic) pairs whose alerts were looked up for a connector's other charger
        # path (ingest/pipeline/moved_paths.py), while this worker holds the entity
        self._checked: Checked = {}
        self._listener: Callable[[bool, int], None] = lambda healthy, shard: None
        self._modes: dict[int, SchemaMode] = {}  # shard -> its schema's mode, once read
        # Bounded-lag latest_state: the worker's hooks and the idle partitions' merges.
        self._refill = RefillWarm(self._engines, alert_topics, self._pending.add)
        self.latest = LatestKeeper(self._shards.for_latest, self.shard_of, self._refill.refilled)
        self._latest_task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, metrics: PipelineMetrics) -> StorageSink:
        k = settings.kafka
        return cls(
            pools=shard_pool_params(settings, "nev-ingest run"),
            writer=writer_params(settings),
            storage=storage_params(settings),
            metrics=metrics,
            alert_topics={
                k.topic_vehicle: "vehicle",
                k.topic_charger: "charger",
                k.topic_tcec: "charger",
                k.topic_battery: "battery",
            },
            rules_file=settings.alerts.rules_file,
            models_file=settings.alerts.models_file,
            alerts_enabled=settings.alerts.enabled,
            raw_frames=settings.storage.raw_frames,
            rules_max_future_s=settings.pipeline.frame_max_future_s,
            names=[name for name, _ in databases(settings)],
        )

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        # The shards that answer: the others are marked failing (their partitions paused)
        # and opened in the background; none answering is an error.
        await self._shards.open()
        self._started = True
        if self._writer_params.latest_interval_ms > 0:
            interval_s = self._writer_params.latest_interval_ms / 1000
            self._latest_task = asyncio.create_task(self.latest.run(interval_s))
        if self._alerts_enabled:
            self._enabled = True
            self._build_engines(self._load_rules())
            log.info(
                "rule engines ready",
                extra={"rules": {k: len(e.rules.rules) for k, e in self._engines.items()}},
            )

    def _opened(self, shard: int, writer: StorageWriter) -> None:
        writer.latest.placing = lambda kind: kind in self._engines  # replay's only

    def _build_engines(self, rules: RuleSet) -> None:
        """An engine for each kind of the alert topics that has rules and none yet."""
        for kind in dict.fromkeys(self._alert_topics.values()):
            if kind not in self._engines and rules.for_kind(kind).rules:
                engine = RuleEngine(
                    rules,
                    entity_kind=kind,
                    models=self._model_of,
                    max_future_s=self._rules_max_future_s,
                )
                self._engines[kind] = engine
                for outcome in engine.stats.as_dict():  # every series from 0 on
                    self.metrics.rule_frames.labels(kind=kind, outcome=outcome)
        # A reload's new rules too (this runs after each swap_rules).
        for kind, engine in self._engines.items():
            self._rule_errors.show(kind, (r.id for r in engine.rules.rules))

    def _count_rule_frames(self) -> None:
        """``rule_frames`` from the engines' counters, by what they counted since last time
        (an engine lives as long as the sink: a reload swaps its rules, not the engine)."""
        for kind, engine in self._engines.items():
            now = engine.stats.as_dict()
            before = self._rule_counts.get(kind, {})
            for outcome, n in now.items():
                if n > before.get(outcome, 0):
                    inc = n - before.get(outcome, 0)
                    self.metrics.rule_frames.labels(kind=kind, outcome=outcome).inc(inc)
            self._rule_counts[kind] = now
            # What the engine's safety net caught (alerts/failure.py): the batch goes on.
            self._rule_errors.report(kind, engine.take_failures())

    async def close(self) -> None:
        if self._latest_task is not None:
            self._latest_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._latest_task
        await self._shards.close()

    def set_health_listener(self, listener: Callable[[bool, int], None]) -> None:
        self._listener = listener

    def health(self, healthy: bool, shard: int = 0) -> None:
        self._listener(healthy, shard)

    @property
    def shards(self) -> int:
        return len(self._pool_params)

    def shard_of(self, partition: int) -> int:
        return shard_of(partition, len(self._pool_params))

    def _by_shard(self, partitions: Sequence[Any]) -> dict[int, list[Any]]:
        """Topic-partitions (objects or (topic, partition) tuples) grouped by their shard."""
        out: dict[int, list[Any]] = {}
        for tp in partitions:
            number = tp[1] if isinstance(tp, tuple) else tp.partition
            out.setdefault(self.shard_of(number), []).append(tp)
        return out

    def _load_rules(self) -> RuleSet:
        """The rule set, and the vehicle models it is scoped by (read first: a reload's swap
        places each entity by its model as the file now says)."""
        rules = RuleSet.load(self._rules_file) if self._rules_file else RuleSet.default()
        check_model_scopes(rules, self._models_file)
        if self._models_file:
            self._models = load_models(self._models_file)
        return rules

    def _model_of(self, vin: str) -> str | None:
        return self._models.get(vin)

    # -- offsets, upkeep ---------------------------------------------------------------------
    @property
    def writer(self) -> StorageWriter:
        """The first shard's writer (the only one without sharding)."""
        return self.writer_of(0)

    def writer_of(self, shard: int) -> StorageWriter:
        """Shard ``shard``'s writer; ``StorageUnavailable`` while it is down since the start."""
        if not self._started:
            raise RuntimeError("StorageSink.start() was not awaited")
        return self._shards.writer_of(shard)

    async def stored_offsets(self, partitions: Sequence[Any]) -> dict[Any, int]:
        out: dict[Any, int] = {}
        for shard, tps in self._by_shard(partitions).items():
            by_key = {(tp.topic, tp.partition): tp for tp in tps}
            try:
                stored = await self.writer_of(shard).load_offsets(list(by_key))
            except (OSError, StorageUnavailable) as exc:
                raise TransientSinkError(f"shard {shard}: {exc}") from exc
            out.update({by_key[key]: off for key, off in stored.items() if key in by_key})
        return out

    async def ping(self) -> None:
        for shard in range(self.shards):
            try:
                await self.writer_of(shard).ping()
            except StorageUnavailable as exc:
                raise TransientSinkError(f"shard {shard}: {exc}") from exc

    async def maintain(self) -> None:
        await maintain_shards(self._shards.writers, self._storage, self._modes)

    def pool_stats(self) -> tuple[int, int, int]:
        in_use = idle = 0
        size_max = sum(p.max_size for s, p in enumerate(self._pool_params) if not self._open(s))
        for _, writer in self._shards.open_writers():
            pool = writer.pool
            size, free = pool.get_size(), pool.get_idle_size()
            in_use, idle, size_max = (
                in_use + size - free,
                idle + free,
                size_max + pool.get_max_size(),
            )
        return (in_use, idle, size_max)

    def _open(self, shard: int) -> bool:
        return self._shards.writers[shard] is not None

    # -- alerts state ------------------------------------------------------------------------
    def open_alert_counts(self) -> dict[tuple[str, str, str], int]:
        # Every alerting rule from 0, so that an alert rule on the gauge has a series to see;
        # keyed by the engine's entity kind too (each engine holds its kind's rules only).
        counts = {
            (kind, r.id, r.severity): 0
            for kind, e in self._engines.items()
            for r in e.rules.rules
            if r.alert
        }
        for kind, engine in self._engines.items():
            for rec in engine.open_alerts():
                key = (kind, rec.rule_id, rec.severity)
                counts[key] = counts.get(key, 0) + 1
        return counts

    async def on_partitions_assigned(
        self, partitions: Sequence[Any], *, until: float | None = None
    ) -> list[Any]:
        if not self._enabled:
            return list(partitions)
        alerting = [tp for tp in partitions if tp.topic in self._alert_topics]
        # The replay a slice at a time, applied page by page, partition after partition
        # (ingest/pipeline/alert_state.py): each partition whose replay is complete is adopted
        # and returned; the worker calls again for the others.
        end = time.monotonic() + self._replay.slice_s
        until = end if until is None else min(end, until)
        for shard, tps in self._by_shard(alerting).items():
            keys = sorted({(tp.topic, tp.partition) for tp in tps})
            if self._replay.done(keys):
                continue
            pool = self.writer_of(shard).pool
            async with pool.acquire(timeout=self._replay.step_timeout_s) as conn:
                if not await self._replay.run(
                    conn, keys, self._alert_topics, self._engines, until=until
                ):
                    break
        ready = [tp for tp in alerting if self._replay.done([(tp.topic, tp.partition)])]
        if ready:
            await self._adopt(ready)
        waiting = set(alerting) - set(ready)
        return [tp for tp in partitions if tp not in waiting]

    async def _adopt(self, partitions: Sequence[Any]) -> None:
        """The open alerts and unsent messages of ``partitions``, whose replay is complete."""
        mine = [(tp.topic, tp.partition) for tp in partitions]
        # By (topic, partition): chargers' two topics have the same partition numbers.
        parts = {
            t: sorted({p for t2, p in mine if t2 == t}) for t in dict.fromkeys(t for t, _ in mine)
        }
        state = AssignedState()
        for shard, tps in self._by_shard(partitions).items():
            # Each partition's state is in its shard's database.
            async with self.writer_of(shard).pool.acquire() as conn:
                await state.read(conn, shard, tps, parts, self._alert_topics, self._engines)
        records, unsent = self._refill.defer(state.records, self.latest.refilling), state.unsent
        # Read, then applied: a failed read (retried) changes nothing. The stored open alerts
        # become live after the replay rebuilt histories and durations (docs/alerts.md).
        for kind, recs in records.items():
            self._pending.add(self._engines[kind].restore(recs))
        self._pending.add(state.cleared)
        self._assigned.update(mine)
        for shard, row in unsent:
            if (shard, row.id) not in self._acked:
                self._resend[(shard, row.id)] = ((row.topic, row.partition), _resent(row, shard))
        entities, frames = self._replay.totals(mine)
        took = self._replay.took_s(mine)
        self._replay.forget(mine)
        log.info(
            "alert state restored",
            extra={
                "partitions": parts,
                "alerts": sum(r.cleared_ms is None for recs in records.values() for r in recs),
                "unpublished": len(unsent),
                "replayed_entities": entities,
                "replayed_frames": frames,
                "replay_s": round(took, 2),
                "replay_frames_per_s": round(frames / max(took, 1e-9)),
                "replay_window_s": {k: e.rules.window_s for k, e in self._engines.items()},
            },
        )

    def on_partitions_lost(self, partitions: Sequence[Any]) -> None:
        self.latest.forget(partitions)  # merged by the worker's flush_latest, or refilled
        if not self._enabled:
            return
        lost = {(tp.topic, tp.partition) for tp in partitions if tp.topic in self._alert_topics}
        self._assigned -= lost
        self._replay.forget(lost)  # a replay in progress starts afresh if they come back
        self._refill.forget(lost)
        # A claim belongs to the state just forgotten: restored again at the same watermark,
        # the entity is placed back once more before this worker yields it (moved.drop_moved).
        self._claims.clear()
        self._checked.clear()  # their entities may be gone: looked up again when they come
        for topic, partition in lost:
            engine = self._engines.get(self._alert_topics[topic])
            if engine is not None:
                engine.forget(partition=partition, topic=topic)
        gone = {(tp.topic, tp.partition) for tp in partitions}
        for topic, placed in self._placed.items():
            for eid in [e for e, p in placed.items() if (topic, p) in gone]:
                del placed[eid]
        # Their unpublished messages are the next owner's to send (a write in flight may
        # still send its claimed ones: at-least-once). A row of no topic (before 0053) goes
        # with its partition number.
        numbers = {p for _, p in lost}

        def theirs(topic: str | None, partition: int | None) -> bool:
            return (topic, partition) in lost or (topic is None and partition in numbers)

        for row_id, ((topic, partition), _) in list(self._resend.items()):
            if theirs(topic, partition):
                del self._resend[row_id]
        # So are the waiting changes to their alerts (a restore's, a rules reload's, and those
        # a committed frame of the other charger path made): saved by this worker's next
        # batch, they would overwrite what the next owner restored and decides (closing its
        # open row under it, as for a fenced partition: _fenced). The binary path's clear is
        # then lost: the alert stays open until the pushes clear it (docs/alerts.md).
        # A batch of theirs not committed by now (the revoke drained or abandoned the
        # writer) was abandoned: its waiting changes go, the next owner decides them again.
        self._pending.lost(lost, theirs)

    def has_pending_changes(self) -> bool:
        return bool(self._pending.ready() or self._acked or self._resend.keys() - self._claimed)

    def alerts_published(self, alerts: Sequence[AlertMessage]) -> None:
        self._acked.update((a.shard, a.outbox_id) for a in alerts if a.outbox_id is not None)

    async def delete_published(self) -> None:
        await delete_acked(self._acked, self.writer_of)

    def reload_rules(self) -> str:
        if not self._alerts_enabled:
            return "alerts are disabled (alerts.enabled = false): nothing to reload"
        if not self._enabled:
            # A SIGHUP while the worker still waits for its databases: start() has not
            # loaded any rules yet, and when it does it reads the rules in force then.
            return (
                "rules not loaded yet (the worker is still starting): nothing to reload; it "
                "loads the rules in force when it starts"
            )
        rules = self._load_rules()
        changes = [c for e in self._engines.values() for c in e.swap_rules(rules)]
        # A kind that had no rules gets an engine now; it starts without history or alerts.
        self._build_engines(rules)
        self._pending.add(changes)
        return (
            f"rules reloaded from {self._rules_file or 'the built-in default set'}: "
            f"{len(rules.rules)} rules, {len(changes)} alerts cleared by the change"
        )

    def _home(self, change: AlertChange) -> int:
        """The shard that holds the change's alert row: its partition's (none: shard 0)."""
        return self.shard_of(change.alert.partition or 0)

    def _take_pending(self, shard: int, hold: Hold) -> list[AlertChange]:
        """The waiting changes of ``shard``'s partitions (an alert of no partition: shard 0),
        registered till ``hold``'s batch commits (``_pending.settle`` after the write)."""
        return [change for change, _source in self._pending.take(shard, hold)]

    def _placements(self, batch: Batch) -> dict[tuple[str, str], dict[str, int]]:
        """(topic, kind) -> {entity: partition} not stamped in latest_state since the
        assignment: what the replay on the next assignment finds the entities by. From the
        batch's entities walked once (ingest/pipeline/entities.py, shared with the moved
        lookup before the evaluation)."""
        return unstamped(entities_of(batch, self._alert_topics), self._placed)

    async def _restore_moved(self, batch: Batch) -> Moved:
        """``moved.restore_moved`` on the batch's shard; its database away: transient."""
        bound = self._replay.step_timeout_s
        try:
            pool = self.writer_of(batch.shard).pool  # a shard down since the start: transient
            async with pool.acquire(timeout=bound) as conn:
                return await restore_moved(
                    conn,
                    batch,
                    self._engines,
                    self._alert_topics,
                    self._replay.lag_s,
                    self._checked,
                )
        except Exception as exc:
            if classify(exc) is ErrorKind.TRANSIENT:  # a pool timeout, a connection lost too
                # A bare TimeoutError (the pool's) has no text: "shard 1: " said nothing.
                detail = f"no connection within {bound:g} s" if not str(exc) else str(exc)
                raise TransientSinkError(
                    f"shard {batch.shard}: the lookup of the batch's entities moved from other "
                    f"partitions failed ({type(exc).__name__}: {detail}); the batch is retried: "
                    "check that the shard's database is up, reachable and answering"
                ) from exc
            raise

    async def drop_moved(self) -> None:
        # A query per shard over the entities with an open alert: every MOVED_CHECK_S, not
        # every housekeeping turn (thousands of open alerts in a fleet-wide event).
        if not self._enabled or time.monotonic() < self._next_moved_check:
            return
        self._next_moved_check = time.monotonic() + MOVED_CHECK_S
        gone = await drop_moved(
            self._engines,
            lambda shard: self.writer_of(shard).pool.acquire(timeout=CHECK_TIMEOUT_S),
            self.shard_of,
            self._claims,
        )
        # Their placements go with them: the new owner stamped another partition since. Should
        # their frames come back here, the stamp (the merge's, with a latest interval) must
        # not take them for stamped already, or latest_state keeps the other partition and its
        # owner, which never drops its copy, judges the device beside this worker.
        for kind, ids in gone.items():
            for checked in self._checked.values():
                checked.difference_update(ids)
            for topic, placed in self._placed.items():
                if self._alert_topics.get(topic) == kind:
                    for eid in ids:
                        placed.pop(eid, None)
            for writer in self._shards.for_latest():
                writer.latest.unplace(kind, ids)

    # -- the write ---------------------------------------------------------------------------
    async def write(self, batch: Batch, before_commit_hook: BeforeCommit) -> SinkResult:
        try:
            writer = self.writer_of(batch.shard)
        except StorageUnavailable as exc:  # down since the start: its lanes retry
            raise TransientSinkError(f"shard {batch.shard}: {exc}") from exc
        if batch.alert_moves is None and self._engines:
            # Before the evaluation (once per batch, kept for a retry's transaction): the
            # state of the batch's entities that moved here from another partition.
            batch.alert_moves = await self._restore_moved(batch)
            self._pending.add(batch.alert_moves.changes)
        moved: Moved | None = batch.alert_moves
        if batch.alert_changes is None:
            # Once per batch: the engine's state moves with each evaluation, so a retried
            # write must save the same changes, not evaluate the frames a second time.
            batch.alert_changes = await evaluate_batch(
                batch, self._engines, self._alert_topics, self._take_pending, self._pending.route
            )
            self._count_rule_frames()
        changes: list[AlertChange] = batch.alert_changes
        shard = batch.shard
        # A change to an alert whose row is on another shard (a connector's two charger paths,
        # their partitions on different shards: a frame of one updates or clears an alert
        # stamped with the other's partition) is saved there, not in this transaction, where
        # no row would match and the alert stayed open; so is a change to an alert that has
        # one waiting (the order). The evaluation left them waiting, held until this batch
        # commits (after the write below), then saved and published by that shard's next
        # batch (a changes-only one when it has no frames).
        work: AlertWork | None = batch.alert_work
        offsets = {
            (tp.topic, tp.partition): OffsetRange(batch.start.get(tp), nxt)
            for tp, nxt in batch.next.items()
        }
        acked = {key for key in self._acked if key[0] == shard}
        # With a latest interval the writer's merges record the placements (once per entity
        # per assignment, storage/latest_pending.py): a stamp here would find no row for a
        # new entity until its partition's merge and be sent again with every batch till then.
        stamps = self._engines and not writer.latest.bounded
        placements = self._placements(batch) if stamps else {}
        # Claimed for this write: lanes write concurrently, and two sending the same snapshot
        # would duplicate it on the alerts topic. Released if this write fails (the retry, or
        # another lane, sends them).
        resend = {
            key: m
            for key, (_, m) in self._resend.items()
            if key[0] == shard and key not in self._claimed
        }
        self._claimed.update(resend)

        async def before_commit(conn: Any, outcome: Any) -> None:
            await before_commit_hook([(r.index, r.detail) for r in outcome.rejected])
            fenced = {tp for tp in outcome.fenced if tp[0] in self._alert_topics}
            keep = [c for c in changes if not _fenced(c.alert, fenced)]
            # On the batch: the attempt that committed may be one whose COMMIT got no answer,
            # found committed by a retry that runs no hook (storage/unsure.py); with its own
            # fenced partitions, not the retry's: those count the partitions that attempt
            # committed and another consumer moved on since, and their frames' waiting
            # changes (a clear of the other shard's alert) would be dropped.
            saved: list[AlertMessage] = []
            batch.alert_saved = (saved, acked, set(outcome.fenced))
            if keep:
                await save_changes(conn, keep)
                messages = [to_message(c) for c in keep]
                records = [
                    (c.alert.topic, c.alert.partition, *m)
                    for c, m in zip(keep, messages, strict=True)
                ]
                ids = await outbox.add(conn, records)
                saved.extend(
                    _alert(c, m, i, shard) for c, m, i in zip(keep, messages, ids, strict=True)
                )
            await outbox.delete(conn, {row_id for _, row_id in acked})
            if moved is not None:
                await moved.apply(conn, fenced)
            for (topic, kind), entities in placements.items():
                await replay.stamp(conn, kind, topic, entities)

        if not offsets and batch.unsure is None:
            batch.unsure = Unsure()  # changes only: its retry looks whether this write committed
        try:
            result = await writer.write_batch(
                batch.frames,
                offsets,
                partitions=[(r.topic, r.partition) for r in batch.records],
                kafka_offsets=[r.offset for r in batch.records],
                raw=[r.value or b"" for r in batch.records] if self._raw_frames else None,
                before_commit=before_commit,
                unsure=None if offsets else batch.unsure,
            )
        except StorageUnavailable as exc:
            raise TransientSinkError(f"shard {shard}: {exc}") from exc
        finally:
            self._claimed.difference_update(resend)
        # What the committed transaction's hook saved and deleted, and what it found fenced
        # (a batch without one: none, and the write's fenced partitions).
        saved, deleted, fenced = batch.alert_saved or ([], set(), set(result.fenced))
        batch.alert_saved = None
        self._acked -= deleted
        if work is not None:
            self._pending.settle(work.hold, fenced)
        # A stamp reaches only entities latest_state has (merged: every partition, without an
        # interval).
        merged = result.latest_merged
        for (topic, _), entities in placements.items():
            placed = self._placed.setdefault(topic, {})
            for vin, partition in entities.items():
                if (topic, partition) in merged:
                    placed[vin] = partition
        for row_id in resend:
            self._resend.pop(row_id, None)
        by_key = {(tp.topic, tp.partition): tp for tp in batch.next}
        return SinkResult(
            rejected=[(r.index, r.detail) for r in result.rejected],
            alerts=[*resend.values(), *saved],
            rows=dict(result.rows),
            fenced={by_key.get(key, key): off for key, off in result.fenced.items()},
            duplicates=result.duplicates_skipped,
        )


def _fenced(alert: AlertRecord, fenced: set[tuple[str, int]]) -> bool:
    """Whether the alert's partition was fenced (another consumer wrote it): not ours to save.
    An alert of no topic (stored before 0053) goes by its partition number.

    Also a change a frame of the other charger path made, committed in this batch (a binary
    frame clearing an alert raised by pushes): that partition's other owner holds the alert
    as it restored it, and its row is that owner's to write. Saved, the clear closed the row
    under it: its next updates went to the closed row (alerts/store.py), the database showed
    no open alert while its pushes reported the fault, and its own clear was published a
    second time. Dropped, the binary path's clear is lost: the alert stays open until the
    pushes clear it (docs/alerts.md)."""
    if alert.topic is None:
        return any(p == alert.partition for _, p in fenced)
    return (alert.topic, alert.partition) in fenced


def _alert(
    change: AlertChange, message: tuple[bytes, bytes], outbox_id: int, shard: int
) -> AlertMessage:
    a = change.alert
    key, value = message
    return AlertMessage(
        a.entity_kind, a.rule_id, a.severity, change.type, key, value, outbox_id, shard
    )


def _resent(row: outbox.OutboxRow, shard: int) -> AlertMessage:
    """An unpublished outbox record, sent again byte for byte (kind, rule etc. for the
    metrics)."""
    body = orjson.loads(row.value)
    return AlertMessage(
        kind=str(body.get("entity_kind", "")),
        rule=str(body.get("rule_id", "")),
        severity=str(body.get("severity", "")),
        change=str(body.get("type", "")),
        key=row.key,
        message=row.value,
        outbox_id=row.id,
        shard=shard,
    )
