"""The gateway's start check (``checks.produced_topics``, and ``topic_sizes`` from it) covers
every topic the gateway produces to, read from the producing code itself: each listener's
``Gateway.topics`` entry, its ``dlq_topic`` (refused frames of a GB/T 32960 connection), the
T/CEC receiver's ``TcecParams.topic``; and no topic it never writes. The command and
``topic_sizes`` used to build the list each their own way: the command also required the
dead-letter topic of a gateway with only the T/CEC receiver on, which never writes there."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from ingest.config import KafkaSettings, Settings
from ingest.config.gateway_settings import GatewaySettings
from ingest.config.tcec_settings import TcecSettings
from ingest.gateway import Gateway, GatewayMetrics
from ingest.gateway.checks import produced_topics, topic_sizes
from ingest.gateway.kinds import KINDS
from ingest.gateway.tcec import params_from_settings

pytestmark = pytest.mark.unit

_SECRETS = orjson.dumps(
    {
        "MA01H3BQ2": {
            "OperatorSecret": "operator-secret",
            "DataSecret": "0123456789abcdef",
            "DataSecretIV": "fedcba9876543210",
            "SigSecret": "sig-secret",
        }
    }
).decode()


def _settings(listeners: tuple[str, ...]) -> Settings:
    kafka = KafkaSettings(
        topic_vehicle="t.vehicle",
        topic_charger="t.charger",
        topic_battery="t.battery",
        topic_tcec="t.tcec",
        topic_dlq="t.dlq",
    )
    on = {kind: "127.0.0.1:0" if kind in listeners else "" for kind in KINDS}
    gateway = dataclasses.replace(
        GatewaySettings(),
        listen_vehicle=on["vehicle"],
        listen_charger=on["charger"],
        listen_battery=on["battery"],
    )
    tcec = TcecSettings(
        listen="127.0.0.1:0" if "tcec" in listeners else "", operator_secrets=_SECRETS
    )
    return Settings(kafka=kafka, gateway=gateway, tcec=tcec)


def _written(settings: Settings) -> set[str]:
    """The topics the producing code writes to with these settings."""
    gw = Gateway(settings, metrics=GatewayMetrics())
    listening = [kind for kind in KINDS if getattr(settings.gateway, f"listen_{kind}")]
    out = {gw.topics[kind] for kind in listening}
    if listening:  # a GB/T 32960 connection's refused frames (connection.py)
        out.add(gw.dlq_topic)
    params = params_from_settings(settings, gateway_id="test")
    if params is not None:
        out.add(params.topic)
    return out


@pytest.mark.parametrize(
    "listeners",
    [
        ("vehicle",),
        ("charger", "battery"),
        ("vehicle", "charger", "battery", "tcec"),
        ("tcec",),
        ("battery", "tcec"),
    ],
)
def test_the_start_check_covers_every_topic_the_gateway_produces_to(
    listeners: tuple[str, ...],
) -> None:
    settings = _settings(listeners)
    written = _written(settings)
    assert set(produced_topics(settings)) == written
    assert set(topic_sizes(settings)) == written


def test_each_topic_is_named_by_its_setting() -> None:
    settings = _settings(("vehicle", "charger", "battery", "tcec"))
    kafka = settings.kafka
    for topic, key in produced_topics(settings).items():
        assert getattr(kafka, key.removeprefix("kafka.")) == topic
