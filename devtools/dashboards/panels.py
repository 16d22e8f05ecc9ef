"""Small panel helpers shared by the dashboards: a Prometheus time series, a stat, a SQL panel.

Every Prometheus query selects ``job="nev-ingest"`` (the scrape job of
deploy/prometheus/prometheus.yml) through ``JOB``, or the gateway's ``job="nev-gateway"``
through ``GATEWAY_JOB``, so that a Prometheus scraping other services with the same metric
names (kafka_exporter's lag) shows only ours."""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.builders.common import (
    ReduceDataOptions,
    StackingConfig,
    VizLegendOptions,
)
from grafana_foundation_sdk.models.common import (
    GraphDrawStyle,
    LegendDisplayMode,
    LegendPlacement,
    StackingMode,
)

from devtools.dashboards.sql import PROMETHEUS

__all__ = [
    "GATEWAY_JOB",
    "JOB",
    "last_value",
    "legend",
    "prom",
    "prom_stat",
    "prom_timeseries",
    "rate_by",
]

JOB: Final = 'job="nev-ingest"'
GATEWAY_JOB: Final = 'job="nev-gateway"'


def legend() -> VizLegendOptions:
    """A list legend below the graph (every panel sets its options: the library leaves them
    null otherwise, which its own model does not read back)."""
    return (
        VizLegendOptions()
        .display_mode(LegendDisplayMode.LIST)
        .placement(LegendPlacement.BOTTOM)
        .show_legend(True)
    )


def last_value() -> ReduceDataOptions:
    """A stat shows the last non-null value of its series."""
    return ReduceDataOptions().calcs(["lastNotNull"]).values(False)


def rate_by(labels: str, counter: str, job: str = JOB) -> str:
    """``sum by (labels) (rate(counter{job}[$__rate_interval]))``."""
    return f"sum by ({labels}) (rate({counter}{{{job}}}[$__rate_interval]))"


def prom(expr: str, legend: str = "", ref_id: str = "A") -> prometheus.Dataquery:
    """A Prometheus range query; ``legend`` is Grafana's legend template ({{label}})."""
    q = prometheus.Dataquery().expr(expr).ref_id(ref_id).range().datasource(PROMETHEUS)
    return q.legend_format(legend) if legend else q


def prom_timeseries(
    title: str,
    description: str,
    queries: list[prometheus.Dataquery],
    *,
    unit: str = "short",
    stacked: bool = False,
    width: int = 12,
    bars: bool = False,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .unit(unit)
        .span(width)
        .height(8)
        .fill_opacity(10)
        .legend(legend())
    )
    for q in queries:
        panel = panel.with_target(q)
    if stacked:
        panel = panel.stacking(StackingConfig().mode(StackingMode.NORMAL))
    if bars:
        panel = panel.draw_style(GraphDrawStyle.BARS)
    return panel


def prom_stat(
    title: str,
    description: str,
    query: prometheus.Dataquery,
    *,
    unit: str = "short",
    width: int = 4,
) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .unit(unit)
        .span(width)
        .height(4)
        .reduce_options(last_value())
        .with_target(query)
    )
