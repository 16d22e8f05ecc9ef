"""``nev-ingest demo --via-gateway`` starts its gateway with no per-address connection share:
every simulated vehicle connects from 127.0.0.1 (3,000 by default, up to 100,000), so the
default share (1,000) refused all but the first thousand."""

from __future__ import annotations

import pytest

from devtools.demo.gateway import gateway_env
from ingest.config.load import load_settings

pytestmark = pytest.mark.unit


def test_the_demo_gateway_holds_every_vehicle_from_one_address() -> None:
    env = gateway_env({"NEV_KAFKA_TOPIC_VEHICLE": "demo.vehicle"})
    gateway = load_settings(environ=env).gateway
    # At max_connections or above the share is off: the process-wide limit decides.
    assert gateway.max_connections_per_peer >= gateway.max_connections >= 100_000
    assert env["NEV_KAFKA_TOPIC_VEHICLE"] == "demo.vehicle"  # the service's settings kept
