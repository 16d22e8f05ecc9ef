"""A real Prometheus scrapes a running ``nev-ingest run`` carrying traffic (good frames, bad
frames, a vehicle in thermal runaway), and every expression of the alert rules
(deploy/prometheus/alerts.yml, as Prometheus loaded them) and of the Ops dashboard
(deploy/grafana/dashboards/ops.json) is evaluated there: each must evaluate without error, and
each metric it names must have series that the service exposes. A dashboard panel must also
show data. The thermal-runaway alert must fire from the rule engine's open alert."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.dashboards import OUT_DIR, panel_targets
from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.prometheus_support import ALERT_RULES, PrivatePrometheus, metric_names
from tests.integration.traffic import recent_fleet

pytestmark = pytest.mark.integration

# What Grafana puts in for its interval variables (>= 2 scrapes of the test's 1 s interval).
GRAFANA_VARIABLES = {"$__rate_interval": "30s", "$__interval": "15s", "$__range": "5m"}


def _dashboard_exprs() -> Iterator[tuple[str, str]]:
    doc = json.loads((OUT_DIR / "ops.json").read_text())
    for title, target in panel_targets(doc):
        if "expr" in target:
            expr = target["expr"]
            for var, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(var, value)
            assert "$" not in expr, f"{title}: a Grafana variable the test does not expand"
            yield f"panel {title!r}", expr


def _check_names(prom: PrivatePrometheus, where: str, expr: str) -> None:
    names = metric_names(expr)
    assert names, f"{where}: no metric in {expr!r}"
    for name in names:
        found = prom.series(f'{name}{{job="nev-ingest"}}')
        assert found, f"{where}: the service exposes no series {name} ({expr!r})"


async def test_every_alert_and_dashboard_expression_evaluates_on_the_service_series(
    env: PipelineEnv, tmp_path: Path
) -> None:
    messages = recent_fleet(30, 3, bad_ratio=0.05, runaway=True)
    async with ps.serving(env, "scraped") as svc:
        prom = PrivatePrometheus(
            tmp_path / "prometheus", [f"127.0.0.1:{svc.port}"], rule_files=[ALERT_RULES]
        )
        try:
            await prom.wait_ready()
            await ps.produce_and_store(env, messages)

            # The thermal-runaway alert: rule engine -> nev_ingest_alerts_open -> the rule.
            async def runaway_firing() -> bool:
                alerts = prom.api("alerts")["alerts"]
                return any(
                    a["labels"]["alertname"] == "NevIngestThermalRunaway"
                    and a["labels"]["rule"] == "gb38031_thermal_runaway"
                    and a["state"] == "firing"
                    for a in alerts
                )

            await ps.until(runaway_firing, timeout_s=60, what="NevIngestThermalRunaway firing")

            # Rates need two samples of each counter in their window: wait for 5 scrapes.
            async def scraped() -> bool:
                got = prom.query('count_over_time(up{job="nev-ingest"}[30s]) >= 5')
                return bool(got)

            await ps.until(scraped, timeout_s=60, what="five scrapes of the service")

            groups = prom.api("rules")["groups"]
            rules = [r for g in groups for r in g["rules"]]
            assert len(rules) == ALERT_RULES.read_text().count("- alert: ")
            for rule in rules:
                assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"
                _check_names(prom, f"alert {rule['name']}", rule["query"])
                prom.query(rule["query"])  # evaluates (an error fails with its message)
            # Healthy traffic: nothing else fires (the runaway is the only firing alert).
            firing = {
                a["labels"]["alertname"]
                for a in prom.api("alerts")["alerts"]
                if a["state"] == "firing"
            }
            assert firing == {"NevIngestThermalRunaway"}

            exprs = list(_dashboard_exprs())
            assert len(exprs) >= 15
            for where, expr in exprs:
                _check_names(prom, where, expr)
                assert prom.query(expr), f"{where}: no data with traffic ({expr!r})"
        finally:
            prom.stop()


def test_metric_names_skips_functions_labels_groupings_and_keywords() -> None:
    expr = (
        'sum by (topic, reason) (rate(a_total{job="x", reason=~"b|c"}[5m]))\n'
        "/ on (topic) group_left sum by (topic) (rate(d_total[5m] offset 1m)) > 1e3"
        " and time() - min(e_seconds) > bool 120"
    )
    assert metric_names(expr) == {"a_total", "d_total", "e_seconds"}
