"""Battery-safety rule engine: rule files, stateful rules, the alert lifecycle, storage helpers.

Pure except ``alerts.store`` (asyncpg, called by the pipeline inside its transaction).
See docs/alerts.md.
"""

from alerts.engine import RuleEngine, RuleEngineStats
from alerts.model import AlertChange, AlertRecord, Rule, Scope
from alerts.publish import to_message
from alerts.rules import RuleFileError, RuleProblem, RuleSet

__all__ = [
    "AlertChange",
    "AlertRecord",
    "Rule",
    "RuleEngine",
    "RuleEngineStats",
    "RuleFileError",
    "RuleProblem",
    "RuleSet",
    "Scope",
    "to_message",
]
