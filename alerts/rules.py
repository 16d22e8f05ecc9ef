"""``RuleSet``: a validated, ordered rule file, ready for ``RuleEngine`` (and SIGHUP reloads)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from alerts.loader import parse_rules
from alerts.model import Rule
from alerts.problems import RuleFileError, RuleProblem

__all__ = ["DEFAULT_RULES", "RuleFileError", "RuleProblem", "RuleSet"]

DEFAULT_RULES = "default_rules.toml"  # shipped inside the alerts package


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Enabled rules in evaluation order (composites after what they refer to)."""

    rules: tuple[Rule, ...]
    params: dict[str, Any] = field(default_factory=dict)
    source: str = "<rules>"
    version: str = ""  # hash of the file's text
    warnings: tuple[RuleProblem, ...] = ()

    @classmethod
    def from_toml(cls, text: str, source: str = "<rules>") -> RuleSet:
        """Parse ``text``; raises ``RuleFileError`` listing every problem found."""
        rules, params, problems = parse_rules(text, source)
        return cls(
            rules=tuple(rules),
            params=params,
            source=source,
            version=hashlib.sha256(text.encode()).hexdigest()[:12],
            warnings=tuple(problems),
        )

    @classmethod
    def load(cls, path: str | Path) -> RuleSet:
        """Read a rule file. ``OSError`` if it cannot be read, ``RuleFileError`` if invalid."""
        p = Path(path)
        return cls.from_toml(p.read_text(encoding="utf-8"), str(p))

    @classmethod
    def default(cls) -> RuleSet:
        """The shipped default rule set (GB/T 32960.3 alarm block, GB 38031 criteria)."""
        text = resources.files("alerts").joinpath(DEFAULT_RULES).read_text(encoding="utf-8")
        return cls.from_toml(text, f"alerts/{DEFAULT_RULES}")

    def for_kind(self, entity_kind: str) -> RuleSet:
        """The rules for one entity kind (``entity = ...``; vehicle by default), same order."""
        mine = tuple(r for r in self.rules if r.entity == entity_kind)
        if len(mine) == len(self.rules):
            return self
        return RuleSet(mine, self.params, self.source, self.version, self.warnings)

    @property
    def entity_kinds(self) -> tuple[str, ...]:
        """The entity kinds some rule is for, in first-seen order."""
        return tuple(dict.fromkeys(r.entity for r in self.rules))

    def get(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)

    @property
    def alerting(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.alert)

    @property
    def window_s(self) -> float:
        """How much event time of an entity's history its rules can look back on: the longest
        ``window_s``, ``sustain_s`` or ``for_s`` (``for_frames`` counted at the longest gap),
        plus the longest ``max_gap_s`` (the frame before the window that starts a run; alone,
        it is the previous frame a consecutive drop/jump or a rate compares with). The replay
        on partition assignment covers this much (docs/alerts.md); 0: no history."""
        gap = max((_num(r.params.get("max_gap_s")) for r in self.rules), default=0.0)
        span = 0.0
        for r in self.rules:
            span = max(
                span,
                _num(r.params.get("window_s")),
                _num(r.params.get("sustain_s")),
                r.for_s,
                r.for_frames * gap,
            )
        return span + gap


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
