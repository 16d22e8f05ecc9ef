"""Prometheus metrics of the pipeline, and the /metrics, /healthz, /readyz HTTP endpoint.

Multi-process mode (prometheus-client's ``PROMETHEUS_MULTIPROC_DIR``): every worker process writes
its samples to memory-mapped files in one directory, and the supervisor serves them merged on ONE
port. One scrape target per host (not one per worker) keeps Prometheus and Grafana configuration
independent of ``--workers``, and counters survive a worker's restart (the supervisor folds a
dead worker's counter and histogram files into one archive file: ``metric_files``). Gauges
declare how they merge: per-partition gauges are ``livemax`` (the worker that gives up a
partition sets it to 0, the new owner reports the real value), readiness gauges are ``liveall``
(one series per worker pid, so /readyz can judge each worker).

Names follow ``nev_ingest_<what>_<unit>[_total]``; consumer lag uses the names and labels of
kafka_exporter (``kafka_consumergroup_lag{consumergroup,topic,partition}``) so existing Kafka
dashboards and alerts work unchanged. The frame counters and the latency histogram carry the
entity ``kind`` beside the ``topic``. No label ever carries a VIN, an offset or error text.
"""

from __future__ import annotations

import bisect
import http.server
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Protocol

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

__all__ = [
    "BATCH_SIZE_BUCKETS",
    "LATENCY_BUCKETS",
    "WAIT_CAUSES",
    "WRITE_BUCKETS",
    "MetricsServer",
    "PipelineMetrics",
    "observe_many",
    "worker_gauges",
]

log = logging.getLogger(__name__)

BATCH_SIZE_BUCKETS: Final = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 20000, 50000)
WRITE_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# End-to-end latency: fine steps up to a few seconds, where the p99 <= 2 s goal is judged.
LATENCY_BUCKETS: Final = (
    0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip
_LAG_LABELS: Final = ("consumergroup", "topic", "partition")
# Frame counters: the raw topic and its entity kind (vehicle, charger, battery), so that kinds
# sum without knowing topic names (the T/CEC 102 topic counts as charger).
_FRAME_LABELS: Final = ("topic", "kind")
# What the consume loop waits for (``worker_wait``): the Kafka fetch, room under the in-flight
# bounds (or a pause: the database), the write lanes' turn between decode slices, a restore
# after a rebalance (stored offsets, refills). Only the idle part of each: see the help.
WAIT_CAUSES: Final = ("poll", "room", "lane", "restore")


class PipelineMetrics:
    """Every metric a pipeline worker emits, registered on ``registry`` (a fresh one in tests)."""

    # One declaration a metric (name, help, labels): a table that reads better repeated than
    # generated.
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.registry = r
        ns = "nev_ingest"
        self.frames_consumed = Counter(
            "frames_consumed", "Frames fetched from Kafka.", _FRAME_LABELS, namespace=ns, registry=r
        )
        self.frames_decoded = Counter(
            "frames_decoded",
            "Frames the decoder accepted.",
            _FRAME_LABELS,
            namespace=ns,
            registry=r,
        )
        self.frames_written = Counter(
            "frames_written",
            "Frames whose rows were committed to the database.",
            _FRAME_LABELS,
            namespace=ns,
            registry=r,
        )
        self.frames_dead_lettered = Counter(
            "frames_dead_lettered",
            "Frames sent to the dead-letter topic, by reason (decoder reason or db_rejected).",
            [*_FRAME_LABELS, "reason"],
            namespace=ns,
            registry=r,
        )
        self.batch_size = Histogram(
            "batch_size_frames",
            "Frames per written batch.",
            buckets=BATCH_SIZE_BUCKETS,
            namespace=ns,
            registry=r,
        )
        self.write_duration = Histogram(
            "batch_write_duration_seconds",
            "Time to write and commit one batch (rows, offsets, alerts), retries included.",
            buckets=WRITE_BUCKETS,
            namespace=ns,
            registry=r,
        )
        self.e2e_latency = Histogram(
            "end_to_end_latency_seconds",
            "Gateway receive time (received_at header) to database commit, per frame.",
            _FRAME_LABELS,
            buckets=LATENCY_BUCKETS,
            namespace=ns,
            registry=r,
        )
        self.write_retries = Counter(
            "write_retries",
            "Batch writes retried after a transient error (broker or database).",
            ["stage"],
            namespace=ns,
            registry=r,
        )
        for stage in ("database", "dlq", "alerts"):  # every stage's series from 0 on
            self.write_retries.labels(stage=stage)
        self.duplicates_skipped = Counter(
            "duplicate_rows_skipped",
            "Rows the database already held (a device resending, or a replay the offsets did not "
            "stop); 0 while exactly-once works by offsets alone.",
            namespace=ns,
            registry=r,
        )
        self.batches_abandoned = Counter(
            "batches_abandoned",
            "In-flight batches given up uncommitted (revoke, shutdown deadline, fencing); "
            "their frames are redelivered.",
            ["reason"],
            namespace=ns,
            registry=r,
        )
        self.bisect_loads = Counter(
            "bisect_loads",
            "Batch loads the database refused for a row and that were split to find it (an "
            "unexpected data error; 0 while every reject is decided before the database).",
            namespace=ns,
            registry=r,
        )
        # Seconds, not a histogram of waits: one addition per await (a few a loop turn) is
        # all the consume loop can afford, and rate() of it is the share of the loop's time.
        # No kind label: one loop serves every kind's topics, and a poll or a room wait is not
        # one kind's.
        self.worker_wait = Counter(
            "worker_wait_seconds",
            "Seconds the workers' consume loops waited idle (nothing to run, or no core free), "
            "by cause: poll (Kafka's fetch: the brokers, or the producers sent nothing), room "
            "(at pipeline.max_in_flight_frames or _bytes, or paused: the database is the "
            "bound), lane (the write lanes' turn of the event loop between decode slices), "
            "restore (after a rebalance: stored offsets read, refills ended). "
            "Idle time only: the event loop's own CPU during the await (the write lanes, the "
            "Kafka client, commits) is not counted. rate() is the share of a worker's time it "
            "was idle.",
            ["cause"],
            namespace=ns,
            registry=r,
        )
        for cause in WAIT_CAUSES:  # every cause's series from 0 on
            self.worker_wait.labels(cause=cause)
        self.partitions_created = Counter(
            "partitions_created",
            "Plain PostgreSQL partitions created on demand for in-window frame times.",
            namespace=ns,
            registry=r,
        )
        self.rebalances = Counter(
            "rebalances", "Partition revocations and assignments.", ["event"], namespace=ns,
            registry=r,
        )  # fmt: skip
        self.alerts = Counter(
            "alerts",
            "Alert lifecycle changes saved by the rule engine, by entity kind, rule, severity and "
            "change.",
            ["kind", "rule", "severity", "change"],
            namespace=ns,
            registry=r,
        )
        self.rule_frames = Counter(
            "rule_frames",
            "Frames the rule engine took, by entity kind and outcome: evaluated (in event-time "
            "order), late, duplicate, future (dated too far ahead of now: not judged), no_data.",
            ["kind", "outcome"],
            namespace=ns,
            registry=r,
        )
        self.rule_errors = Counter(
            "rule_errors",
            "Frames whose judging by a rule raised (a defect in the rule code: the frame's rows "
            "are stored, its verdicts for the entity skipped), by entity kind and rule "
            "(unknown: not told exactly). Anything above 0 is a bug to fix (docs/operations.md).",
            ["kind", "rule"],
            namespace=ns,
            registry=r,
        )
        self.producer_replacements = Counter(
            "kafka_producer_replacements",
            "Kafka producers (dead letters and alerts) replaced after the broker refused a "
            "batch: the gap it left in a partition's sequence would have the broker refuse "
            "every later batch there.",
            namespace=ns,
            registry=r,
        )
        self.dead_letters_shrunk = Counter(
            "dead_letters_shrunk",
            "Dead letters the dead-letter topic refused as too large, sent again cut down.",
            namespace=ns,
            registry=r,
        )
        # A gauge, not the counter above: an alert raised before a restart or a rebalance is
        # still open (restored from the database by the new owner), and Prometheus alerts on it.
        self.alerts_open = Gauge(
            "alerts_open",
            "Alerts open now in the partitions the host's workers own, by entity kind, rule and "
            "severity.",
            ["kind", "rule", "severity"],
            namespace=ns,
            registry=r,
            multiprocess_mode="livesum",
        )
        self._open_shown: set[tuple[str, str, str]] = set()  # (kind, rule, severity) shown
        self.alerts_published = Counter(
            "alerts_published", "Alert messages published to the alerts topic.", namespace=ns,
            registry=r,
        )  # fmt: skip
        self.in_flight = Gauge(
            "in_flight_frames",
            "Frames consumed but not yet committed (bounded by pipeline.max_in_flight_frames).",
            namespace=ns,
            registry=r,
            multiprocess_mode="livesum",
        )
        self.in_flight_bytes = Gauge(
            "in_flight_bytes",
            "Bytes of the in-flight records: values, keys, headers (bounded by "
            "pipeline.max_in_flight_bytes, but for one fetch; their decoded rows take more: "
            "docs/operations.md).",
            namespace=ns,
            registry=r,
            multiprocess_mode="livesum",
        )
        self.paused_partitions = Gauge(
            "paused_partitions",
            "Partitions paused because the database is slow or down (backpressure).",
            namespace=ns,
            registry=r,
            multiprocess_mode="livesum",
        )
        self.restoring_partitions = Gauge(
            "restoring_partitions",
            "Partitions assigned whose stored offsets and alert state are being loaded (held "
            "paused until then; not backpressure).",
            namespace=ns,
            registry=r,
            multiprocess_mode="livesum",
        )
        # Per shard (storage.shards; one database = shard 0): which database is behind.
        self.shard_paused_partitions = Gauge(
            "shard_paused_partitions",
            "Partitions paused because their shard (database) is failing, by shard.",
            ["shard"],
            namespace=ns,
            registry=r,
            multiprocess_mode="livesum",
        )
        self.shard_frames_written = Counter(
            "shard_frames_written",
            "Frames committed, by shard (database).",
            ["shard"],
            namespace=ns,
            registry=r,
        )
        self.shard_write_errors = Counter(
            "shard_write_errors",
            "Batch writes that failed with a transient database error (then retried), by shard.",
            ["shard"],
            namespace=ns,
            registry=r,
        )
        self.assigned_partitions = Gauge(
            "assigned_partitions",
            "Partitions assigned to the workers.",
            namespace=ns,
            registry=r,
            multiprocess_mode="livesum",
        )
        self.db_pool = Gauge(
            "db_pool_connections",
            "Database pool connections by state (in_use, idle, max).",
            ["state"],
            namespace=ns,
            registry=r,
            multiprocess_mode="livesum",
        )
        self.lag = Gauge(
            "kafka_consumergroup_lag",
            "Consumer lag in messages: partition end offset minus the committed offset.",
            _LAG_LABELS,
            registry=r,
            multiprocess_mode="livemax",
        )
        self.lag_seconds = Gauge(
            "kafka_consumergroup_lag_seconds",
            "Consumer lag in seconds: age of the oldest consumed-but-uncommitted message.",
            _LAG_LABELS,
            registry=r,
            multiprocess_mode="livemax",
        )
        self.current_offset = Gauge(
            "kafka_consumergroup_current_offset",
            "Committed offset of the consumer group (next offset to read).",
            _LAG_LABELS,
            registry=r,
            multiprocess_mode="livemax",
        )
        # Readiness, one series per worker pid (read by the supervisor's /readyz).
        self.kafka_connected = Gauge(
            "worker_kafka_connected",
            "1 when the worker's Kafka clients started and the brokers answer (end offsets, "
            "metadata); 0 while it waits for them at start or lost them; NaN before the first "
            "attempt (a worker still waiting for its database).",
            namespace=ns, registry=r, multiprocess_mode="liveall",
        )  # fmt: skip
        self.in_group = Gauge(
            "worker_in_group",
            "1 while the worker holds an assignment of the consumer group (an empty one too: "
            "more workers than partitions); 0 from its start, and from each rebalance's "
            "revocation until its next assignment.",
            namespace=ns, registry=r, multiprocess_mode="liveall",
        )  # fmt: skip
        self.db_connected = Gauge(
            "worker_db_connected", "1 when the worker's last database write or ping worked.",
            namespace=ns, registry=r, multiprocess_mode="liveall",
        )  # fmt: skip
        self.heartbeat = Gauge(
            "worker_heartbeat_timestamp_seconds",
            "Unix time of the worker loop's last turn; an old value means a stalled worker.",
            namespace=ns, registry=r, multiprocess_mode="liveall",
        )  # fmt: skip
        self.last_commit = Gauge(
            "worker_last_commit_timestamp_seconds",
            "Unix time of the worker's last committed batch.",
            namespace=ns, registry=r, multiprocess_mode="liveall",
        )  # fmt: skip
        self.backlog = Gauge(
            "worker_backlog_frames",
            "Frames known to wait for this worker (lag plus in-flight).",
            namespace=ns, registry=r, multiprocess_mode="liveall",
        )  # fmt: skip

    def set_open_alerts(self, counts: dict[tuple[str, str, str], int]) -> None:
        """Set ``alerts_open`` from (kind, rule, severity) -> count; a series shown before and
        absent now goes to 0 (multi-process gauges cannot be removed)."""
        for kind, rule, severity in self._open_shown - counts.keys():
            self.alerts_open.labels(kind=kind, rule=rule, severity=severity).set(0)
        for (kind, rule, severity), n in counts.items():
            self.alerts_open.labels(kind=kind, rule=rule, severity=severity).set(n)
        self._open_shown = set(counts)


class _HistogramChild(Protocol):
    _upper_bounds: list[float]
    _buckets: list[Any]
    _sum: Any


def observe_many(histogram: Histogram, values: Sequence[float]) -> None:
    """Observe many values with one increment per bucket instead of one per value.

    A batch of 5,000 frames would otherwise cost 5,000 ``observe`` calls (each a lock and, in
    multi-process mode, two mmap writes). This touches prometheus-client internals
    (``_upper_bounds``, ``_buckets``, ``_sum``); tests/unit/test_pipeline_metrics.py checks
    that the result equals per-value ``observe``, so a client upgrade that changes them fails
    there and not in production.
    """
    if not values:
        return
    child: _HistogramChild = histogram
    ordered = sorted(values)
    start = 0
    for i, bound in enumerate(child._upper_bounds):
        end = bisect.bisect_right(ordered, bound, lo=start)
        if end > start:
            child._buckets[i].inc(end - start)
            start = end
        if start == len(ordered):
            break
    child._sum.inc(sum(ordered))


Readiness = Callable[[], tuple[bool, dict[str, object]]]

WORKER_GAUGES: Final = {
    "nev_ingest_worker_kafka_connected": "kafka_connected",
    "nev_ingest_worker_in_group": "in_group",
    "nev_ingest_worker_db_connected": "db_connected",
    "nev_ingest_worker_heartbeat_timestamp_seconds": "heartbeat",
    "nev_ingest_worker_last_commit_timestamp_seconds": "last_commit",
    "nev_ingest_worker_backlog_frames": "backlog",
}


def worker_gauges(families: Iterable[Metric]) -> dict[str, dict[str, float]]:
    """The readiness gauges of each worker, by pid, from ``families`` as merged from the
    multi-process files (``MetricFiles.gauges``)."""
    out: dict[str, dict[str, float]] = {}
    for family in families:
        key = WORKER_GAUGES.get(family.name)
        if key is None:
            continue
        for sample in family.samples:
            out.setdefault(sample.labels.get("pid", "self"), {})[key] = sample.value
    return out


class MetricsServer:
    """A small threaded HTTP server: ``/metrics``, ``/healthz`` and ``/readyz``.

    ``/healthz`` answers 200 while the serving process is alive and its ``alive`` check passes;
    ``/readyz`` answers 200 or 503 with a JSON body saying why (from ``ready``).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        registry: CollectorRegistry,
        ready: Readiness,
        alive: Callable[[], bool] = lambda: True,
    ) -> None:
        self._registry = registry
        self._ready = ready
        self._alive = alive
        handler = self._handler_class()
        self._server = http.server.ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-http", daemon=True
        )

    @property
    def port(self) -> int:
        """The bound port (useful when asked for port 0)."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler_class(self) -> type[http.server.BaseHTTPRequestHandler]:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                try:
                    if path == "/metrics":
                        encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                        self._send(200, encoder(outer._registry), content_type)
                    elif path == "/healthz":
                        ok = outer._alive()
                        self._send(200 if ok else 503, b"ok\n" if ok else b"not alive\n")
                    elif path == "/readyz":
                        ok, detail = outer._ready()
                        body = orjson.dumps({"ready": ok, **detail}, default=str) + b"\n"
                        self._send(200 if ok else 503, body, "application/json")
                    else:
                        self._send(404, b"try /metrics, /healthz or /readyz\n")
                except Exception:
                    # A scrape must never take the service down; say what broke and go on.
                    log.exception("metrics endpoint failed", extra={"path": path})
                    self._send(500, b"internal error, see the service log\n")

            def _send(
                self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8"
            ) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                # Scrapes every 15 s would flood the JSON log; errors are logged above.
                return

        return Handler
