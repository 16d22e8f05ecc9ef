"""The receiver's metrics, ``nev_gateway_tcec_*``, on a registry passed in."""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["TcecMetrics", "producer_replacements"]

# Produce to acknowledgement: a few ms on a healthy cluster, up to produce_timeout_s when not.
PRODUCE_BUCKETS: Final = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class TcecMetrics:
    """Requests by interface and Ret; the time Kafka took to acknowledge a push; connections
    open and refused."""

    def __init__(self, registry: CollectorRegistry) -> None:
        ns = "nev_gateway_tcec"
        # interface is one of the five routes' names; ret one of the standard's seven codes.
        self.requests = Counter(
            "requests",
            "Requests answered, by interface and the answer's Ret.",
            ["interface", "ret"],
            namespace=ns,
            registry=registry,
        )
        self.produce_latency = Histogram(
            "produce_latency_seconds",
            "Time from handing a push to the producer to Kafka's acknowledgement (acks=all).",
            buckets=PRODUCE_BUCKETS,
            namespace=ns,
            registry=registry,
        )
        self.in_flight = Gauge(
            "in_flight",
            "Pushes being handled (at most tcec.max_in_flight): mostly awaiting Kafka.",
            namespace=ns,
            registry=registry,
        )
        # As nev_gateway_connections{kind} of the TCP listeners: what the receiver holds of the
        # process's descriptors (tcec.max_connections), idle keep-alive connections included.
        self.connections = Gauge(
            "connections",
            "Open connections (admitted at accept, not yet closed; at most tcec.max_connections).",
            namespace=ns,
            registry=registry,
        )
        self.connections_refused = Counter(
            "connections_refused",
            "Connections refused, by reason: closed at accept (max_connections, "
            "max_connections_per_peer) or after a request aiohttp's parser refused: first "
            "bytes not HTTP at all, scanners (not_http), any other (bad_request).",
            ["reason"],
            namespace=ns,
            registry=registry,
        )
        self.tokens_issued = Counter(
            "tokens_issued", "Tokens issued by query_token.", namespace=ns, registry=registry
        )


def producer_replacements(registry: CollectorRegistry) -> Counter:
    """``nev_gateway_tcec_producer_replacements``: registered by the extra server that owns the
    receiver's producer pool (``ingest.gateway.tcec.extra``), not by ``TcecMetrics``, which
    ``start_tcec`` makes after the pool, with the sender only."""
    return Counter(
        "producer_replacements",
        "Kafka producers of the T/CEC 102 receiver replaced after a push failed once numbered "
        "(a refusal or an expiry left a gap in a partition's sequence).",
        namespace="nev_gateway_tcec",
        registry=registry,
    )
