"""Pipeline metrics: the batched histogram helper, the HTTP endpoints, JSON logs."""

from __future__ import annotations

import io
import logging
import urllib.error
import urllib.request

import orjson
import pytest
from prometheus_client import CollectorRegistry, Histogram

from ingest.pipeline.logs import RateLimiter, configure_logging
from ingest.pipeline.metrics import LATENCY_BUCKETS, MetricsServer, PipelineMetrics, observe_many

pytestmark = pytest.mark.unit


def _samples(registry: CollectorRegistry, name: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in registry.collect():
        for s in family.samples:
            if s.name.startswith(name):
                out[f"{s.name}{sorted(s.labels.items())}"] = s.value
    return out


def test_observe_many_equals_observe_one_by_one() -> None:
    values = [0.0, 0.05, 0.051, 0.2, 0.99, 1.0, 1.7, 2.0, 2.5, 7.0, 45.0, 301.0, 1e6, 0.3, 0.3]
    one = CollectorRegistry()
    many = CollectorRegistry()
    h1 = Histogram("lat", "x", ["topic"], buckets=LATENCY_BUCKETS, registry=one)
    h2 = Histogram("lat", "x", ["topic"], buckets=LATENCY_BUCKETS, registry=many)
    for v in values:
        h1.labels(topic="t").observe(v)
    observe_many(h2.labels(topic="t"), values)
    observe_many(h2.labels(topic="t"), [])
    got = {k: v for k, v in _samples(many, "lat").items() if "created" not in k}
    want = {k: v for k, v in _samples(one, "lat").items() if "created" not in k}
    assert got == pytest.approx(want)  # the sum differs in the last bit (summation order)
    assert got["lat_count[('topic', 't')]"] == len(values)


def test_metrics_names_follow_kafka_exporter_for_lag() -> None:
    m = PipelineMetrics(CollectorRegistry())
    m.lag.labels(consumergroup="g", topic="nev.vehicle.raw", partition="3").set(42)
    value = m.registry.get_sample_value(
        "kafka_consumergroup_lag",
        {"consumergroup": "g", "topic": "nev.vehicle.raw", "partition": "3"},
    )
    assert value == 42
    m.frames_dead_lettered.labels(topic="t", kind="vehicle", reason="bad_checksum").inc(3)
    assert (
        m.registry.get_sample_value(
            "nev_ingest_frames_dead_lettered_total",
            {"topic": "t", "kind": "vehicle", "reason": "bad_checksum"},
        )
        == 3
    )


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 (http to loopback)
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_server_endpoints() -> None:
    m = PipelineMetrics(CollectorRegistry())
    m.frames_consumed.labels(topic="nev.vehicle.raw", kind="vehicle").inc(7)
    state = {"ready": False}
    server = MetricsServer(
        "127.0.0.1",
        0,
        registry=m.registry,
        ready=lambda: (state["ready"], {"workers": 1}),
    )
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        code, body = _get(base + "/metrics")
        assert code == 200
        assert (
            b'nev_ingest_frames_consumed_total{kind="vehicle",topic="nev.vehicle.raw"} 7.0' in body
        )
        assert _get(base + "/healthz") == (200, b"ok\n")
        code, body = _get(base + "/readyz")
        assert code == 503
        assert orjson.loads(body) == {"ready": False, "workers": 1}
        state["ready"] = True
        assert _get(base + "/readyz")[0] == 200
        assert _get(base + "/nope")[0] == 404
    finally:
        server.stop()


def test_json_logs_one_object_per_line_with_context() -> None:
    stream = io.StringIO()
    formatter = configure_logging("INFO", stream=stream, static={"worker": 2})
    try:
        log = logging.getLogger("ingest.test")
        log.info("batch committed: %d frames", 10, extra={"partition": 3, "offset": 99})
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("write failed", extra={"topic": "t", "key": b"\x01\x02"})
        formatter.set_static(worker=5)
        log.debug("hidden at INFO")
        log.warning("after")
    finally:
        logging.getLogger().handlers.clear()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    first, second, third = (orjson.loads(line) for line in lines)
    assert first["msg"] == "batch committed: 10 frames"
    assert (first["partition"], first["offset"], first["worker"]) == (3, 99, 2)
    assert first["level"] == "info" and first["service"] == "nev-ingest"
    assert second["exc_type"] == "RuntimeError" and "boom" in second["exc"]
    assert second["key"] == "0102"
    assert third["worker"] == 5


def test_rate_limiter_counts_what_it_holds_back() -> None:
    now = [0.0]
    limiter = RateLimiter(10.0, clock=lambda: now[0])
    assert limiter.allow("bad_checksum") == 0
    assert limiter.allow("bad_checksum") is None
    assert limiter.allow("bad_checksum") is None
    assert limiter.allow("truncated") == 0
    now[0] = 10.5
    assert limiter.allow("bad_checksum") == 2
    assert limiter.allow("bad_checksum") is None


def test_rate_limiter_memory_is_bounded_whatever_the_keys() -> None:
    # Keys may come from input (the T/CEC receiver keys refusals by peer address): a spray of
    # addresses must not grow it for ever.
    now = [0.0]
    limiter = RateLimiter(10.0, clock=lambda: now[0])
    for i in range(25_000):
        now[0] = i / 1000  # 25 s: most keys' interval is over by the end
        assert limiter.allow(f"10.0.{i // 256}.{i % 256}") == 0
    assert len(limiter._last) <= 10_000 and len(limiter._held) <= 10_000
    assert limiter.allow("10.0.97.167") is None  # a recent key is still held back


def test_third_party_log_floods_are_rate_limited() -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    try:
        noisy = logging.getLogger("aiokafka.conn")
        for _ in range(50):
            noisy.error("Unable connect to node with id %s: %s", 1, "Connection refused")
        mine = logging.getLogger("ingest.pipeline.worker")
        for _ in range(3):
            mine.warning("pausing partitions")
    finally:
        logging.getLogger().handlers.clear()
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert [r["logger"] for r in lines].count("aiokafka.conn") == 1
    assert [r["logger"] for r in lines].count("ingest.pipeline.worker") == 3


def test_histogram_quantile_like_promql() -> None:
    from devtools.sim.promtext import histogram_quantile, parse_histogram

    text = "\n".join(
        [
            'nev_ingest_end_to_end_latency_seconds_bucket{le="0.5",topic="a"} 50.0',
            'nev_ingest_end_to_end_latency_seconds_bucket{le="1.0",topic="a"} 90.0',
            'nev_ingest_end_to_end_latency_seconds_bucket{le="2.0",topic="a"} 100.0',
            'nev_ingest_end_to_end_latency_seconds_bucket{le="+Inf",topic="a"} 100.0',
            'nev_ingest_end_to_end_latency_seconds_count{topic="a"} 100.0',
        ]
    )
    hist = parse_histogram(text)
    assert hist["count"] == 100
    assert histogram_quantile(hist, 0.5) == 0.5
    assert histogram_quantile(hist, 0.7) == 0.75  # halfway through the (0.5, 1] bucket
    assert histogram_quantile(hist, 0.99) == 1.9
    assert histogram_quantile({}, 0.5) is None


def test_open_alerts_gauge_counts_and_zeroes_what_closed() -> None:
    m = PipelineMetrics(CollectorRegistry())
    m.set_open_alerts(
        {
            ("vehicle", "thermal_event", "critical"): 2,
            ("vehicle", "alarm_level_3", "major"): 1,
            ("charger", "connector_over_temp", "major"): 1,
        }
    )
    m.set_open_alerts({("vehicle", "thermal_event", "critical"): 1})
    got = _samples(m.registry, "nev_ingest_alerts_open")
    assert got == {
        "nev_ingest_alerts_open[('kind', 'vehicle'), ('rule', 'thermal_event'), "
        "('severity', 'critical')]": 1.0,
        "nev_ingest_alerts_open[('kind', 'vehicle'), ('rule', 'alarm_level_3'), "
        "('severity', 'major')]": 0.0,
        # the kind's series shown before goes to 0 too, not left at its last count
        "nev_ingest_alerts_open[('kind', 'charger'), ('rule', 'connector_over_temp'), "
        "('severity', 'major')]": 0.0,
    }


def test_every_wait_cause_is_exported_from_0() -> None:
    # A rate() over a cause not yet seen is 0, not absent: restore (after a rebalance) too.
    m = PipelineMetrics(CollectorRegistry())
    for cause in ("poll", "room", "lane", "restore"):
        value = m.registry.get_sample_value(
            "nev_ingest_worker_wait_seconds_total", {"cause": cause}
        )
        assert value == 0.0, cause
