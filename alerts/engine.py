"""The rule engine: decoded frames in, alert changes out. Pure: no I/O, no clock.

Usage inside a pipeline worker (one engine per worker, per entity kind)::

    engine = RuleEngine(RuleSet.load(path), models=vin_to_model)
    engine.rebuild(await load_open(conn), replay=recent_frames)   # on start / assignment
    changes = engine.evaluate(batch_frames, partition=p)            # per batch
    async with conn.transaction():
        ...write the batch...
        await save_changes(conn, changes)                           # same transaction
    for change in changes: producer.send("nev.alerts", *to_message(change))

Event time, not arrival order, drives every rule: a frame whose time is not newer than the
newest frame already evaluated for its entity (a reissue 0x03, a late or duplicate delivery) is
"late". Late frames never clear an alert and never feed history-based rules (rates, drops,
durations, composites); a late frame may update an open alert, and may raise a *stateless*
alert (flag level, threshold, spread, insulation without durations) only if its time is after
the end of the last alert of that rule for that entity: reissued data of an episode already
reported cannot raise it again.

Chargers and packs are ordered by their subjects' order time in µs (alerts.subjects): two T/CEC
status pushes of one millisecond (TimeStamp + Seq µs) are two frames in Seq order, not a frame
and its duplicate; rules and alert records see both at that millisecond.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from alerts import failure
from alerts.failure import UNKNOWN, Failures, RuleFailure, failing_rule
from alerts.kinds import CLEAR, HOLD
from alerts.model import AlertChange, AlertRecord, Rule
from alerts.plan import CRule, Entity, LiveAlert, Plan, Plans, not_a_number
from alerts.rules import RuleSet
from alerts.subjects import Subject, subjects_of

__all__ = ["RuleEngine", "RuleEngineStats"]

_NAN: Final = math.nan
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)


class RuleEngineStats:
    """Counters since construction (the pipeline turns them into metrics)."""

    __slots__ = ("duplicate", "evaluated", "future", "late", "no_data")

    def __init__(self) -> None:
        self.evaluated = 0  # frames evaluated in event-time order
        self.late = 0  # older than the entity's newest frame (reissue, late delivery)
        self.duplicate = 0  # same event time as the newest frame (realtime and its reissue)
        self.future = 0  # event time too far ahead of now_ms: device clock wrong
        self.no_data = 0  # no vehicle block or no time (login, logout, heartbeat)

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__slots__}


class RuleEngine:
    """Evaluates the rules of a ``RuleSet`` for one entity kind over the decoded objects of the
    entities of that kind one worker owns: ``FrameRows`` (vehicle, the default),
    ``ChargerRows`` (charger: per connector, alerts.subjects) or ``PackFrameRows`` (battery).

    ``models`` maps an entity id (VIN) to its vehicle model for rules scoped by model (the
    registration data); ``update_every_s`` throttles ``updated`` changes of a long-open alert
    (a new peak is always reported at once); ``max_future_s`` bounds how far ahead of
    ``now_ms`` a frame time may be (a device with a wrong clock would otherwise make every
    later frame look late). ``native_rules``: judge in-order frames with the native runner where
    it can serve the rules (alerts.kinds_native); False keeps the generated Python loop (the
    reference the differential tests compare with).
    """

    def __init__(
        self,
        rules: RuleSet,
        *,
        entity_kind: str = "vehicle",
        models: Mapping[str, str] | Callable[[str], str | None] | None = None,
        update_every_s: float = 60.0,
        max_future_s: float = 300.0,
        native_rules: bool = True,
    ) -> None:
        self.entity_kind = entity_kind
        self.stats = RuleEngineStats()
        # Frames whose judging raised, per rule (the safety net: ``_failed``).
        self._failures = Failures()
        self._model: Callable[[str], str | None] = (
            models if callable(models) else (models or {}).get
        )
        self._update_ms = update_every_s * 1000.0
        # Entity watermarks are in the kind's order time: epoch ms for vehicles (FrameRows),
        # epoch µs for the subjects of chargers and packs; alert records keep ms.
        self._order_per_ms = 1 if entity_kind == "vehicle" else 1000
        self._future_ms = max_future_s * 1000.0
        self._entities: dict[str, Entity] = {}
        self._open: dict[tuple[str, str], LiveAlert] = {}
        self._touched: list[LiveAlert] = []
        self._warming = False
        # Where the frames of the current ``evaluate`` come from: what the alerts they raise
        # are stamped with (``_raise``).
        self._source: tuple[int | None, str | None] = (None, None)
        self._native = native_rules
        self._install(rules)

    def _install(self, rules: RuleSet) -> None:
        self.rules = rules.for_kind(self.entity_kind)
        self._plan = Plan.compile(rules, self.entity_kind, native=self._native)
        self._plan_cache: dict[tuple[bool, ...], Plans] = {}

    # -- evaluation ---------------------------------------------------------------------------

    def evaluate(
        self,
        frames: Iterable[Any],
        *,
        now_ms: int | None = None,
        partition: int | None = None,
        topic: str | None = None,
    ) -> list[AlertChange]:
        """Run every frame through the rules; returns the alert changes, in order.
        ``topic``/``partition``: where the frames come from: what an entity first seen here is
        placed on (what ``forget`` drops by) and what the alerts they raise are stamped with
        (the store restores an alert to the owner of that partition: docs/alerts.md)."""
        self._source = (partition, topic)
        if self.entity_kind != "vehicle":
            subjects = subjects_of(self.entity_kind, frames)
            return self._evaluate_subjects(subjects, now_ms, partition, topic)
        ents = self._entities
        extract = self._plan.extract
        stats = self.stats
        limit = math.inf if now_ms is None else now_ms + self._future_ms
        n = 0
        for fr in frames:
            t = fr.ts_ms
            if fr.vehicle is None or t is None:
                stats.no_data += 1
                continue
            if t > limit:
                stats.future += 1
                continue
            # The safety net (``_failed``): free in Python 3.11 while nothing raises.
            late = False  # whether the failure, if any, is the late path's (``_failed``)
            try:
                ent = ents.get(fr.vin)
                if ent is None:
                    ent = self._entity(fr.vin, partition, topic)
                if t <= ent.wm:
                    late = True
                    self._late(ent, fr.vin, fr.edition, fr, t, t)
                    continue
                ent.wm = t
                n += 1
                vals = extract(fr)
                # The hot loop of this entity's rules (alerts.kinds_native, alerts.fastpath).
                plans = ent.plans
                (plans.run25 if fr.edition == 2025 else plans.run16)(
                    self._apply, ent, vals, t, fr.vin
                )
            except BaseException as exc:  # a Rust panic is a BaseException: failure.caught
                if not failure.caught(exc):
                    raise
                self._failed(fr.vin, exc, late)
        stats.evaluated += n
        return self._flush()

    # The vehicle loop above, over subjects (a charger's connectors, a pack): kept apart so the
    # vehicles' hot path pays no generator per frame.
    def _evaluate_subjects(
        self,
        subjects: Iterable[Subject],
        now_ms: int | None,
        partition: int | None,
        topic: str | None,
    ) -> list[AlertChange]:
        ents = self._entities
        extract = self._plan.extract
        stats = self.stats
        limit = math.inf if now_ms is None else now_ms + self._future_ms
        n = 0
        for eid, t, edition, subject, at in subjects:
            if t is None:
                stats.no_data += 1
                continue
            if t > limit:
                stats.future += 1
                continue
            late = False
            try:  # the safety net, as in ``evaluate``
                ent = ents.get(eid)
                if ent is None:
                    ent = self._entity(eid, partition, topic)
                # Ordered by µs: a later push of the same millisecond is in order, at time t.
                if at <= ent.wm:
                    late = True
                    self._late(ent, eid, edition, subject, t, at)
                    continue
                ent.wm = at
                n += 1
                plans = ent.plans
                (plans.run25 if edition == 2025 else plans.run16)(
                    self._apply, ent, extract(subject), t, eid
                )
            except BaseException as exc:  # a Rust panic is a BaseException: failure.caught
                if not failure.caught(exc):
                    raise
                self._failed(eid, exc, late)
        stats.evaluated += n
        return self._flush()

    def _apply(
        self, ent: Entity, cr: CRule, c: int, vals: tuple[Any, ...], t: int, vin: str
    ) -> None:
        """A rule's verdict on an in-order frame, applied to its lifecycle."""
        if c == HOLD:
            self._hold(ent, cr, vin, t, cr.value(vals))
        elif c == CLEAR:
            pend = cr.pend
            if ent.active & cr.bit or (pend >= 0 and ent.slots[pend] == ent.slots[pend]):
                self._clear(ent, cr, vin, t)

    def _hold(self, ent: Entity, cr: CRule, vin: str, t: int, value: float | None) -> None:
        slots = ent.slots
        if ent.active & cr.bit:
            if cr.alert and not self._warming:
                a = self._open.get((vin, cr.id))
                if a is not None:
                    moved = a.see(t, value, in_order=True)
                    if moved or t - a.emitted_ms >= self._update_ms:
                        self._touch(a).updated_now = True
            # After the alert's step: a ``see`` that raises (a value that is no number) leaves
            # the clear countdown and "last held" as they were, as if the frame were absent.
            if cr.off >= 0:
                slots[cr.off] = _NAN
            if cr.lt >= 0:
                slots[cr.lt] = t
            return
        if cr.off >= 0:
            # An inactive rule's clear countdown is NaN already (``_clear``): on the raising
            # path below this write changes nothing, so a ``_raise`` that raises leaves the
            # step unapplied.
            slots[cr.off] = _NAN
        first = t
        pend = cr.pend
        if pend >= 0:
            p = slots[pend]
            if cr.for_n:
                p = (p if p == p else 0.0) + 1.0  # the count with this frame
                if p < cr.for_n:
                    slots[pend] = p
                    return
            else:
                if p != p:
                    slots[pend] = p = t
                first = int(p)
                if t - p < cr.for_ms:
                    return
            if cr.alert and self._warming:
                # Stays "ready": the first live frame that holds decides. "Last held" for
                # windowed composites: only once the duration is met, the rule really holds (a
                # pending for_frames/for_s must not count in a composite).
                slots[pend] = p
                if cr.lt >= 0:
                    slots[cr.lt] = t
                return
        elif cr.alert and self._warming:
            if cr.lt >= 0:
                slots[cr.lt] = t
            return
        if cr.alert:
            # Before the step's writes: a raise here leaves the pending count (or first time),
            # "last held" and the active bit as they were (the safety net's "applied whole").
            self._raise(ent, cr, vin, t, value, (first, t) if first != t else (t,), late=False)
        if pend >= 0:
            slots[pend] = _NAN
        if cr.lt >= 0:
            slots[cr.lt] = t
        ent.active |= cr.bit

    # Mirrors _hold's counting (frames or milliseconds) on the clear slot: inlined, as it runs
    # per frame and rule.
    def _clear(self, ent: Entity, cr: CRule, vin: str, t: int) -> None:
        slots = ent.slots
        if cr.pend >= 0:
            slots[cr.pend] = _NAN
        if not ent.active & cr.bit:
            if cr.off >= 0:
                slots[cr.off] = _NAN
            return
        if cr.alert and self._warming:
            return
        if cr.off >= 0:
            p = slots[cr.off]
            if cr.clear_n:
                count = (p if p == p else 0.0) + 1.0
                if count < cr.clear_n:
                    slots[cr.off] = count
                    return
            else:
                if p != p:
                    slots[cr.off] = p = t
                if t - p < cr.clear_ms:
                    return
        if cr.alert:
            key = (vin, cr.id)
            a = self._open.get(key)
            if a is not None:
                # Touched first, before the step's writes: a raise here leaves the alert open
                # and the countdown as it was (the safety net's "applied whole").
                self._touch(a)
                del self._open[key]
                # An episode opened after the millisecond of its raising frame (_raise)
                # clears no earlier than it opened: that clear is what the next raise follows.
                t = max(t, a.opened_ms)
                a.cleared_ms = t
                a.reason = "condition"
        if cr.off >= 0:
            slots[cr.off] = _NAN
        ent.active &= ~cr.bit
        if cr.cl >= 0:
            slots[cr.cl] = t

    def _late(self, ent: Entity, eid: str, edition: int, subject: Any, t: int, at: int) -> None:
        """A frame at event time ``t`` (ms) whose order time ``at`` is not after the entity's
        watermark (the same unit: ms for vehicles, µs for subjects)."""
        if at == ent.wm:
            self.stats.duplicate += 1  # the realtime frame of this instant was evaluated
            return
        self.stats.late += 1
        vals = self._plan.extract(subject)
        slots = ent.slots
        plans = ent.plans
        for _, _, _, cr in plans.steps25 if edition == 2025 else plans.steps16:
            if not cr.late_ok or cr.cond(vals, slots, t, ent.active) != HOLD:
                continue
            value = cr.value(vals)
            if ent.active & cr.bit:
                a = self._open.get((eid, cr.id))
                if a is not None and t >= a.opened_ms and not self._warming:
                    # The in-order path's throttle: a new peak reports at once, anything else
                    # waits for update_every_s; a reissue of a counted frame changes nothing.
                    fresh = t > a.last_ms
                    if a.see(t, value) or (fresh and t - a.emitted_ms >= self._update_ms):
                        self._touch(a).updated_now = True
            elif not (t <= slots[cr.cl]) and not self._warming:  # NaN: never cleared
                self._raise(ent, cr, eid, t, value, (t,), late=True)
                ent.active |= cr.bit

    def _failed(self, eid: str, exc: BaseException, late: bool) -> None:
        """The safety net (alerts.failure): judging a frame of ``eid`` raised ``exc`` (``late``:
        on the late path).

        What that frame's judging did before it raised stays: the entity's watermark is past
        it (a redelivery is a duplicate, an older copy late: it is not judged again in order),
        and the rules judged before the failing one keep their verdicts, each applied whole
        (a rule's lifecycle step raises before it changes anything: ``LiveAlert.see``
        compares before it writes, ``_raise`` checks the value and touches the alert before it
        is open, ``_hold`` / ``_clear`` write their slots and the active bit after the raise or
        clear of the alert). The failing rule and those after it skip the frame, exactly as if
        it were absent. In order, the failing rule's condition state (``base..base+nslots``),
        which its condition may have half written, starts afresh (as a changed rule's after a
        reload); its open alert stays open. Its lifecycle slots (pending, clear countdown) are
        kept: only the engine's ``_hold`` / ``_clear`` write them (both runners,
        alerts.fastpath and native/src/py_rules.rs, only read the pending slot), and no
        failure leaves them changed: one before the rule's lifecycle step left them as the
        previous frame did, and a step that raises has not written them yet, so a pending
        ``for_frames``/``for_s`` still counts the frames before and an open alert's
        ``clear_for_*`` countdown goes on where it was. Late, nothing is reset: the late path
        runs stateless rules' conditions (``CRule.late_ok``), which keep no state, and writes
        no lifecycle slot. Not knowing the rule (``failure.UNKNOWN``), no state is reset."""
        cr = failing_rule(exc)
        ent = self._entities.get(eid)
        if cr is not None and ent is not None and not late:
            slots = ent.slots
            for k in range(cr.base, cr.base + cr.nslots):
                slots[k] = _NAN
        self._failures.add(UNKNOWN if cr is None else cr.id, eid, exc)

    def take_failures(self) -> list[RuleFailure]:
        """The failures counted since the last call, per rule (``failure.UNKNOWN``: not known),
        for the pipeline's metric and log line."""
        return self._failures.take()

    def _raise(
        self,
        ent: Entity,
        cr: CRule,
        vin: str,
        t: int,
        value: float | None,
        trigger: tuple[int, ...],
        *,
        late: bool,
    ) -> None:
        # An alert is (entity, rule, opened_at in ms) (alerts.store): a raise in the
        # millisecond its rule's last alert for the entity cleared in, possible where frames
        # in order share a millisecond (plan.SHARED_MS_KINDS), would be stored as that cleared
        # episode and its open alert never stored. It opens the millisecond after that clear
        # (its trigger_times keep the frames' own). Only such kinds' rules that can raise
        # within a millisecond of a clear have the slot; a late raise is after the clear.
        opened = t
        if cr.cl >= 0:
            c = ent.slots[cr.cl]
            if t <= c:  # NaN (never cleared): False
                opened = int(c) + 1
        # Stamped with the raising frame's partition, not the entity's: a connector reporting by
        # both charger paths is placed on the one it was first seen on, and an alert stamped
        # there went after a rebalance to that path's owner, which may not be able to judge it
        # (T/CEC pushes carry no temperature): it stayed open for good.
        # A value function's defect (a value that is no number) would make an alert row that
        # cannot be stored: the batch's write would fail on every restart. A rule error instead
        # (the safety net), before anything changes.
        if value is not None and type(value) is not float and type(value) is not int:
            raise not_a_number(value)
        part, topic = self._source
        a = LiveAlert(cr, vin, opened, value, trigger, late, part, topic)
        # Touched before it is open: a raise in between leaves no alert open but unsaved.
        self._touch(a).raised_now = True
        self._open[(vin, cr.id)] = a

    def _touch(self, a: LiveAlert) -> LiveAlert:
        if not a.touched:
            a.touched = True
            self._touched.append(a)
        return a

    def _flush(self) -> list[AlertChange]:
        out: list[AlertChange] = []
        kind = self.entity_kind
        for a in self._touched:
            rec = a.record(kind)
            if a.raised_now:
                out.append(AlertChange("raised", replace(rec, cleared_ms=None, clear_reason=None)))
            elif a.updated_now and a.cleared_ms is None:
                out.append(AlertChange("updated", rec))
            if a.cleared_ms is not None:
                out.append(AlertChange("cleared", rec))
            a.emitted_ms = a.last_ms
            a.raised_now = a.updated_now = a.touched = False
        self._touched = []
        return out

    def _entity(self, entity_id: str, partition: int | None, topic: str | None = None) -> Entity:
        plan = self._plan
        if plan.scoped:
            m = self._model(entity_id)
            key = tuple(cr.rule.scope.matches(entity_id, m) for cr in plan.rules)
        else:
            key = ()
        plans = self._plan_cache.get(key)
        if plans is None:
            plans = self._plan_cache[key] = plan.plans_for(entity_id, self._model)
        ent = Entity(plans, plan.template.__copy__(), partition, topic)
        self._entities[entity_id] = ent
        return ent

    # -- rebuild, reload, ownership -----------------------------------------------------------

    def warm(
        self, frames: Iterable[Any], *, partition: int | None = None, topic: str | None = None
    ) -> None:
        """Replay frames already evaluated and stored (the short replay on partition
        assignment, alerts/replay.py) to rebuild history: rates, drops, jumps, durations,
        composite windows, named conditions, and each entity's watermark (a redelivery of a
        replayed frame is then late or a duplicate). Alerting rules neither raise, update nor
        clear meanwhile (their open alerts come from the database through ``restore``,
        called after); a duration that completed during the replay stays pending, so the
        first live frame on which the condition holds raises, with the trigger times an
        uninterrupted run would have had. Replayed frames are not counted in ``stats``."""
        live, self.stats = self.stats, RuleEngineStats()
        self._warming = True
        try:
            self.evaluate(frames, partition=partition, topic=topic)
        finally:
            self._warming = False
            self.stats = live

    def restore(self, records: Iterable[AlertRecord]) -> list[AlertChange]:
        """Adopt stored alerts (``store.load_open``): open ones become live again, recently
        cleared ones bound late raises. Returns ``cleared`` changes for open alerts whose rule
        no longer exists or no longer alerts (``rule_removed``) or no longer applies to the
        entity (``rule_out_of_scope``): save and publish them like any change."""
        for rec in records:
            cr = self._plan.by_id.get(rec.rule_id)
            if rec.cleared_ms is not None:
                # Frames up to the clear were processed before: anything older is late (and
                # a reissue of that episode cannot raise it again).
                ent = self._ent(rec)
                # A charger's or pack's watermark is in µs; the record keeps ms only: the
                # clear's millisecond starts it (a push later in that millisecond is in order).
                ent.wm = max(ent.wm, rec.cleared_ms * self._order_per_ms)
                if cr is not None and cr.cl >= 0 and not (ent.slots[cr.cl] >= rec.cleared_ms):
                    ent.slots[cr.cl] = rec.cleared_ms
                continue
            gone = "rule_removed" if cr is None else self._gone(cr, rec.entity_id)
            if cr is None or gone is not None:
                a = LiveAlert.from_record(cr or CRule(_removed(rec), 0), rec)
                a.cleared_ms, a.reason = rec.last_seen_ms, gone
                self._touch(a)
                continue
            ent = self._ent(rec)
            ent.active |= cr.bit
            ent.wm = max(ent.wm, rec.last_seen_ms * self._order_per_ms)
            self._open[(rec.entity_id, rec.rule_id)] = LiveAlert.from_record(cr, rec)
        return self._flush()

    def rebuild(
        self,
        records: Iterable[AlertRecord],
        replay: Iterable[Any] = (),
        *,
        partition: int | None = None,
    ) -> list[AlertChange]:
        """After a restart or partition assignment: ``warm(replay)`` then ``restore(records)``."""
        self.warm(replay, partition=partition)
        return self.restore(records)

    def _gone(self, cr: CRule, entity_id: str) -> str | None:
        """Why an open alert of ``cr`` on the entity is to be cleared now, or None:
        ``rule_removed`` when the rule no longer alerts; ``rule_out_of_scope`` when its scope
        was narrowed and no longer takes the entity in (the entity's rules would never
        evaluate it again, so the alert could never clear by its condition)."""
        if not cr.alert:
            return "rule_removed"
        if cr.rule.scope.is_all:
            return None
        model = self._model(entity_id) if self._plan.scoped else None
        return None if cr.rule.scope.matches(entity_id, model) else "rule_out_of_scope"

    def _ent(self, rec: AlertRecord) -> Entity:
        ent = self._entities.get(rec.entity_id)
        return ent or self._entity(rec.entity_id, rec.partition, rec.topic)

    def swap_rules(self, rules: RuleSet) -> list[AlertChange]:
        """Install a new rule set (SIGHUP). Unchanged rules (same id and version) keep their
        state; changed rules start afresh but an open alert stays open (no second raise);
        alerts of removed or no-longer-alerting rules, and of rules whose scope no longer takes
        the entity in, are cleared (returned as changes)."""
        old_plan, old_open = self._plan, self._open
        self._install(rules)
        new = self._plan
        self._open = {}
        for key, a in old_open.items():
            cr = new.by_id.get(key[1])
            gone = "rule_removed" if cr is None else self._gone(cr, key[0])
            if cr is None or gone is not None:
                a.cleared_ms, a.reason = a.last_ms, gone
                self._touch(a)
            else:
                a.cr = cr
                self._open[key] = a
        for vin, ent in list(self._entities.items()):
            fresh = self._entity(vin, ent.part, ent.topic)
            fresh.wm = ent.wm
            for cr in new.rules:
                old = old_plan.by_id.get(cr.id)
                if old is None:
                    continue
                same = old.rule.version == cr.rule.version
                if (vin, cr.id) in self._open or (same and not cr.alert and ent.active & old.bit):
                    fresh.active |= cr.bit
                if same:
                    pairs = [(old.base + k, cr.base + k) for k in range(cr.nslots)]
                    pairs += [
                        (old.pend, cr.pend),
                        (old.off, cr.off),
                        (old.lt, cr.lt),
                        (old.cl, cr.cl),
                    ]
                    for src, dst in pairs:
                        if src >= 0 and dst >= 0:
                            fresh.slots[dst] = ent.slots[src]
        return self._flush()

    def forget(
        self,
        *,
        partition: int | None = None,
        entity_ids: Iterable[str] | None = None,
        topic: str | None = None,
    ) -> int:
        """Drop the state of entities a worker no longer owns (partition revoked): those of
        ``partition`` of ``topic`` (of any topic when None; an entity of no known topic, from
        an alert stored before topics were, goes with its partition number). An entity's open
        alerts go with it, whichever partition their raising frames came from (``_raise``)."""
        if entity_ids is not None:
            gone = set(entity_ids)
        else:
            gone = {
                vin
                for vin, e in self._entities.items()
                if e.part == partition and (topic is None or e.topic is None or e.topic == topic)
            }
        for vin in gone:
            self._entities.pop(vin, None)
        for key in [k for k in self._open if k[0] in gone]:
            del self._open[key]
        return len(gone)

    def open_alerts(self) -> list[AlertRecord]:
        return [a.record(self.entity_kind) for a in self._open.values()]

    def alerting_entities(self) -> dict[str, tuple[str | None, int | None, float]]:
        """Entity -> (topic, partition, watermark) of the entities with an open alert: what
        the pipeline checks against latest_state to drop the copy of an entity whose frames
        moved to another partition (ingest/pipeline/moved.py)."""
        out: dict[str, tuple[str | None, int | None, float]] = {}
        for vin, _ in self._open:
            ent = self._entities.get(vin)
            if ent is not None:
                out[vin] = (ent.topic, ent.part, ent.wm)
        return out

    def order_of(self, ts: datetime) -> int:
        """A stored time (a row's, latest_state's ``ts``) in the unit of the entities'
        watermarks (``alerting_entities``): epoch ms for vehicles, epoch µs for chargers and
        packs (their subjects' order time, alerts.subjects). Compared in ms, a charger's or
        pack's µs watermark was a thousand times any stored time."""
        us = (ts - _EPOCH) // _US
        return us // 1000 if self._order_per_ms == 1 else us

    def unknown(self, entity_ids: Iterable[str]) -> set[str]:
        """The ids of ``entity_ids`` the engine has no state for. One set difference in C:
        the pipeline asks it for every batch's entities (ingest/pipeline/moved.py), where a
        Python-level ``in`` per frame cost the hot path."""
        return set(entity_ids).difference(self._entities)

    def topics_of(self, entity_ids: Iterable[str]) -> dict[str, str | None]:
        """The topic each of ``entity_ids`` the engine has state for is placed on (its first
        frame's, or its restored alert's; None: an alert stored before topics were)."""
        out: dict[str, str | None] = {}
        for eid in entity_ids:
            ent = self._entities.get(eid)
            if ent is not None:
                out[eid] = ent.topic
        return out

    def __contains__(self, entity_id: object) -> bool:
        """Whether the engine has state for ``entity_id`` (evaluated, warmed or restored)."""
        return entity_id in self._entities

    @property
    def state_slots(self) -> int:
        """Doubles of rule state each entity keeps with the current rule set."""
        return len(self._plan.template)

    def __len__(self) -> int:
        return len(self._entities)


def _removed(rec: AlertRecord) -> Rule:
    """A stand-in rule for an alert whose rule is gone, so its record can still be built."""
    return Rule(rec.rule_id, "composite", rec.severity, rec.title, "", {}, version=rec.rule_version)
