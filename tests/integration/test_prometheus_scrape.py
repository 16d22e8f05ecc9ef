"""A real Prometheus scrapes a running ``nev-ingest run`` carrying traffic (good frames, bad
frames, a vehicle in thermal runaway) and a running ``nev-ingest gateway run`` carrying a little
of every sort (a refused frame, a vehicle session, a refused platform login, T/CEC 102 requests),
as the jobs ``nev-ingest`` and ``nev-gateway`` of deploy/prometheus/prometheus.yml. Every
expression of the alert rules (deploy/prometheus/alerts.yml, as Prometheus loaded them) and of
the Ops dashboard (deploy/grafana/dashboards/ops.json) is evaluated there: each must evaluate
without error, select one of the two jobs, and each metric it names must have series that
job's process exposes. A dashboard panel must also show data. The thermal-runaway alert must
fire from the rule engine's open alert, and nothing else may fire."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devtools.dashboards import OUT_DIR, panel_targets
from tests.integration import pipeline_support as ps
from tests.integration.gateway_support import drive_traffic, serving_gateway
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.prometheus_support import ALERT_RULES, PrivatePrometheus, metric_names
from tests.integration.traffic import recent_fleet

pytestmark = pytest.mark.integration

# What Grafana puts in for its interval variables (>= 2 scrapes of the test's 1 s interval).
GRAFANA_VARIABLES = {"$__rate_interval": "30s", "$__interval": "15s", "$__range": "5m"}
# The scrape jobs of deploy/prometheus/prometheus.yml: the service's and the gateway's.
SERVICE_JOB, GATEWAY_JOB = "nev-ingest", "nev-gateway"
PROMETHEUS_YML = ALERT_RULES.parent / "prometheus.yml"
VIN = "LNEVSCRAPE0000001"


def _dashboard_exprs() -> Iterator[tuple[str, str]]:
    doc = json.loads((OUT_DIR / "ops.json").read_text())
    for title, target in panel_targets(doc):
        if "expr" in target:
            expr = target["expr"]
            for var, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(var, value)
            assert "$" not in expr, f"{title}: a Grafana variable the test does not expand"
            yield f"panel {title!r}", expr


def _check_names(prom: PrivatePrometheus, where: str, expr: str) -> str:
    """Every metric ``expr`` names has series in the one job it selects; returns that job."""
    jobs: set[str] = set(re.findall(r'job="([^"]*)"', expr))
    assert len(jobs) == 1 and jobs <= {SERVICE_JOB, GATEWAY_JOB}, f"{where}: selects {jobs}"
    (job,) = jobs
    names = metric_names(expr)
    assert names, f"{where}: no metric in {expr!r}"
    for name in names:
        found = prom.series(f'{name}{{job="{job}"}}')
        assert found, f"{where}: job {job} exposes no series {name} ({expr!r})"
    return job


async def test_every_alert_and_dashboard_expression_evaluates_on_the_scraped_series(
    env: PipelineEnv, unique_topic: Callable[..., str], tmp_path: Path
) -> None:
    text = PROMETHEUS_YML.read_text()
    assert {SERVICE_JOB, GATEWAY_JOB} <= set(re.findall(r"job_name: ([\w-]+)", text))
    messages = recent_fleet(30, 3, bad_ratio=0.05, runaway=True)
    gateway_topics = {
        "vehicle": unique_topic(1, "gw"),
        "dlq": unique_topic(1, "gw-dlq"),
        "tcec": unique_topic(1, "gw-tcec"),
    }
    async with (
        ps.serving(env, "scraped") as svc,
        serving_gateway(
            env.kafka,
            vehicle=gateway_topics["vehicle"],
            dlq=gateway_topics["dlq"],
            tcec=gateway_topics["tcec"],
            log=tmp_path / "gateway.log",
        ) as gw,
    ):
        jobs = {
            SERVICE_JOB: [f"127.0.0.1:{svc.port}"],
            GATEWAY_JOB: [f"127.0.0.1:{gw.metrics_port}"],
        }
        prom = PrivatePrometheus(tmp_path / "prometheus", jobs, rule_files=[ALERT_RULES])
        try:
            await prom.wait_ready()
            await drive_traffic(gw, VIN)
            traffic_done = time.time()
            await ps.produce_and_store(env, messages)

            # The critical-alert page (a thermal runaway): rule engine -> nev_ingest_alerts_open
            # -> the rule.
            async def runaway_firing() -> bool:
                alerts = prom.api("alerts")["alerts"]
                return any(
                    a["labels"]["alertname"] == "NevIngestCriticalAlert"
                    and a["labels"]["rule"] == "gb38031_thermal_runaway"
                    and a["labels"].get("kind") == "vehicle"  # the page names the entity kind
                    and a["state"] == "firing"
                    for a in alerts
                )

            await ps.until(runaway_firing, timeout_s=60, what="NevIngestCriticalAlert firing")

            # Rates need two samples of each counter in their window: wait for 5 scrapes of
            # each target, and for the gateway 3 since its traffic (which made its series).
            async def scraped() -> bool:
                both = prom.query("count(count_over_time(up[30s]) >= 5)")
                since = math.ceil(time.time() - traffic_done)
                gateway = f'count_over_time(up{{job="{GATEWAY_JOB}"}}[{since}s]) >= 3'
                return bool(both) and both[0]["value"][1] == "2" and bool(prom.query(gateway))

            await ps.until(scraped, timeout_s=60, what="five scrapes of the service and gateway")

            groups = prom.api("rules")["groups"]
            rules = [r for g in groups for r in g["rules"]]
            assert len(rules) == ALERT_RULES.read_text().count("- alert: ")
            checked = []
            for rule in rules:
                assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"
                checked.append(_check_names(prom, f"alert {rule['name']}", rule["query"]))
                prom.query(rule["query"])  # evaluates (an error fails with its message)
            assert checked.count(GATEWAY_JOB) >= 6, "the gateway's alert rules"
            # Healthy traffic: nothing else fires (the runaway is the only firing alert).
            firing = {
                a["labels"]["alertname"]
                for a in prom.api("alerts")["alerts"]
                if a["state"] == "firing"
            }
            assert firing == {"NevIngestCriticalAlert"}

            exprs = list(_dashboard_exprs())
            assert len(exprs) >= 15
            checked = []
            for where, expr in exprs:
                checked.append(_check_names(prom, where, expr))
                assert prom.query(expr), f"{where}: no data with traffic ({expr!r})"
            assert checked.count(GATEWAY_JOB) >= 12, "the gateway row's queries"
        finally:
            prom.stop()


def test_metric_names_skips_functions_labels_groupings_and_keywords() -> None:
    expr = (
        'sum by (topic, reason) (rate(a_total{job="x", reason=~"b|c"}[5m]))\n'
        "/ on (topic) group_left sum by (topic) (rate(d_total[5m] offset 1m)) > 1e3"
        " and time() - min(e_seconds) > bool 120"
    )
    assert metric_names(expr) == {"a_total", "d_total", "e_seconds"}
