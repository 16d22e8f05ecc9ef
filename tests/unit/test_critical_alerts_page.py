"""Every critical rule pages: the Prometheus alert on ``nev_ingest_alerts_open`` selects each
critical default rule of every entity kind, and its runbook says what to do for each.

The selector once listed the vehicle rule ids, so the standalone packs' thermal runaway
(``pack_thermal_runaway``, ``pack_thermal_event``) opened, showed 1 on the gauge and paged no
one. This reads alerts/default_rules.toml, deploy/prometheus/alerts.yml and docs/operations.md
as shipped; the Regulator dashboard's query is checked on a real database
(tests/integration/test_dashboards_sql.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from alerts import Rule, RuleSet

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
ALERTS_YML = ROOT / "deploy" / "prometheus" / "alerts.yml"
OPERATIONS = ROOT / "docs" / "operations.md"
PAGE = "NevIngestCriticalAlert"
GAUGE = "nev_ingest_alerts_open"
# A label matcher of a PromQL selector: name, operator, quoted value.
_MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


def _exprs() -> dict[str, str]:
    """alert name -> its expression (the one-line ``expr:`` form alerts.yml uses for these)."""
    found = re.findall(r"- alert: (\w+)\n(?:\s+#.*\n)*\s+expr: (.+)\n", ALERTS_YML.read_text())
    return dict(found)


def _selects(expr: str, labels: dict[str, str]) -> bool:
    """Whether the selector of ``GAUGE`` in ``expr`` keeps a series with ``labels``."""
    m = re.search(rf"{GAUGE}\{{([^}}]*)\}}", expr)
    assert m, f"{expr!r} does not read {GAUGE}"
    for name, op, value in _MATCHER.findall(m.group(1)):
        have = labels.get(name, "")
        # PromQL regexes are fully anchored.
        ok = {
            "=": have == value,
            "!=": have != value,
            "=~": re.fullmatch(value, have) is not None,
            "!~": re.fullmatch(value, have) is None,
        }[op]
        if not ok:
            return False
    return True


def _series(rule: Rule) -> dict[str, str]:
    # The gauge's labels (ingest.pipeline.metrics: kind, rule, severity) and the scrape job's.
    return {"job": "nev-ingest", "kind": rule.entity, "rule": rule.id, "severity": rule.severity}


def _critical() -> list[Rule]:
    return [r for r in RuleSet.default().rules if r.alert and r.severity == "critical"]


def test_every_critical_default_rule_of_every_kind_pages() -> None:
    critical = _critical()
    assert {r.entity for r in critical} == {"vehicle", "charger", "battery"}
    expr = _exprs()[PAGE]
    missed = [f"{r.entity} rule {r.id}" for r in critical if not _selects(expr, _series(r))]
    assert not missed, f"{PAGE} does not page for: {', '.join(missed)}"


def test_the_page_is_for_critical_rules_only() -> None:
    expr = _exprs()[PAGE]
    for rule in RuleSet.default().rules:
        if rule.alert and rule.severity != "critical":
            assert not _selects(expr, _series(rule)), rule.id


def test_a_critical_rule_of_a_new_kind_or_file_pages_without_editing_the_alert() -> None:
    # The selector names no rule id: a rule file's own critical rule pages as well.
    rules = RuleSet.from_toml(
        '[[rule]]\nid = "my_pack_rule"\nentity = "battery"\nkind = "threshold"\n'
        'severity = "critical"\nfield = "max_temp_c"\nop = ">="\nvalue = 90\n'
    ).rules
    assert _selects(_exprs()[PAGE], _series(rules[0]))


def test_the_runbook_says_what_to_do_for_each_critical_default_rule() -> None:
    text = OPERATIONS.read_text()
    start = text.index(f"### {PAGE}\n")
    section = text[start : text.index("\n### ", start + 1)]
    missing = [r.id for r in _critical() if f"`{r.id}`" not in section]
    assert not missing, f"docs/operations.md ### {PAGE} does not name: {', '.join(missing)}"
