"""The gateway's Prometheus metrics (``nev_gateway_*``), on an injectable registry.

Labels are bounded: the listener kind, a command name (``session.command_name``), a result,
a refusal reason. Never a VIN, a peer address or an account (those are in the logs).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["GatewayMetrics"]

# Frame-in to Kafka-ack: ~1 ms on a healthy local broker with linger, seconds in an outage.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class GatewayMetrics:
    """Every metric of one gateway process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.connections = Gauge(
            "nev_gateway_connections", "Open connections.", ["kind"], registry=r
        )
        self.accepted = Counter(
            "nev_gateway_connections_accepted", "Connections accepted.", ["kind"], registry=r
        )
        self.closed = Counter(
            "nev_gateway_connections_closed",
            "Connections closed, by why (peer, shutdown, or a limit's reason).",
            ["kind", "why"],
            registry=r,
        )
        self.logins = Counter(
            "nev_gateway_logins",
            "Logins (vehicle/device 0x01, platform 0x05), by result.",
            ["kind", "login", "result"],
            registry=r,
        )
        self.frames = Counter(
            "nev_gateway_frames_received",
            "Whole frames (good start, length, BCC) received, by command.",
            ["kind", "command"],
            registry=r,
        )
        self.produced = Counter(
            "nev_gateway_frames_produced",
            "Frames acknowledged by Kafka (acks=all).",
            ["kind"],
            registry=r,
        )
        self.answers = Counter(
            "nev_gateway_answers",
            "Answers sent, by command and response flag (success / error).",
            ["kind", "command", "result"],
            registry=r,
        )
        self.received_bytes = Counter(
            "nev_gateway_received_bytes", "Bytes read from sockets.", ["kind"], registry=r
        )
        self.skipped_bytes = Counter(
            "nev_gateway_skipped_bytes",
            "Bytes outside any good frame (garbage, bad length or BCC), by the framer's reason.",
            ["kind", "reason"],
            registry=r,
        )
        self.refused = Counter(
            "nev_gateway_refused",
            "Frames, connections and reads refused or throttled, by reason.",
            ["kind", "reason"],
            registry=r,
        )
        self.dead_letters = Counter(
            "nev_gateway_dead_letters",
            "Refused frames produced to the dead-letter topic, by reason.",
            ["kind", "reason"],
            registry=r,
        )
        self.produce_latency = Histogram(
            "nev_gateway_produce_latency_seconds",
            "Frame read to Kafka acknowledgement.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.produce_retries = Counter(
            "nev_gateway_produce_retries",
            "Frames sent to Kafka again after a retriable failure.",
            registry=r,
        )
        self.producer_replacements = Counter(
            "nev_gateway_producer_replacements",
            "Kafka producers of the TCP listeners replaced after a batch failed once numbered "
            "(a refusal or an expiry left a gap in a partition's sequence); the frames behind "
            "it go again with the new one.",
            registry=r,
        )
        self.backpressure = Counter(
            "nev_gateway_backpressure_seconds",
            "Time the sockets were not read because the in-flight budget was full.",
            registry=r,
        )
        self.in_flight_frames = Gauge(
            "nev_gateway_in_flight_frames", "Frames waiting for Kafka.", registry=r
        )
        self.in_flight_bytes = Gauge(
            "nev_gateway_in_flight_bytes", "Bytes of the frames waiting for Kafka.", registry=r
        )
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.kafka_connected = Gauge(
            "nev_gateway_kafka_connected",
            "0 while frames wait and Kafka acknowledged none for 5 s, else 1.",
            registry=r,
        )

    def child(self, metric: Counter, *labels: str) -> Any:
        """``metric.labels(*labels)``, cached: ``labels`` takes a lock and builds a key on every
        call, and the frame counters are bumped once per frame."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found
