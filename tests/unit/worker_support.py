"""A real ``Worker`` without Kafka clients, for unit tests of its steps (revoke, assignment,
decode slices) over a stand-in sink: the clients are never made, nothing reaches a broker."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from ingest.config import Settings
from ingest.pipeline.metrics import PipelineMetrics
from ingest.pipeline.process import worker_options
from ingest.pipeline.worker import Worker


def bare_worker(sink: Any, metrics: PipelineMetrics | None = None) -> Worker:
    """A worker of the default settings over ``sink`` (a stand-in, or None where the step
    under test does not reach it), its metrics in a registry of its own unless given."""
    return Worker(
        options=worker_options(Settings()),
        make_consumer=lambda: None,
        make_producer=lambda: None,
        sink=sink,
        decoders={},
        metrics=metrics if metrics is not None else PipelineMetrics(CollectorRegistry()),
    )
