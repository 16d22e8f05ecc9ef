"""The ingest pipeline: Kafka consumer group -> decode -> batched transactional writes -> commit.

``supervisor`` runs N worker processes; each ``worker`` owns one aiokafka consumer in the group,
builds ``batch``-es, writes them through a ``sink`` (storage writer + rule engine in one
transaction with the Kafka offsets) and sends bad input to the dead-letter topic (``wire``).

The names below are what the other layers build on: the database side's contract (``Sink`` and
what it returns) and a worker's options. The service itself is started through its modules
(``process.worker_process``, ``supervisor.Supervisor``), imported where they run, so that
importing one light module (``wire``) does not load Kafka and the metrics server.
"""

from __future__ import annotations

from ingest.pipeline.options import WorkerOptions
from ingest.pipeline.sink import AlertMessage, BeforeCommit, Sink, SinkResult, TransientSinkError

__all__ = [
    "AlertMessage",
    "BeforeCommit",
    "Sink",
    "SinkResult",
    "TransientSinkError",
    "WorkerOptions",
]
