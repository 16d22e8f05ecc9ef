"""``nev-ingest gateway``: the platform's GB/T 32960 front door over TCP (docs/gateway.md).

Vehicles' terminals and enterprise platforms (and charging piles, battery packs on their own
listeners) connect; every frame is checked, produced to its kind's raw topic (acks=all) and
answered as the standard requires, only after Kafka acknowledged it.

Modules: ``answers`` and ``session`` (pure: the answers and the per-connection state
machine), ``kinds`` (identity and record key per kind), ``accounts`` (platform accounts,
scrypt), ``limits`` (rates, budget, log gate), ``producer`` (the ordered path to Kafka),
``connection`` (the asyncio protocol), ``server`` (listeners, lifecycle), ``metrics``.
One layer above the pipeline (devtools/layers.py): the T/CEC receiver (``tcec/``) uses the
pipeline's Kafka wire contract and producer; the TCP side imports decoders, config and wiring.
"""

from __future__ import annotations

from ingest.gateway.metrics import GatewayMetrics
from ingest.gateway.server import ExtraServer, Gateway

__all__ = ["ExtraServer", "Gateway", "GatewayMetrics"]
