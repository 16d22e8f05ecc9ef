"""Rule files (TOML): parse, resolve ``$params``, validate, and report problems by line and key.

Layout (see docs/alerts.md and alerts/default_rules.toml)::

    [params]                      # named values rules refer to as "$name"
    max_operating_temp_c = 60

    [[rule]]
    id = "max_temp_high"
    kind = "threshold"            # threshold|rate|spread|drop|jump|flag|insulation|composite
    severity = "major"            # info|warning|major|critical
    field = "max_temp_c"
    op = ">="
    value = "$max_operating_temp_c"

Every problem is collected (not just the first) as a ``RuleProblem`` naming the line, the rule
and the key, so ``nev-ingest rules check`` can show them all at once.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from alerts.fields import field_error
from alerts.kinds import OPS
from alerts.model import KINDS, SEVERITIES, Guard, Rule, Scope

__all__ = ["RuleFileError", "RuleProblem", "parse_rules"]

_ID = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_KEY_LINE = re.compile(r"""^\s*("?)([A-Za-z0-9_\-]+)\1\s*=""")
_SPREAD_FIELDS = {
    ("cell_voltage", "pack"): "pack_cell_spread_mv",
    ("cell_voltage", "vehicle"): "vehicle_cell_spread_mv",
    ("probe_temp", "pack"): "pack_probe_spread_c",
    ("probe_temp", "vehicle"): "vehicle_probe_spread_c",
}


@dataclass(frozen=True, slots=True)
class RuleProblem:
    line: int | None
    rule: str | None  # rule id (or "#N" when the rule has no valid id yet)
    key: str | None
    message: str
    warning: bool = False

    def format(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line else source
        what = " ".join(
            x
            for x in (
                f"rule {self.rule}" if self.rule else "",
                f"key {self.key!r}" if self.key else "",
            )
            if x
        )
        level = "warning" if self.warning else "error"
        return f"{where}: {level}: {what + ': ' if what else ''}{self.message}"


class RuleFileError(ValueError):
    """A rule file with at least one error; ``problems`` lists them all (warnings too)."""

    def __init__(self, source: str, problems: list[RuleProblem]) -> None:
        self.source = source
        self.problems = problems
        errors = [p for p in problems if not p.warning]
        super().__init__(
            f"{len(errors)} error(s) in rule file {source}; first: {errors[0].format(source)}"
            if errors
            else f"rule file {source} has problems"
        )


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
    _check_references(rules, problems)
    errors = [p for p in problems if not p.warning]
    if errors:
        raise RuleFileError(source, problems)
    return _ordered(rules), params, problems


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
        self.rid = rid if isinstance(rid, str) and _ID.match(rid) else f"#{i + 1}"
        self.used: set[str] = set()
        self.enabled = True
        self.ok = True

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
        rid = self.get("id", _is_id, required=True)
        kind = self.get("kind", _one_of(KINDS), required=True)
        self.enabled = bool(self.get("enabled", _is_bool, True))
        alert = bool(self.get("alert", _is_bool, True))
        severity = self.get("severity", _one_of(SEVERITIES), None, required=alert)
        title = self.get("title", _is_str, rid or "")
        source = self.get("source", _is_str, "")
        self.get("description", _is_str)
        prefixes = self.get("vin_prefix", _str_list, [])
        models = self.get("model", _str_list, [])
        editions = self.get("editions", _editions, [2016, 2025])
        guards = self._guards()
        timing = {
            k: self.get(k, _non_negative, 0)
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
            scope=Scope(tuple(_as_list(prefixes)), tuple(_as_list(models))),
            editions=tuple(editions),
            guards=guards,
            for_s=float(timing["for_s"]),
            for_frames=int(timing["for_frames"]),
            clear_for_s=float(timing["clear_for_s"]),
            clear_for_frames=int(timing["clear_for_frames"]),
            line=self.lines.rule_line(self.i),
        )
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
            if op not in OPS or not _is_number(g["value"]) or not isinstance(g["field"], str):
                self.problem("when", f"guard needs op in {sorted(OPS)} and a numeric value")
                continue
            why = field_error(g["field"])
            if why:
                self.problem("when", why)
                continue
            out.append(Guard(g["field"], op, float(g["value"])))
        return tuple(out)

    def _field(self) -> str | None:
        name = self.get("field", _is_str, required=True)
        if name is not None:
            why = field_error(name)
            if why:
                self.problem("field", why)
                return None
        return name  # type: ignore[no-any-return]

    def _kind_params(self, kind: str) -> dict[str, Any]:
        p: dict[str, Any] = {}
        num, pos, nonneg = _is_number_check, _positive, _non_negative
        if kind == "threshold":
            p["field"] = self._field()
            p["op"] = self.get("op", _one_of(tuple(OPS)), ">=")
            p["value"] = self.get("value", num, required=True)
            p["hysteresis"] = self.get("hysteresis", nonneg, 0.0)
        elif kind == "spread":
            array = self.get("array", _one_of(("cell_voltage", "probe_temp")), required=True)
            across = self.get("across", _one_of(("pack", "vehicle")), "pack")
            p["field"] = _SPREAD_FIELDS.get((array, across))
            p["value"] = self.get("value", pos, required=True)
            p["hysteresis"] = self.get("hysteresis", nonneg, 0.0)
        elif kind == "rate":
            p["field"] = self._field()
            p["direction"] = self.get("direction", _one_of(("rise", "fall")), "rise")
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
                p["direction"] = self.get("direction", _one_of(("either", "up", "down")), "either")
                if p["direction"] == "either" and p["window_s"]:
                    self.problem(
                        "window_s",
                        "a window needs direction up or down (either compares consecutive frames)",
                    )
        elif kind == "flag":
            p["bits"] = self.get("bits", _bits, [])
            p["min_level"] = self.get("min_level", _level, None)
            p["edge"] = self.get("edge", _one_of(("level", "on", "off")), "level")
            if not p["bits"] and p["min_level"] is None:
                self.problem(None, "a flag rule needs bits, min_level or both")
            if p["edge"] != "level" and (p["min_level"] is not None or not p["bits"]):
                self.problem("edge", "edges apply to bits only (no min_level)")
        elif kind == "insulation":
            p["circuit"] = self.get("circuit", _one_of(("dc", "ac")), "dc")
            p["min_ohm_per_v"] = self.get("min_ohm_per_v", pos)
            p["min_voltage_v"] = self.get("min_voltage_v", nonneg, 60.0)
            p["hysteresis_ohm_per_v"] = self.get("hysteresis_ohm_per_v", nonneg, 0.0)
        elif kind == "composite":
            for op in ("all", "any"):
                if op in self.raw:
                    p[op] = self.get(op, _id_list)
            if ("all" in p) == ("any" in p):
                self.problem(None, "a composite needs exactly one of all = [...] or any = [...]")
            p["window_s"] = self.get("window_s", nonneg, 0.0)
        return {k: v for k, v in p.items() if v is not None}


def _check_references(rules: list[Rule], out: list[RuleProblem]) -> None:
    by_id: dict[str, Rule] = {}
    for r in rules:
        if r.id in by_id:
            out.append(
                RuleProblem(r.line, r.id, "id", f"duplicate id (first at line {by_id[r.id].line})")
            )
        by_id.setdefault(r.id, r)
    referenced: set[str] = set()
    for r in rules:
        for sub in _subs(r):
            referenced.add(sub)
            if sub == r.id:
                out.append(
                    RuleProblem(
                        r.line, r.id, "all" if "all" in r.params else "any", "refers to itself"
                    )
                )
            elif sub not in by_id:
                out.append(
                    RuleProblem(
                        r.line,
                        r.id,
                        "all" if "all" in r.params else "any",
                        f"refers to unknown or disabled rule {sub!r}",
                    )
                )
    for r in rules:
        if _cycle(r.id, by_id, ()):
            out.append(RuleProblem(r.line, r.id, None, "composite conditions form a cycle"))
        if not r.alert and r.id not in referenced:
            out.append(
                RuleProblem(
                    r.line,
                    r.id,
                    "alert",
                    "alert = false and no composite uses it: it does nothing",
                    warning=True,
                )
            )


def _subs(rule: Rule) -> list[str]:
    return (
        list(rule.params.get("all", rule.params.get("any", []))) if rule.kind == "composite" else []
    )


def _cycle(rid: str, by_id: dict[str, Rule], path: tuple[str, ...]) -> bool:
    if rid in path:
        return True
    rule = by_id.get(rid)
    return rule is not None and any(_cycle(s, by_id, (*path, rid)) for s in _subs(rule))


def _ordered(rules: list[Rule]) -> list[Rule]:
    by_id = {r.id: r for r in rules}
    done: dict[str, Rule] = {}

    def visit(r: Rule) -> Iterator[Rule]:
        for s in _subs(r):
            if s not in done:
                yield from visit(by_id[s])
        if r.id not in done:
            done[r.id] = r
            yield r

    return [x for r in rules for x in visit(r)]


def _with_version(rule: Rule) -> Rule:
    from dataclasses import asdict, replace

    body = {k: v for k, v in asdict(rule).items() if k not in ("line", "version")}
    digest = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]
    return replace(rule, version=digest)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_number_check(v: Any) -> str | None:
    return None if _is_number(v) else f"must be a number, got {v!r}"


def _positive(v: Any) -> str | None:
    return None if _is_number(v) and v > 0 else f"must be a number > 0, got {v!r}"


def _non_negative(v: Any) -> str | None:
    return None if _is_number(v) and v >= 0 else f"must be a number >= 0, got {v!r}"


def _is_bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else f"must be true or false, got {v!r}"


def _is_str(v: Any) -> str | None:
    return None if isinstance(v, str) else f"must be a string, got {v!r}"


def _is_id(v: Any) -> str | None:
    ok = isinstance(v, str) and _ID.match(v)
    return None if ok else "must be lower_snake_case (a-z, 0-9, _), at most 63 characters"


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        return None if v in choices else f"must be one of {', '.join(choices)}; got {v!r}"

    return check


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def _str_list(v: Any) -> str | None:
    ok = all(isinstance(x, str) and x for x in _as_list(v))
    return None if ok else "must be a string or a list of non-empty strings"


def _id_list(v: Any) -> str | None:
    ok = isinstance(v, list) and v and all(isinstance(x, str) for x in v)
    return None if ok else "must be a non-empty list of rule ids"


def _editions(v: Any) -> str | None:
    ok = isinstance(v, list) and v and all(x in (2016, 2025) for x in v)
    return None if ok else "must be a non-empty list of 2016 and/or 2025"


def _bits(v: Any) -> str | None:
    ok = isinstance(v, list) and all(isinstance(x, int) and 0 <= x <= 31 for x in v)
    return None if ok else "must be a list of general-alarm bit numbers 0..31 (bit 0 = LSB)"


def _level(v: Any) -> str | None:
    ok = isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4
    return None if ok else "must be an alarm level 1..4 (4 = 2025 thermal event)"


def read_text(path: str | Path) -> str:
    return Path(path).read_text(encoding="utf-8")
