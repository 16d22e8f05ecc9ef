"""The Ops dashboard: is the pipeline keeping up, what does it reject, is it healthy.

Every expression uses only series ``nev-ingest run`` exposes (docs/operations.md, "Metrics"),
or, in the gateway row, series ``nev-ingest gateway run`` exposes (docs/gateway.md, "Metrics,
health"); tests/integration/test_prometheus_scrape.py evaluates each against a real Prometheus
scraping the service and a gateway, so a renamed metric fails there, not on an operator's
screen."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models.dashboard import DashboardCursorSync

from devtools.dashboards.panels import (
    GATEWAY_JOB,
    JOB,
    prom,
    prom_stat,
    prom_timeseries,
    rate_by,
)

__all__ = ["UID", "build"]

UID = "nev-ingest-ops"
RATE = "$__rate_interval"


def _throughput(d: dashboard.Dashboard) -> dashboard.Dashboard:
    return (
        d.with_row(dashboard.Row("Throughput"))
        .with_panel(
            prom_timeseries(
                "Frames written by kind",
                "Frames whose rows are committed, per second, by entity kind.",
                [
                    prom(
                        rate_by("kind", "nev_ingest_frames_written_total"),
                        "{{kind}}",
                    )
                ],
                unit="cps",
                stacked=True,
            )
        )
        .with_panel(
            prom_timeseries(
                "Frames consumed by topic",
                "Frames fetched from Kafka (counted when their batch commits), per second.",
                [
                    prom(
                        rate_by("topic", "nev_ingest_frames_consumed_total"),
                        "{{topic}}",
                    )
                ],
                unit="cps",
            )
        )
        .with_panel(
            prom_timeseries(
                "Decode errors and dead letters by reason",
                "Frames sent to the dead-letter topic per second, by topic and reason "
                "(docs/kafka.md lists the reasons; db_rejected: refused by the database).",
                [
                    prom(
                        f"sum by (topic, reason) "
                        f"(rate(nev_ingest_frames_dead_lettered_total{{{JOB}}}[{RATE}]))",
                        "{{topic}} {{reason}}",
                    )
                ],
                unit="cps",
            )
        )
        .with_panel(
            prom_timeseries(
                "End-to-end latency p99 by kind",
                "Gateway receive time to database commit; the goal is p99 <= 2 s.",
                [
                    prom(
                        "histogram_quantile(0.99, sum by (kind, le) "
                        f"(rate(nev_ingest_end_to_end_latency_seconds_bucket{{{JOB}}}[{RATE}])))",
                        "{{kind}}",
                    )
                ],
                unit="s",
            )
        )
    )


def _lag(d: dashboard.Dashboard) -> dashboard.Dashboard:
    return (
        d.with_row(dashboard.Row("Consumer lag"))
        .with_panel(
            prom_timeseries(
                "Lag in offsets per partition",
                "Partition end offset minus the committed offset (kafka_exporter's names).",
                [
                    prom(
                        f"max by (topic, partition) (kafka_consumergroup_lag{{{JOB}}})",
                        "{{topic}}/{{partition}}",
                    )
                ],
            )
        )
        .with_panel(
            prom_timeseries(
                "Lag in seconds per partition",
                "Age of the oldest consumed-but-uncommitted frame (or time since the last "
                "commit while nothing of the lag is fetched). Alert: NevIngestLagGrowing.",
                [
                    prom(
                        f"max by (topic, partition) (kafka_consumergroup_lag_seconds{{{JOB}}})",
                        "{{topic}}/{{partition}}",
                    )
                ],
                unit="s",
            )
        )
    )


def _writes(d: dashboard.Dashboard) -> dashboard.Dashboard:
    return (
        d.with_row(dashboard.Row("Database writes"))
        .with_panel(
            prom_timeseries(
                "Batch write latency",
                "Write + commit time of one batch (rows, latest state, alerts, offsets), "
                "retries included.",
                [
                    prom(
                        "histogram_quantile(0.5, sum by (le) "
                        f"(rate(nev_ingest_batch_write_duration_seconds_bucket{{{JOB}}}[{RATE}])))",
                        "p50",
                    ),
                    prom(
                        "histogram_quantile(0.99, sum by (le) "
                        f"(rate(nev_ingest_batch_write_duration_seconds_bucket{{{JOB}}}[{RATE}])))",
                        "p99",
                        "B",
                    ),
                ],
                unit="s",
                width=8,
            )
        )
        .with_panel(
            prom_timeseries(
                "Batch size",
                "Frames per written batch: bigger batches amortise the per-transaction cost.",
                [
                    prom(
                        f"sum(rate(nev_ingest_batch_size_frames_sum{{{JOB}}}[{RATE}])) / "
                        f"sum(rate(nev_ingest_batch_size_frames_count{{{JOB}}}[{RATE}]))",
                        "mean",
                    )
                ],
                width=8,
            )
        )
        .with_panel(
            prom_timeseries(
                "Write rate per shard",
                "Frames committed per second, by database shard (storage.shards; one "
                "database = shard 0).",
                [
                    prom(
                        rate_by("shard", "nev_ingest_shard_frames_written_total"),
                        "shard {{shard}}",
                    )
                ],
                unit="cps",
                width=8,
            )
        )
        .with_panel(
            prom_timeseries(
                "Retries and write errors",
                "Retries after transient errors by stage, and failed writes by shard. "
                "Alert: NevIngestWriteErrors.",
                [
                    prom(
                        rate_by("stage", "nev_ingest_write_retries_total"),
                        "retry {{stage}}",
                    ),
                    prom(
                        rate_by("shard", "nev_ingest_shard_write_errors_total"),
                        "errors shard {{shard}}",
                        "B",
                    ),
                ],
                unit="ops",
            )
        )
        .with_panel(
            prom_timeseries(
                "Database pool",
                "Connections of the workers' pools: in use, idle, and the configured maximum.",
                [prom(f"sum by (state) (nev_ingest_db_pool_connections{{{JOB}}})", "{{state}}")],
            )
        )
    )


def _health(d: dashboard.Dashboard) -> dashboard.Dashboard:
    return (
        d.with_row(dashboard.Row("Health"))
        .with_panel(
            prom_stat(
                "Workers up",
                "Worker processes running (of those configured). Alert: NevIngestWorkersMissing.",
                prom(f"sum(nev_ingest_workers_alive{{{JOB}}})"),
            )
        )
        .with_panel(
            prom_stat(
                "Workers wanted",
                "pipeline.workers summed over the hosts.",
                prom(f"sum(nev_ingest_workers_wanted{{{JOB}}})"),
            )
        )
        .with_panel(
            prom_stat(
                "Worker restarts (1h)",
                "Workers restarted after a crash. Alert: NevIngestWorkerRestarts.",
                prom(f"sum(increase(nev_ingest_worker_restarts_total{{{JOB}}}[1h]))"),
            )
        )
        .with_panel(
            prom_stat(
                "Paused partitions",
                "Partitions paused by backpressure (database slow or down).",
                prom(f"sum(nev_ingest_paused_partitions{{{JOB}}})"),
            )
        )
        .with_panel(
            prom_stat(
                "Assigned partitions",
                "Partitions owned by the workers of every host.",
                prom(f"sum(nev_ingest_assigned_partitions{{{JOB}}})"),
            )
        )
        .with_panel(
            prom_stat(
                "Database reachable",
                "1 when every worker's last database write or ping worked.",
                prom(f"min(nev_ingest_worker_db_connected{{{JOB}}})"),
            )
        )
        .with_panel(
            prom_timeseries(
                "Paused partitions by shard, restoring partitions",
                "Partitions held because their shard fails (alert: NevIngestShardDown), and "
                "partitions held while a new assignment's offsets and alert state load "
                "(normal after a rebalance or restart; minutes for a large restore).",
                [
                    prom(
                        f"sum by (shard) (nev_ingest_shard_paused_partitions{{{JOB}}})",
                        "shard {{shard}}",
                    ),
                    prom(f"sum(nev_ingest_restoring_partitions{{{JOB}}})", "restoring"),
                ],
                width=8,
            )
        )
        .with_panel(
            prom_timeseries(
                "Frames in flight",
                "Consumed, not yet committed (bounded by pipeline.max_in_flight_frames).",
                [prom(f"sum(nev_ingest_in_flight_frames{{{JOB}}})", "in flight")],
                width=8,
            )
        )
        .with_panel(
            prom_timeseries(
                "Bytes in flight",
                "The in-flight records: values, keys, headers (bounded per worker by "
                "pipeline.max_in_flight_bytes; their decoded rows take 3-26x more).",
                [prom(f"sum(nev_ingest_in_flight_bytes{{{JOB}}})", "in flight")],
                unit="bytes",
                width=8,
            )
        )
        .with_panel(
            prom_timeseries(
                "Open alerts by kind and severity",
                "Alerts the rule engines hold open, by entity kind (vehicle, charger, battery) "
                "and severity; critical ones page (NevIngestCriticalAlert).",
                [
                    prom(
                        f"sum by (kind, severity) (nev_ingest_alerts_open{{{JOB}}})",
                        "{{kind}} {{severity}}",
                    )
                ],
                width=8,
            )
        )
        .with_panel(
            prom_stat(
                "Damaged metric files",
                "Files in metrics.multiproc_dir /metrics leaves out as damaged (their counts "
                "missing: the counters they held went down once, a reset to Prometheus); 0 "
                "normally. Alert: NevIngestMetricFilesUnreadable.",
                prom(f"sum(nev_ingest_metric_files_unreadable{{{JOB}}})"),
                width=8,  # the stats' line is full (six of 4): beside the last chart
            )
        )
        .with_panel(
            prom_timeseries(
                "Where the workers wait",
                "Share of a worker's time its consume loop waited idle: nothing to run, or no "
                "core (the event loop's own CPU meanwhile left out), by cause: poll (Kafka's "
                "fetch: the brokers, or nothing to fetch), room (in-flight bound or paused: the "
                "database is the bound), lane (between decode slices, the lanes' CPU left out: "
                "mostly waiting for a core), restore (stored offsets and refills after a "
                "rebalance). Low waits with a lag: the worker's CPU is the bound. "
                "docs/operations.md, Sizing and tuning.",
                [
                    prom(
                        f"{rate_by('cause', 'nev_ingest_worker_wait_seconds_total')}"
                        f" / scalar(sum(nev_ingest_workers_alive{{{JOB}}}))",
                        "{{cause}}",
                    )
                ],
                unit="percentunit",
                width=8,
            )
        )
    )


def _gateway(d: dashboard.Dashboard) -> dashboard.Dashboard:
    gw = GATEWAY_JOB
    return (
        d.with_row(dashboard.Row("Gateway"))
        .with_panel(
            prom_stat(
                "Gateways up",
                "Gateway processes answering scrapes. Alert: NevGatewayTargetDown.",
                prom(f"sum(up{{{gw}}})"),
                width=6,
            )
        )
        .with_panel(
            prom_stat(
                "Gateways acknowledged by Kafka",
                "1 when every gateway's frames are acknowledged (0: frames wait and none was "
                "acknowledged for 5 s; /readyz is 503). Alert: NevGatewayNotReady.",
                prom(f"min(nev_gateway_kafka_connected{{{gw}}})"),
                width=6,
            )
        )
        .with_panel(
            prom_stat(
                "Gateway frames in flight",
                "Frames read and waiting for Kafka's acknowledgement, over every gateway "
                "(bounded by gateway.max_in_flight_frames each).",
                prom(f"sum(nev_gateway_in_flight_frames{{{gw}}})"),
                width=6,
            )
        )
        .with_panel(
            prom_stat(
                "Gateway connections",
                "Open TCP connections over every gateway and listener.",
                prom(f"sum(nev_gateway_connections{{{gw}}})"),
                width=6,
            )
        )
        .with_panel(
            prom_timeseries(
                "Gateway connections by kind",
                "Open TCP connections by listener (vehicle, charger, battery), and the T/CEC "
                "receiver's HTTP connections (tcec), over every gateway.",
                [
                    prom(f"sum by (kind) (nev_gateway_connections{{{gw}}})", "{{kind}}"),
                    prom(f"sum(nev_gateway_tcec_connections{{{gw}}})", "tcec", "B"),
                ],
                width=8,
            )
        )
        .with_panel(
            prom_timeseries(
                "Gateway logins by result",
                "Logins per second: vehicle/device logins (0x01) and platform logins (0x05), "
                "ok or failed. Alert: NevGatewayLoginFailures.",
                [
                    prom(
                        rate_by("login, result", "nev_gateway_logins_total", gw),
                        "{{login}} {{result}}",
                    )
                ],
                unit="ops",
                width=8,
            )
        )
        .with_panel(
            prom_timeseries(
                "Gateway answers by result",
                "Answers sent per second, by response flag: success (0x01) or error (0x02).",
                [prom(rate_by("result", "nev_gateway_answers_total", gw), "{{result}}")],
                unit="ops",
                width=8,
            )
        )
        .with_panel(
            prom_timeseries(
                "Gateway frames received and produced",
                "Whole frames received, and frames Kafka acknowledged (acks=all), per second, "
                "by kind.",
                [
                    prom(
                        rate_by("kind", "nev_gateway_frames_received_total", gw),
                        "received {{kind}}",
                    ),
                    prom(
                        rate_by("kind", "nev_gateway_frames_produced_total", gw),
                        "produced {{kind}}",
                        "B",
                    ),
                ],
                unit="cps",
            )
        )
        .with_panel(
            prom_timeseries(
                "Gateway produce latency p99",
                "Frame read to Kafka acknowledgement (the device's answer waits for it), and "
                "the T/CEC receiver's push to acknowledgement. Alert: NevGatewayKafkaSlow.",
                [
                    prom(
                        "histogram_quantile(0.99, sum by (le) "
                        f"(rate(nev_gateway_produce_latency_seconds_bucket{{{gw}}}[{RATE}])))",
                        "GB/T 32960 p99",
                    ),
                    prom(
                        "histogram_quantile(0.99, sum by (le) (rate("
                        f"nev_gateway_tcec_produce_latency_seconds_bucket{{{gw}}}[{RATE}])))",
                        "T/CEC p99",
                        "B",
                    ),
                ],
                unit="s",
            )
        )
        .with_panel(
            prom_timeseries(
                "Gateway refusals by reason",
                "Frames, connections and reads refused, throttled or closed, per second, by "
                "kind and reason (docs/gateway.md). Alert: NevGatewayRefusalsHigh.",
                [
                    prom(
                        rate_by("kind, reason", "nev_gateway_refused_total", gw),
                        "{{kind}} {{reason}}",
                    )
                ],
                unit="ops",
                width=8,
            )
        )
        .with_panel(
            prom_timeseries(
                "Gateway backpressure",
                "Share of the time each gateway did not read its sockets because its in-flight "
                "budget was full (Kafka behind). Alert: NevGatewayBackpressure.",
                [
                    prom(
                        rate_by("instance", "nev_gateway_backpressure_seconds_total", gw),
                        "{{instance}}",
                    )
                ],
                unit="percentunit",
                width=8,
            )
        )
        .with_panel(
            prom_timeseries(
                "T/CEC requests by Ret",
                "Requests the T/CEC 102 receiver answered per second, by Ret (0 success, "
                "-1 busy, 4001-4004 refused, 500 system error: docs/gateway.md).",
                [prom(rate_by("ret", "nev_gateway_tcec_requests_total", gw), "Ret {{ret}}")],
                unit="ops",
                width=8,
            )
        )
    )


def build() -> dashboard.Dashboard:
    d = (
        dashboard.Dashboard("NEV ingest: Ops")
        .uid(UID)
        .tags(["nev-ingest"])
        .description(
            "Throughput, rejects, lag, writes and health of nev-ingest, and its TCP gateway "
            "(issue 15)."
        )
        .refresh("30s")
        .time("now-3h", "now")
        .timezone("browser")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .readonly()
    )
    return _gateway(_health(_writes(_lag(_throughput(d)))))
