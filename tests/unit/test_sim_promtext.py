"""The one Prometheus text reader (devtools.sim.promtext) reads what the service's own metrics
server writes: samples by name and labels, sums, per-label splits, histograms; {} and "" while
nothing answers."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from devtools.devstack.process import free_port
from devtools.sim import promtext
from ingest.pipeline.metrics import MetricsServer, PipelineMetrics

pytestmark = pytest.mark.unit


def _served() -> tuple[MetricsServer, PipelineMetrics]:
    m = PipelineMetrics(CollectorRegistry())
    server = MetricsServer("127.0.0.1", 0, registry=m.registry, ready=lambda: (True, {}))
    server.start()
    return server, m


def test_reads_what_the_metrics_server_writes() -> None:
    server, m = _served()
    try:
        m.frames_consumed.labels(topic="a", kind="vehicle").inc(7)
        m.frames_consumed.labels(topic="b", kind="charger").inc(5)
        m.frames_dead_lettered.labels(topic="a", kind="vehicle", reason="bad_checksum").inc(3)
        m.frames_dead_lettered.labels(topic="b", kind="charger", reason="bad_checksum").inc(1)
        m.frames_dead_lettered.labels(topic="a", kind="vehicle", reason="truncated").inc(2)
        m.lag.labels(consumergroup="g", topic="a", partition="0").set(42)
        samples = promtext.scrape(server.port)
    finally:
        server.stop()
    assert samples['nev_ingest_frames_consumed_total{kind="vehicle",topic="a"}'] == 7.0
    assert promtext.total(samples, "nev_ingest_frames_consumed_total") == 12.0
    assert promtext.total(samples, "nev_ingest_frames_consumed_total", topic="b") == 5.0
    assert promtext.total(samples, "nev_ingest_frames_consumed_total", topic="z") == 0.0
    assert promtext.by_label(samples, "nev_ingest_frames_consumed_total", "kind") == {
        "vehicle": 7.0,
        "charger": 5.0,
    }
    dead = "nev_ingest_frames_dead_lettered_total"
    assert promtext.total(samples, dead, topic="a", reason="truncated") == 2.0
    assert promtext.by_label(samples, dead, "reason") == {"bad_checksum": 4.0, "truncated": 2.0}
    assert promtext.by_label(samples, dead, "nope") == {}
    assert promtext.total(samples, "kafka_consumergroup_lag", partition="0") == 42.0
    assert promtext.exposed(samples, "kafka_consumergroup_lag")
    assert not promtext.exposed(samples, "nev_ingest_no_such_metric")
    # a name that only prefixes another is not that metric
    assert promtext.total(samples, "nev_ingest_frames") == 0.0
    assert not any(k.startswith("#") for k in samples)


def test_latency_histogram_read_back_from_the_server() -> None:
    server, m = _served()
    try:
        m.e2e_latency.labels(topic="a", kind="vehicle").observe(0.3)
        m.e2e_latency.labels(topic="b", kind="charger").observe(0.3)
        m.e2e_latency.labels(topic="a", kind="vehicle").observe(7.0)
        text = promtext.fetch(server.port)
    finally:
        server.stop()
    hist = promtext.parse_histogram(text)
    assert hist["count"] == 3.0  # summed over the topic label
    assert hist["sum"] == pytest.approx(7.6)
    assert hist["+Inf"] == 3.0
    assert promtext.histogram_quantile(hist, 0.5) is not None
    assert promtext.histogram_quantile(hist, 0.5) <= 0.5  # type: ignore[operator]
    assert promtext.histogram_quantile(hist, 0.99) > 5.0  # type: ignore[operator]


def test_nothing_serving_reads_as_empty() -> None:
    port = free_port()
    assert promtext.fetch(port) == ""
    assert promtext.scrape(port) == {}


def test_parse_samples_skips_comments_and_blank_lines() -> None:
    text = '# HELP x help\n# TYPE x counter\n\nx_total 2.0\ny{a="1",b="2"} +Inf\n'
    assert promtext.parse_samples(text) == {"x_total": 2.0, 'y{a="1",b="2"}': float("inf")}
