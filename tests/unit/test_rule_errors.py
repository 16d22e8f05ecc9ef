"""What the engine's safety net caught, made visible (ingest/pipeline/rule_errors.py): every
failure counted in ``nev_ingest_rule_errors_total``, one ERROR line per rule per interval."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry

from alerts import RuleEngine, RuleSet
from ingest.pipeline.logs import RateLimiter
from ingest.pipeline.metrics import PipelineMetrics
from ingest.pipeline.rule_errors import RuleErrors
from tests.unit.test_alerts_rule_failure import BAD, RULES, VIN, fr

pytestmark = pytest.mark.unit


def test_rule_errors_count_every_failure_and_log_one_line_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    metrics = PipelineMetrics(CollectorRegistry())
    report = RuleErrors(metrics, RateLimiter(60.0, clock=lambda: now[0]))
    e = RuleEngine(RuleSet.from_toml(RULES))
    with caplog.at_level(logging.ERROR, logger="ingest.pipeline.rule_errors"):
        for at in range(3):
            e.evaluate([fr(at * 10, BAD), fr(at * 10 + 5, BAD)])
            report.report("vehicle", e.take_failures())
        now[0] = 61.0
        e.evaluate([fr(100, BAD)])
        report.report("vehicle", e.take_failures())
    count = metrics.registry.get_sample_value(
        "nev_ingest_rule_errors_total", {"kind": "vehicle", "rule": "hot"}
    )
    assert count == 7
    lines = [r for r in caplog.records if r.name == "ingest.pipeline.rule_errors"]
    assert len(lines) == 2 and lines[1].__dict__["suppressed"] == 2
    assert VIN in lines[0].getMessage() and "TypeError" in lines[0].getMessage()
    assert "'hot'" in lines[0].getMessage()


def test_every_rule_of_a_kind_has_its_series_from_0() -> None:
    # A series that first appears at 1 is no increase() to Prometheus: NevIngestRuleErrors
    # would miss the first failure of a rule.
    metrics = PipelineMetrics(CollectorRegistry())
    RuleErrors(metrics).show("vehicle", [r.id for r in RuleSet.from_toml(RULES).rules])
    for rule in ("hot", "heating", "unknown"):
        labels = {"kind": "vehicle", "rule": rule}
        assert metrics.registry.get_sample_value("nev_ingest_rule_errors_total", labels) == 0
