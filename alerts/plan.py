"""A rule set compiled for the engine: per-rule slots in one state array per entity.

Memory is what decides the layout: a pipeline worker may own hundreds of thousands of devices,
so one device's state is one ``_Entity`` (5 slots) plus one ``array('d')`` holding every
rule's history and counters as doubles (NaN = unknown), plus an int bit mask of the rules
that are active. A rule only gets the slots it needs: a plain threshold without durations has
none at all, and most frames touch no state but the watermark.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, NamedTuple

from alerts.fastpath import Runner
from alerts.fields import Extractor, compile_extractor
from alerts.kinds import FLAGS_2016_MASK, Condition, ValueFn, compile_condition, kind_fields
from alerts.kinds_native import runner_for
from alerts.model import AlertRecord, Rule
from alerts.rules import RuleSet

__all__ = ["CRule", "Entity", "LiveAlert", "Plan", "Plans", "Step", "not_a_number"]

# Per rule: (condition, bit, pending slot, rule), for the late path and rule reloads.
Step = tuple[Condition, int, int, "CRule"]
# Kinds whose frames in order can share a millisecond: a charger's T/CEC status pushes of one
# second are TimeStamp + Seq µs (alerts.subjects). Packs are ordered in µs too, but their frame
# times are whole milliseconds; vehicles are ordered in ms.
SHARED_MS_KINDS: Final = frozenset({"charger"})


class Plans(NamedTuple):
    """The rules that apply to one kind of entity (scope), per protocol edition."""

    steps16: tuple[Step, ...]
    steps25: tuple[Step, ...]
    run16: Runner  # the hot loop: native (alerts.kinds_native) or generated (alerts.fastpath)
    run25: Runner


class CRule:
    """One compiled rule. Slot indexes are -1 when the rule does not need that slot."""

    __slots__ = (
        "alert",
        "base",
        "bit",
        "cl",
        "clear_ms",
        "clear_n",
        "cond",
        "for_ms",
        "for_n",
        "id",
        "late_ok",
        "lt",
        "nslots",
        "off",
        "peak_max",
        "pend",
        "rule",
        "scratch",
        "value",
    )

    def __init__(self, rule: Rule, bit: int) -> None:
        self.rule = rule
        self.id = rule.id
        self.bit = bit
        self.alert = rule.alert
        self.late_ok = rule.alert and rule.is_stateless
        self.for_ms = rule.for_s * 1000.0
        self.for_n = rule.for_frames if rule.for_frames > 1 else 0
        self.clear_ms = rule.clear_for_s * 1000.0
        self.clear_n = rule.clear_for_frames if rule.clear_for_frames > 1 else 0
        self.base = self.nslots = 0
        self.pend = self.off = self.lt = self.cl = -1
        self.peak_max = True
        self.cond: Condition = _never
        self.value: ValueFn = _no_value
        self.scratch: list[float] = []


def _never(vals: object, slots: object, t: float, active: int) -> int:  # pragma: no cover
    return -1


def _no_value(vals: object) -> float | None:  # pragma: no cover
    return None


class Entity:
    """One device's state: its rules (per edition), state array, watermark, active mask."""

    __slots__ = ("active", "part", "plans", "slots", "topic", "wm")

    def __init__(
        self,
        plans: Plans,
        slots: array[float],
        part: int | None,
        topic: str | None = None,
    ) -> None:
        self.plans = plans  # (rules for 2016 frames, rules for 2025 frames): shared tuples
        self.slots = slots
        # newest order time evaluated in order: epoch ms (vehicles), µs (chargers, packs)
        self.wm = -math.inf
        self.active = 0  # bit i set = rule i fired and has not cleared
        self.part = part  # (topic, part): the Kafka partition its frames come from
        self.topic = topic


def not_a_number(value: object) -> TypeError:
    """The error of an alert value that is no number (a value function's defect): an alert row
    keeps its peak and last value as numbers (``alerts.peak_value``, ``last_value``), and a
    string there failed the batch's write (asyncpg: "must be real number, not str"), on every
    restart. The engine raises it before the alert changes: the safety net counts it against
    the rule (alerts.failure)."""
    return TypeError(f"the rule's value {value!r} is of type {type(value).__name__}, not a number")


class LiveAlert:
    """An open alert (or one that changed in the current batch) inside the engine."""

    __slots__ = (
        "cleared_ms",
        "count",
        "cr",
        "emitted_ms",
        "entity_id",
        "last_ms",
        "last_value",
        "late",
        "opened_ms",
        "part",
        "peak",
        "raised_now",
        "reason",
        "topic",
        "touched",
        "trigger",
        "updated_now",
    )

    def __init__(
        self,
        cr: CRule,
        entity_id: str,
        t: int,
        value: float | None,
        trigger: tuple[int, ...],
        late: bool,
        part: int | None,
        topic: str | None = None,
    ) -> None:
        self.cr = cr
        self.entity_id = entity_id
        self.opened_ms = self.last_ms = self.emitted_ms = t
        self.peak = self.last_value = value
        self.count = 1
        self.trigger = trigger
        self.late = late
        self.part = part
        self.topic = topic
        self.cleared_ms: int | None = None
        self.reason: str | None = None
        self.raised_now = self.updated_now = self.touched = False

    def see(self, t: int, value: float | None, *, in_order: bool = False) -> bool:
        """Account a holding frame; True when the peak moved (worth publishing). Only a frame
        after the last one counted adds to the count: a late one (0x03) may resend a frame seen
        already or backfill one never seen, which the engine cannot tell apart (docs/alerts.md).
        A frame ``in_order`` always counts: a T/CEC status push may share its millisecond
        ``t`` with the last one counted and still be after it (alerts.subjects)."""
        # Checked before anything changes: a value that is no number raises with the alert as
        # it was (the engine's safety net then skips the frame, alerts.failure). On every
        # frame, not only while there is no peak: a Decimal, bool or numpy number compares
        # with a float peak, and stored as peak or last value it broke alerts.publish.
        if value is not None and type(value) is not float and type(value) is not int:
            raise not_a_number(value)
        if self.peak is None:
            moved = value is not None
        else:
            moved = value is not None and (
                value > self.peak if self.cr.peak_max else value < self.peak
            )
        if in_order or t > self.last_ms:
            self.count += 1
            self.last_ms = t
            self.last_value = value
        if moved:
            self.peak = value
        return moved

    def record(self, entity_kind: str) -> AlertRecord:
        r = self.cr.rule
        # An episode opened after its raising frame's millisecond (RuleEngine._raise) is not
        # seen or cleared before it opened: frames of that millisecond are recorded at opened.
        opened = self.opened_ms
        cleared = self.cleared_ms
        return AlertRecord(
            entity_kind=entity_kind,
            entity_id=self.entity_id,
            rule_id=r.id,
            rule_version=r.version,
            severity=r.severity,
            title=r.title,
            opened_ms=opened,
            last_seen_ms=max(self.last_ms, opened),
            cleared_ms=None if cleared is None else max(cleared, opened),
            peak=self.peak,
            last_value=self.last_value,
            frame_count=self.count,
            trigger_ms=self.trigger,
            late=self.late,
            partition=self.part,
            clear_reason=self.reason,
            topic=self.topic,
            peak_is_max=self.cr.peak_max,
        )

    @classmethod
    def from_record(cls, cr: CRule, rec: AlertRecord) -> LiveAlert:
        a = cls(
            cr,
            rec.entity_id,
            rec.opened_ms,
            rec.last_value,
            rec.trigger_ms,
            rec.late,
            rec.partition,
            rec.topic,
        )
        a.last_ms = a.emitted_ms = rec.last_seen_ms
        a.peak = rec.peak
        a.count = rec.frame_count
        return a


@dataclass(frozen=True, slots=True)
class Plan:
    rules: tuple[CRule, ...]
    by_id: Mapping[str, CRule]
    extract: Extractor
    template: array[float]
    scoped: bool  # some rule has a scope: plans differ per entity
    position: Mapping[str, int]  # field name -> index in the extracted tuple
    flags_2016_mask: int  # the flag bits a 2016-edition frame of the entity kind defines
    # The native runner where it can serve (alerts.kinds_native); False: the generated Python
    # loop always (the differential tests' reference).
    native: bool = True

    @classmethod
    def compile(
        cls, ruleset: RuleSet, entity_kind: str = "vehicle", *, native: bool = True
    ) -> Plan:
        """Compile the rules of ``ruleset`` that are for ``entity_kind``; ``native``: see
        ``Plan.native``."""
        rules = ruleset.for_kind(entity_kind).rules
        # Vehicles: bits 19-31 are reserved in 2016 (alerts.kinds). The pack profile defines
        # its bits 19-23 in both envelopes (docs/protocols/battery.md); chargers have none.
        mask16 = FLAGS_2016_MASK if entity_kind == "vehicle" else 0xFFFFFFFF
        shares_ms = entity_kind in SHARED_MS_KINDS
        names: list[str] = []
        for r in rules:
            for name in kind_fields(r):
                if name not in names:
                    names.append(name)
        position = {n: i for i, n in enumerate(names)}
        # Sub-rules that a windowed composite remembers need a "last held at" slot.
        remembered = {
            s
            for r in rules
            if r.kind == "composite" and r.params.get("window_s", 0)
            for s in r.params.get("all", r.params.get("any", []))
        }
        compiled: dict[str, CRule] = {}
        n = 0
        for i, r in enumerate(rules):
            cr = CRule(r, 1 << i)
            subs = (
                [
                    (compiled[s].bit, compiled[s].lt)
                    for s in r.params.get("all", r.params.get("any", []))
                ]
                if r.kind == "composite"
                else []
            )
            c = compile_condition(r, position.__getitem__, n, subs, mask16)
            cr.cond, cr.value, cr.peak_max, cr.scratch = c.cond, c.value, c.peak_is_max, c.scratch
            cr.base, cr.nslots = n, c.nslots
            n += c.nslots
            if cr.for_ms or cr.for_n:
                cr.pend, n = n, n + 1
            if cr.clear_ms or cr.clear_n:
                cr.off, n = n, n + 1
            if r.id in remembered:
                cr.lt, n = n, n + 1
            # The last clear's time (ms): late raises of stateless rules go after it, and so
            # does the opened_at of a raise in its millisecond (RuleEngine._raise): where
            # frames in order share a millisecond, any alerting rule can clear and raise again
            # within one, unless a for_s duration keeps the raise at least 1 ms after the clear.
            if cr.late_ok or (cr.alert and shares_ms and not cr.for_ms):
                cr.cl, n = n, n + 1
            compiled[r.id] = cr
        return cls(
            rules=tuple(compiled.values()),
            by_id=compiled,
            extract=compile_extractor(names, entity_kind) if names else _empty_extract,
            template=array("d", [math.nan] * n),
            scoped=any(not r.scope.is_all for r in rules),
            position=position,
            flags_2016_mask=mask16,
            native=native,
        )

    def plans_for(self, entity_id: str, model: Callable[[str], str | None]) -> Plans:
        m = model(entity_id) if self.scoped else None
        mine = [cr for cr in self.rules if cr.rule.scope.matches(entity_id, m)]
        r16 = [cr for cr in mine if 2016 in cr.rule.editions]
        r25 = [cr for cr in mine if 2025 in cr.rule.editions]
        return Plans(
            tuple((cr.cond, cr.bit, cr.pend, cr) for cr in r16),
            tuple((cr.cond, cr.bit, cr.pend, cr) for cr in r25),
            self._runner(r16),
            self._runner(r25),
        )

    def _runner(self, rules: list[CRule]) -> Runner:
        return runner_for(
            rules,
            self.position.__getitem__,
            dict(self.by_id),
            self.flags_2016_mask,
            native=self.native,
            nslots=len(self.template),
            nfields=len(self.position),
            plan_rules=len(self.rules),
        )


def _empty_extract(fr: object) -> tuple[()]:
    return ()
