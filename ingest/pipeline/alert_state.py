"""What a worker reads when partitions are assigned to it, before their first batch: the frames
of the last rule window to replay, then the open alerts of those partitions and their
unpublished alerts-topic messages (``alerts_outbox``) (docs/alerts.md, "after a rebalance").
Read per shard, from the database that holds each partition (``storage.shards``).

The replay is proportional to the partitions' recently active entities, which can be millions
per worker (docs/capacity.md, 3,000,000 devices), so ``Replay`` works through them a page of
entities at a time (``replay.entity_page``), warming the engine with each page as it comes:

* memory: one page of frames at a time, not every entity's window at once;
* time: each page has its own bound (``STEP_TIMEOUT_S``: the restore fails on no progress,
  not on the total), and a call returns after ``SLICE_S`` with the work unfinished, so the
  consumer keeps polling (the group's poll interval) and the partitions already restored go
  on; the worker calls again and the replay goes on from where it stopped;
* failure: a page is applied whole or not at all, and the next call (after a database error,
  a timeout) resumes after the last applied page, never from zero;
* a progress line per slice and a summary (entities, frames, frames/s).

A partition stays paused until its replay is complete, so no live frame reaches an engine
between two pages. Partitions are replayed one after the other, so the first resume early. A
partition's open alerts and outbox rows (few) are read in one go once its replay is complete
(``AssignedState``), then applied: ``restore`` after ``warm``, as before.

With bounded-lag latest_state (``storage.latest_interval_ms`` > 0) a crash leaves latest_state
up to 1.5 intervals behind the stored rows: the replay from the database then ends at each
entity's stale latest_state time and cannot find the entities first seen since the last
merge. The new owner reads that range again from Kafka anyway, to refill the pending tuples
(ingest/pipeline/latest_keeper.py); ``RefillWarm`` warms the partition's engine with those
frames too and applies its stored alerts once the refill is complete (warm, then restore).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final

from alerts import AlertChange, RuleEngine, outbox, replay
from alerts.model import AlertRecord
from alerts.replay_kinds import objects_of
from alerts.store import load_open
from storage.errors import ErrorKind, classify

__all__ = [
    "PAGE_ENTITIES",
    "RESTORE_ATTEMPTS",
    "SLICE_S",
    "STEP_TIMEOUT_S",
    "AssignedState",
    "RefillWarm",
    "Replay",
]

log = logging.getLogger(__name__)

# Entities per page: ~11 vehicle frames each at the default window (105 s), ~180 objects each
# for chargers and packs (1,835 s / 1,800 s): a few MB of rows per page.
PAGE_ENTITIES: Final = 1000
# No progress (one page read) within this: the load fails and is retried, from that page on.
STEP_TIMEOUT_S: Final = 30.0
# Work per call: then the worker polls Kafka and calls again (partitions stay paused meanwhile).
SLICE_S: Final = 5.0
# Restores of a partition's held alerts after its refill before giving up (RefillWarm._restore).
RESTORE_ATTEMPTS: Final = 3

_Key = tuple[str, int]  # (topic, partition)


@dataclass(slots=True)
class _Progress:
    """One partition's replay so far (kept across calls, dropped on revoke)."""

    since: datetime | None = None  # the entities stored since then are replayed
    lag_s: float = 0.0  # how far latest_state may lag its rows (``Replay.lag_s``), or 0
    after: str = ""  # the last entity applied (entity order)
    done: bool = False
    entities: int = 0
    frames: int = 0
    started: float = field(default_factory=time.monotonic)


class Replay:
    """The paged replay of the last rule window, per assigned (topic, partition)."""

    def __init__(
        self,
        *,
        page_entities: int = PAGE_ENTITIES,
        step_timeout_s: float = STEP_TIMEOUT_S,
        slice_s: float = SLICE_S,
        lag_s: float = 0.0,
        lagging: Callable[[_Key], bool] = lambda key: False,
    ) -> None:
        self.page_entities = page_entities
        self.step_timeout_s = step_timeout_s
        self.slice_s = slice_s
        # How far latest_state.updated_at may lag the stored rows after a crash (bounded-lag
        # latest_state: < 1.5 intervals plus the merge; the sink passes 2 intervals): an entity
        # still reporting when the last owner crashed may have been merged last that long ago,
        # and is recent all the same. Its frames after that come from the refill (RefillWarm).
        # Only for the partitions that refill (``lagging``: ``LatestKeeper.refilling``, known
        # once their stored offsets were loaded): after a rebalance or a stop latest_state is
        # complete, and a wider cutoff would only replay more entities.
        self.lag_s = lag_s
        self.lagging = lagging
        self._progress: dict[_Key, _Progress] = {}

    def done(self, keys: Iterable[_Key]) -> bool:
        return all(k in self._progress and self._progress[k].done for k in keys)

    def totals(self, keys: Iterable[_Key]) -> tuple[int, int]:
        """(entities, frames) replayed for ``keys``."""
        got = [self._progress[k] for k in keys if k in self._progress]
        return sum(p.entities for p in got), sum(p.frames for p in got)

    def took_s(self, keys: Iterable[_Key]) -> float:
        """Seconds since the earliest of ``keys``' replays began."""
        starts = [self._progress[k].started for k in keys if k in self._progress]
        return time.monotonic() - min(starts) if starts else 0.0

    def forget(self, keys: Iterable[_Key]) -> None:
        for key in keys:
            self._progress.pop(key, None)

    async def run(
        self,
        conn: Any,
        keys: Sequence[_Key],
        alert_topics: Mapping[str, str],
        engines: Mapping[str, RuleEngine],
        *,
        until: float,
    ) -> bool:
        """Replay pages of ``keys`` (partitions of one shard, whose database ``conn`` is) into
        ``engines`` until all are done (True) or ``until`` (``time.monotonic``) passed."""
        # One cutoff for every partition of the assignment, fixed when it begins: a long
        # restore must not let the entities of the partitions it reaches last age out of the
        # window meanwhile (they are paused, so their latest_state does not move on).
        fresh = [k for k in keys if k not in self._progress]
        spans: dict[_Key, tuple[float, float]] = {}
        for key in fresh:
            engine = engines.get(alert_topics.get(key[0], ""))
            window_s = 0.0 if engine is None else engine.rules.window_s
            spans[key] = (window_s, self.lag_s if self.lagging(key) else 0.0)
        since = {
            (w, lag): await replay.cutoff(conn, w + lag) for w, lag in set(spans.values()) if w > 0
        }
        for key in fresh:
            self._progress[key] = _Progress(since=since.get(spans[key]), lag_s=spans[key][1])
        for key in keys:
            progress = self._progress[key]
            engine = engines.get(alert_topics.get(key[0], ""))
            if engine is None or engine.rules.window_s <= 0:
                progress.done = True
            while not progress.done:
                assert engine is not None
                await self._page(conn, key, alert_topics[key[0]], engine, progress)
                if not progress.done and time.monotonic() >= until:  # a page per call at least
                    self._log_progress(key, progress)
                    return False
        return True

    async def _page(
        self, conn: Any, key: _Key, kind: str, engine: RuleEngine, progress: _Progress
    ) -> None:
        """Read and apply the next page of ``key``'s entities (all of it or nothing). The
        database unreachable or too slow: raised (the partitions stay paused and the next call
        resumes here); anything else (a bug, a schema surprise) must not stall them: the
        partition's windowed rules then start without history, said loudly."""
        topic, partition = key
        window_s = engine.rules.window_s
        try:
            async with asyncio.timeout(self.step_timeout_s):
                if progress.since is None:  # not set when the run began: no window then
                    progress.since = await replay.cutoff(conn, window_s + progress.lag_s)
                entities = await replay.entity_page(
                    conn,
                    kind,
                    topic,
                    partition,
                    since=progress.since,
                    after=progress.after,
                    limit=self.page_entities,
                )
                if kind == "vehicle":
                    frames: list[Any] = list(await replay.frames_of(conn, entities, window_s))
                else:
                    frames = await objects_of(conn, kind, entities, window_s)
        except Exception as exc:
            # The step's own bound (a TimeoutError) is transient too: classify says so.
            if classify(exc) is ErrorKind.TRANSIENT:
                raise
            log.exception("replay of the last rule window failed: windowed rules start blind")
            engine.forget(partition=partition, topic=topic)
            progress.done = True
            return
        try:
            engine.warm(frames, partition=partition, topic=topic)
        except Exception:  # a bug must not keep the partition paused: start blind, loudly
            log.exception("replay of the last rule window failed: windowed rules start blind")
            engine.forget(partition=partition, topic=topic)
            progress.done = True
            return
        progress.entities += len(entities)
        progress.frames += len(frames)
        if len(entities) < self.page_entities:
            progress.done = True
        else:
            progress.after = entities[-1]["entity_id"]

    def _log_progress(self, key: _Key, progress: _Progress) -> None:
        took = max(time.monotonic() - progress.started, 1e-9)
        log.info(
            "alert state restore in progress: the partition stays paused until it is complete",
            extra={
                "partition": f"{key[0]}[{key[1]}]",
                "entities": progress.entities,
                "replayed_frames": progress.frames,
                "frames_per_s": round(progress.frames / took),
                "took_s": round(took, 1),
            },
        )


class RefillWarm:
    """The frames a new owner reads again after a crash only to refill the pending latest_state
    tuples (``LatestKeeper.take_refill``: offsets ``latest_from`` up to the stored offset, in
    order) warm the partition's rule engine too: they are the newest frames of the last rule
    window that the replay from the database cannot see (it ends at each entity's latest_state
    time, stale by up to 1.5 intervals, and finds no entity first seen since the last merge).

    The two overlap without harm: a frame the database replay warmed already is at or below
    its entity's watermark, a duplicate or late, which ``warm`` ignores; nothing raises,
    updates, clears, is published or counted. Order: the stored alerts of a partition that
    refills (``defer``) are restored once its refill is complete (``refilled``), because
    ``restore`` moves watermarks up to the alerts' last-seen and clear times - the refill's
    frames up to there would then be ignored as late and the entity's other rules lose that
    history. No new frame of the partition is evaluated before then: ``take_refill`` lets
    none through until the refill is complete."""

    def __init__(
        self,
        engines: Mapping[str, RuleEngine],
        alert_topics: Mapping[str, str],
        emit: Callable[[list[AlertChange]], None],
    ) -> None:
        self._engines = engines  # kind -> engine (the sink's dict: engines built later count)
        self._alert_topics = alert_topics
        self._emit = emit  # the changes ``restore`` returns: saved with the next batch
        self._held: dict[_Key, list[tuple[str, AlertRecord]]] = {}
        self._attempts: dict[_Key, int] = {}  # failed restores per partition (RESTORE_ATTEMPTS)

    def defer(
        self, records: Mapping[str, list[AlertRecord]], refilling: Callable[[_Key], bool]
    ) -> dict[str, list[AlertRecord]]:
        """The records to restore now (by kind); those of refilling partitions are held."""
        now: dict[str, list[AlertRecord]] = {}
        for kind, recs in records.items():
            for rec in recs:
                key = (rec.topic or "", rec.partition if rec.partition is not None else -1)
                if rec.topic is not None and rec.partition is not None and refilling(key):
                    self._held.setdefault(key, []).append((kind, rec))
                else:
                    now.setdefault(kind, []).append(rec)
        return now

    def refilled(self, key: _Key, frames: list[Any], complete: bool) -> bool:
        """``LatestKeeper``'s ``on_refill``: warm with ``frames``, then restore when done.
        False: some held alerts could not be restored yet (kept; the keeper calls again with
        the partition's next records, before they are evaluated)."""
        topic, partition = key
        engine = self._engines.get(self._alert_topics.get(topic, ""))
        if engine is not None and frames:
            try:
                engine.warm(frames, partition=partition, topic=topic)
            except Exception:  # a bug must not stop the partition: start blind, loudly
                log.exception("warming with the refilled frames failed: windowed rules start blind")
                engine.forget(partition=partition, topic=topic)
        if not complete or not self._held.get(key):
            return True
        return self._restore(key)

    def _restore(self, key: _Key) -> bool:
        """Restore ``key``'s held alerts kind by kind; a kind whose ``restore`` raised stays
        held. The replay path's policy for a failing restore (storage_sink._adopt) is to keep
        the stored alerts and try again; here the refill is over and the partition's frames
        flow, so the retry comes with its next records, a bounded number of times: ``restore``
        is pure, a failure is a bug and repeats, and retrying it forever would only repeat the
        error line. Then the alerts stay open in the database (nothing deleted) and its next
        assignment reads them again."""
        held = self._held[key]
        by_kind: dict[str, list[AlertRecord]] = {}
        for kind, rec in held:
            by_kind.setdefault(kind, []).append(rec)
        failed: list[tuple[str, AlertRecord]] = []
        error: Exception | None = None
        for kind, recs in by_kind.items():
            try:
                self._emit(self._engines[kind].restore(recs))
            except Exception as exc:  # restoring again is harmless: restore only sets state
                failed.extend((kind, rec) for rec in recs)
                error = exc
        where = f"{key[0]}[{key[1]}]"
        if not failed:
            del self._held[key]
            self._attempts.pop(key, None)
            log.info(
                "alert state restored after the refill",
                extra={"partition": where, "alerts": sum(r.cleared_ms is None for _, r in held)},
            )
            return True
        attempt = self._attempts[key] = self._attempts.get(key, 0) + 1
        extra = {"partition": where, "alerts": len(failed), "attempt": attempt}
        if attempt < RESTORE_ATTEMPTS:
            self._held[key] = failed
            log.error(
                "restoring the stored alerts after the refill failed (%r): kept, and tried "
                "again with the partition's next records",
                error,
                exc_info=error,
                extra=extra,
            )
            return False
        self.forget([key])
        log.error(
            "restoring the stored alerts after the refill failed %d times (%r): given up; "
            "they stay open in the database and the partition's next assignment reads them "
            "again (restart the worker to retry now)",
            attempt,
            error,
            exc_info=error,
            extra=extra,
        )
        return True

    def forget(self, keys: Iterable[_Key]) -> None:
        for key in keys:
            self._held.pop(key, None)
            self._attempts.pop(key, None)


@dataclass(slots=True)
class AssignedState:
    """The open alerts and unsent messages of newly assigned partitions, shard by shard."""

    records: dict[str, list[AlertRecord]] = field(default_factory=dict)  # by entity kind
    unsent: list[tuple[int, outbox.OutboxRow]] = field(default_factory=list)  # (shard, row)
    # Open alerts of a kind that has no rules any more (no engine): cleared, rule_removed.
    cleared: list[AlertChange] = field(default_factory=list)

    async def read(
        self,
        conn: Any,
        shard: int,
        partitions: Sequence[Any],
        topics: Mapping[str, Sequence[int]],
        alert_topics: Mapping[str, str],
        engines: Mapping[str, RuleEngine],
    ) -> None:
        """Add the state of ``partitions`` (TopicPartitions of ``shard``, whose database
        ``conn`` is); ``topics``: the alert topics being assigned (raw topic -> partitions)."""
        numbers_of = {
            t: sorted({tp.partition for tp in partitions if tp.topic == t}) for t in topics
        }
        for topic, numbers in numbers_of.items():
            kind = alert_topics[topic]
            if not numbers:
                continue
            got = await load_open(conn, entity_kind=kind, partitions=numbers, topic=topic)
            # A row stored before topics were (0053) is this topic's from now on.
            got = [r if r.topic else replace(r, topic=topic) for r in got]
            if kind in engines:
                self.records.setdefault(kind, []).extend(got)
                continue
            # Every rule of the kind is gone (removed while the service was stopped): no
            # engine would evaluate or clear these, so they are cleared, as a reload clears
            # the alerts of the rules it removes.
            self.cleared.extend(
                AlertChange(
                    "cleared", replace(r, cleared_ms=r.last_seen_ms, clear_reason="rule_removed")
                )
                for r in got
                if r.cleared_ms is None
            )
        keys = sorted((t, p) for t, ps in numbers_of.items() for p in ps)
        self.unsent.extend((shard, row) for row in await outbox.pending(conn, keys))
