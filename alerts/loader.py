"""Rule files (TOML): parse, resolve ``$params``, validate, and report problems by line and key.

Layout (see docs/alerts.md and alerts/default_rules.toml)::

    [params]                      # named values rules refer to as "$name"
    max_operating_temp_c = 60

    [[rule]]
    id = "max_temp_high"
    entity = "vehicle"            # vehicle (default)|charger|battery: whose fields it reads
    kind = "threshold"            # threshold|rate|spread|drop|jump|flag|insulation|composite|
                                  # ratio|flip
    severity = "major"            # info|warning|major|critical
    field = "max_temp_c"
    op = ">="
    value = "$max_operating_temp_c"

Every problem is collected (not just the first) as a ``RuleProblem`` naming the line, the rule
and the key, so ``nev-ingest rules check`` can show them all at once.

This module builds the rules; ``problems`` holds the problem types, ``rule_values`` the checks of
single values, ``rule_graph`` the checks across rules (composite references, evaluation order).
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Callable
from typing import Any, Final

import orjson

from alerts.failure import UNKNOWN
from alerts.fields import field_error
from alerts.kinds import OPS, kind_fields
from alerts.model import KINDS, SEVERITIES, Guard, Rule, Scope
from alerts.problems import RuleFileError, RuleProblem
from alerts.rule_graph import check_references, evaluation_order
from alerts.rule_values import (
    as_list,
    bits,
    edition_list,
    id_list,
    is_bool,
    is_id,
    is_number_check,
    is_str,
    level,
    non_negative,
    one_of,
    positive,
    str_list,
)
from contract.kinds import ENTITY_KINDS

__all__ = ["parse_rules"]

# The most event time a rule set may look back on (RuleSet.window_s): 30 days.
MAX_LOOKBACK_S: Final = 30 * 86_400
_KEY_LINE = re.compile(r"""^\s*("?)([A-Za-z0-9_\-]+)\1\s*=""")
_SPREAD_FIELDS = {
    ("cell_voltage", "pack"): "pack_cell_spread_mv",
    ("cell_voltage", "vehicle"): "vehicle_cell_spread_mv",
    ("probe_temp", "pack"): "pack_probe_spread_c",
    ("probe_temp", "vehicle"): "vehicle_probe_spread_c",
}


class _Lines:
    """Where each ``[[rule]]`` block and each key starts: tomllib keeps no positions."""

    def __init__(self, text: str) -> None:
        self.rules: list[tuple[int, dict[str, int]]] = []
        self.top: dict[str, int] = {}
        current: dict[str, int] = self.top
        for n, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if line.startswith("[[") and line.strip("[] \t").split("#")[0].strip() == "rule":
                current = {}
                self.rules.append((n, current))
            elif line.startswith("[") and not line.startswith("[["):
                name = line.strip("[] \t").split("#")[0].strip()
                current = {} if name != "params" else self.top
                if name.startswith("rule.") and self.rules:
                    current = self.rules[-1][1]
            else:
                m = _KEY_LINE.match(raw)
                if m:
                    current.setdefault(m.group(2), n)

    def rule_line(self, i: int, key: str | None = None) -> int | None:
        if i >= len(self.rules):
            return None
        start, keys = self.rules[i]
        return keys.get(key, start) if key else start


def parse_rules(
    text: str, source: str = "<rules>"
) -> tuple[list[Rule], dict[str, Any], list[RuleProblem]]:
    """Parse and validate; returns (enabled rules in evaluation order, params, problems).

    Raises ``RuleFileError`` when any problem is an error. Evaluation order puts every rule
    after the rules its composite conditions refer to.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        problem = RuleProblem(int(m.group(1)) if m else None, None, None, f"not valid TOML: {exc}")
        raise RuleFileError(source, [problem]) from exc
    lines = _Lines(text)
    problems: list[RuleProblem] = [
        RuleProblem(lines.top.get(key), None, key, "unknown top-level key; use [params], [[rule]]")
        for key in doc
        if key not in ("params", "rule", "version")
    ]
    params = doc.get("params", {})
    if not isinstance(params, dict):
        problems.append(RuleProblem(lines.top.get("params"), None, "params", "must be a table"))
        params = {}
    raw_rules = doc.get("rule", [])
    if not isinstance(raw_rules, list) or not all(isinstance(r, dict) for r in raw_rules):
        problems.append(RuleProblem(None, None, "rule", "rules are [[rule]] tables"))
        raw_rules = []
    rules: list[Rule] = []
    for i, raw in enumerate(raw_rules):
        checker = _RuleChecker(i, raw, params, lines, problems)
        rule = checker.build()
        if rule is not None and checker.enabled:
            rules.append(rule)
    check_references(rules, problems)
    _check_lookback(rules, problems)
    errors = [p for p in problems if not p.warning]
    if errors:
        raise RuleFileError(source, problems)
    return evaluation_order(rules), params, problems


def _check_lookback(rules: list[Rule], problems: list[RuleProblem]) -> None:
    """The history a partition's restore replays (``RuleSet.window_s``) within
    ``MAX_LOOKBACK_S``: the replay reads that much of every entity's stored frames on each
    assignment, and a span past what a timestamp can hold fails it (``now() - interval``)."""
    gap = max((_seconds(r.params.get("max_gap_s")) for r in rules), default=0.0)
    for r in rules:
        span = max(
            _seconds(r.params.get("window_s")),
            _seconds(r.params.get("sustain_s")),
            r.for_s,
            r.for_frames * gap,
        )
        if span + gap > MAX_LOOKBACK_S:
            problems.append(
                RuleProblem(
                    None,
                    r.id,
                    None,
                    f"looks back {span + gap:,.0f} s (its window, duration or for_frames at the "
                    f"longest max_gap_s, plus that gap): at most {MAX_LOOKBACK_S:,} s, the history "
                    "a partition's restore replays",
                )
            )


def _seconds(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


class _RuleChecker:
    def __init__(
        self,
        i: int,
        raw: dict[str, Any],
        params: dict[str, Any],
        lines: _Lines,
        out: list[RuleProblem],
    ) -> None:
        self.i, self.raw, self.params, self.lines, self.out = i, raw, params, lines, out
        rid = raw.get("id")
        self.rid = rid if is_id(rid) is None else f"#{i + 1}"
        self.used: set[str] = set()
        self.enabled = True
        self.ok = True
        self.entity = "vehicle"

    def problem(self, key: str | None, message: str, *, warning: bool = False) -> None:
        self.out.append(
            RuleProblem(self.lines.rule_line(self.i, key), self.rid, key, message, warning)
        )
        if not warning:
            self.ok = False

    def get(
        self,
        key: str,
        check: Callable[[Any], str | None] | None = None,
        default: Any = None,
        *,
        required: bool = False,
    ) -> Any:
        self.used.add(key)
        if key not in self.raw:
            if required:
                self.problem(None, f"missing required key {key!r}")
            return default
        value = self.raw[key]
        if isinstance(value, str) and value.startswith("$"):
            name = value[1:]
            if name not in self.params:
                self.problem(key, f"refers to ${name}, which [params] does not define")
                return default
            value = self.params[name]
        if check is not None:
            why = check(value)
            if why:
                self.problem(key, why)
                return default
        return value

    def build(self) -> Rule | None:
        raw = self.raw
        rid = self.get("id", is_id, required=True)
        if rid == UNKNOWN:
            # nev_ingest_rule_errors_total{rule="unknown"} and the log line name failures no
            # rule can be told for (alerts.failure): a rule of that name would be mixed in.
            self.problem(
                "id", f"{UNKNOWN!r} is reserved for rule errors of no known rule: rename it"
            )
        kind = self.get("kind", one_of(KINDS), required=True)
        # Read before the fields: they are checked against this kind's field table.
        self.entity = self.get("entity", one_of(ENTITY_KINDS), "vehicle")
        self.enabled = bool(self.get("enabled", is_bool, True))
        alert = bool(self.get("alert", is_bool, True))
        severity = self.get("severity", one_of(SEVERITIES), None, required=alert)
        title = self.get("title", is_str, rid or "")
        source = self.get("source", is_str, "")
        self.get("description", is_str)
        prefixes = self.get("vin_prefix", str_list, [])
        models = self.get("model", str_list, [])
        editions = self.get("editions", edition_list, [2016, 2025])
        if self.entity == "charger" and editions is not None and 2016 not in editions:
            # Chargers always count as 2016 (alerts.subjects): such a rule could never run.
            self.problem("editions", "chargers count as the 2016 edition: include 2016")
        guards = self._guards()
        timing = {
            k: self.get(k, non_negative, 0)
            for k in ("for_s", "for_frames", "clear_for_s", "clear_for_frames")
        }
        for a, b in (("for_s", "for_frames"), ("clear_for_s", "clear_for_frames")):
            if timing[a] and timing[b]:
                self.problem(b, f"give {a} or {b}, not both")
        for k in ("for_frames", "clear_for_frames"):
            if timing[k] and int(timing[k]) != timing[k]:
                self.problem(k, "must be a whole number of frames")
        params = self._kind_params(kind) if kind else {}
        for key in raw:
            if key not in self.used:
                self.problem(key, f"unknown key for a {kind or 'rule'} rule")
        if not self.ok or not rid or not kind:
            return None
        rule = Rule(
            id=rid,
            kind=kind,
            severity=severity or "info",
            title=title,
            source=source,
            params=params,
            alert=alert,
            scope=Scope(tuple(as_list(prefixes)), tuple(as_list(models))),
            editions=tuple(editions),
            guards=guards,
            for_s=float(timing["for_s"]),
            for_frames=int(timing["for_frames"]),
            clear_for_s=float(timing["clear_for_s"]),
            clear_for_frames=int(timing["clear_for_frames"]),
            line=self.lines.rule_line(self.i),
            entity=self.entity,
        )
        # What the kind itself reads (a flag rule: general_flags, max_alarm_level; insulation:
        # insulation_kohm, total_voltage_v) must exist for the entity kind too.
        for name in kind_fields(rule):
            why = field_error(name, self.entity)
            if why:
                self.problem("entity", f"a {kind} rule reads {name!r}: {why}")
                return None
        return _with_version(rule)

    def _guards(self) -> tuple[Guard, ...]:
        raw = self.get("when", None, [])
        items = raw if isinstance(raw, list) else [raw]
        out = []
        for g in items:
            if (
                not isinstance(g, dict)
                or set(g) - {"field", "op", "value"}
                or not {"field", "value"} <= set(g)
            ):
                self.problem("when", "each guard is { field = NAME, op = OP, value = NUMBER }")
                continue
            op = g.get("op", "==")
            # Types first: ``op in OPS`` on a TOML array or table raises (unhashable).
            if not isinstance(g["field"], str):
                self.problem("when", f"a guard's field must be a string, got {g['field']!r}")
                continue
            if not isinstance(op, str) or op not in OPS:
                self.problem("when", f"a guard's op must be one of {', '.join(OPS)}; got {op!r}")
                continue
            why = is_number_check(g["value"])
            if why:
                self.problem("when", f"a guard's value {why}")
                continue
            why = field_error(g["field"], self.entity)
            if why:
                self.problem("when", why)
                continue
            out.append(Guard(g["field"], op, float(g["value"])))
        return tuple(out)

    def _field(self, key: str = "field") -> str | None:
        name = self.get(key, is_str, required=True)
        if name is not None:
            why = field_error(name, self.entity)
            if why:
                self.problem(key, why)
                return None
        return name  # type: ignore[no-any-return]

    def _kind_params(self, kind: str) -> dict[str, Any]:
        p: dict[str, Any] = {}
        num, pos, nonneg = is_number_check, positive, non_negative
        if kind == "threshold":
            p["field"] = self._field()
            p["op"] = self.get("op", one_of(tuple(OPS)), ">=")
            p["value"] = self.get("value", num, required=True)
            p["hysteresis"] = self.get("hysteresis", nonneg, 0.0)
            if p["hysteresis"] and p["op"] in ("==", "!="):
                # == / != clear as soon as the value differs: a band would be silently ignored
                self.problem("hysteresis", f"has no meaning with op {p['op']!r} (use < or >)")
        elif kind == "spread":
            array = self.get("array", one_of(("cell_voltage", "probe_temp")), required=True)
            across = self.get("across", one_of(("pack", "vehicle")), "pack")
            p["field"] = _SPREAD_FIELDS.get((array, across))
            if p["field"] and field_error(p["field"], self.entity):
                self.problem("across", f"a {self.entity} has no {across}-wide {array} spread")
            p["value"] = self.get("value", pos, required=True)
            p["hysteresis"] = self.get("hysteresis", nonneg, 0.0)
        elif kind == "rate":
            p["field"] = self._field()
            p["direction"] = self.get("direction", one_of(("rise", "fall")), "rise")
            p["rate_per_s"] = self.get("rate_per_s", pos, required=True)
            p["sustain_s"] = self.get("sustain_s", nonneg, 0.0)
            p["max_gap_s"] = self.get("max_gap_s", pos, 60.0)
        elif kind in ("drop", "jump"):
            p["field"] = self._field()
            p["pct"] = self.get("pct", pos)
            p["delta"] = self.get("delta", pos)
            if (p["pct"] is None) == (p["delta"] is None):
                self.problem(None, "give exactly one of pct (relative, %) or delta (absolute)")
            p["window_s"] = self.get("window_s", nonneg, 0.0)
            p["max_gap_s"] = self.get("max_gap_s", pos, 60.0)
            if kind == "jump":
                p["direction"] = self.get("direction", one_of(("either", "up", "down")), "either")
                if p["direction"] == "either" and p["window_s"]:
                    self.problem(
                        "window_s",
                        "a window needs direction up or down (either compares consecutive frames)",
                    )
        elif kind == "flag":
            p["bits"] = self.get("bits", bits, [])
            p["min_level"] = self.get("min_level", level, None)
            p["edge"] = self.get("edge", one_of(("level", "on", "off")), "level")
            if not p["bits"] and p["min_level"] is None:
                self.problem(None, "a flag rule needs bits, min_level or both")
            if p["edge"] != "level" and (p["min_level"] is not None or not p["bits"]):
                self.problem("edge", "edges apply to bits only (no min_level)")
        elif kind == "insulation":
            p["circuit"] = self.get("circuit", one_of(("dc", "ac")), "dc")
            p["min_ohm_per_v"] = self.get("min_ohm_per_v", pos)
            p["min_voltage_v"] = self.get("min_voltage_v", nonneg, 60.0)
            p["hysteresis_ohm_per_v"] = self.get("hysteresis_ohm_per_v", nonneg, 0.0)
        elif kind == "composite":
            for op in ("all", "any"):
                if op in self.raw:
                    p[op] = self.get(op, id_list)
            if ("all" in p) == ("any" in p):
                self.problem(None, "a composite needs exactly one of all = [...] or any = [...]")
            p["window_s"] = self.get("window_s", nonneg, 0.0)
        elif kind == "ratio":
            p["field"] = self._field()
            p["per"] = self._field("per")
            p["scale"] = self.get("scale", num, 1.0)
            p["op"] = self.get("op", one_of((">=", ">", "<=", "<")), ">=")
            p["value"] = self.get("value", num, required=True)
            p["min_per"] = self.get("min_per", pos, required=True)
            p["max_gap_s"] = self.get("max_gap_s", pos, 60.0)
        elif kind == "flip":
            p["field"] = self._field()
            p["window_s"] = self.get("window_s", pos, required=True)
        return {k: v for k, v in p.items() if v is not None}


def _with_version(rule: Rule) -> Rule:
    from dataclasses import asdict, replace

    body = {k: v for k, v in asdict(rule).items() if k not in ("line", "version")}
    if rule.entity == "vehicle":
        del body["entity"]  # the versions of the rules written before kinds existed stay
    digest = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]
    return replace(rule, version=digest)
