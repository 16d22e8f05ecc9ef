"""The open-alerts gauge and the alert-changes counter carry the entity kind: ``nev-ingest run``
with one rule of each kind (vehicle, charger, battery) and a device of each kind in breach shows
one open alert per kind, each labelled with its rule's kind, so an operator sees the chargers'
open alerts apart from the packs' and the vehicles' without knowing every rule id; the alerting
rule of a kind with nothing open shows 0 under its own kind. Each raised alert is counted in
``nev_ingest_alerts_total`` under its kind too."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.integration import pipeline_support as ps
from tests.integration.e2e_support import consume
from tests.integration.kinds_support import Out
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.traffic import HOT_PACK_RULES, hot_frames
from tests.kinds_traffic import (
    OPERATOR,
    charger_realtime,
    connector,
    pack_code,
    pack_realtime,
    received,
)

pytestmark = pytest.mark.integration

GAUGE = "nev_ingest_alerts_open"
COUNTER = "nev_ingest_alerts_total"
RULES = (
    HOT_PACK_RULES  # vehicle: test_hot_pack, max_temp_c >= 50
    + """
[[rule]]
id = "test_hot_gun"
entity = "charger"
kind = "threshold"
severity = "major"
title = "Connector hotter than 90 °C (test rule)"
field = "connector_temp_c"
op = ">="
value = 90

[[rule]]
id = "test_hot_cell"
entity = "battery"
kind = "threshold"
severity = "major"
title = "Standalone pack hotter than 60 °C (test rule)"
field = "max_temp_c"
op = ">="
value = 60

[[rule]]
id = "test_low_cell"
entity = "battery"
kind = "threshold"
severity = "warning"
title = "Standalone pack's cell below 2.5 V (test rule: stays closed)"
field = "min_cell_voltage_v"
op = "<="
value = 2.5
"""
)
GUN, PACK = connector(31), pack_code(301)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def traffic(env: PipelineEnv, t0: int) -> list[Out]:
    """A hot vehicle, a hot connector and a hot standalone pack: two frames each in breach."""
    out = [
        Out(env.topic, m.key, m.value, received(m.t_ms + 200))
        for m in hot_frames(t0, [40.0, 70.0, 70.0])
    ]
    for i in range(3):
        ms = t0 + i * 10_000
        gun = charger_realtime(ms, GUN, output=(400.0, 125.5, 50.2, 1.0 + i, 95))
        out.append(Out(env.charger, f"{OPERATOR}:{GUN}".encode(), gun, received(ms + 200)))
        pack = pack_realtime(ms, PACK, soc=60, cells=(3.301, 3.305), probes=(64, 65), site="K")
        out.append(Out(env.battery, PACK.encode(), pack, received(ms + 200)))
    return out


def open_gauge(svc: ps.Service) -> dict[tuple[str, str, str], float]:
    """(kind, rule, severity) -> the gauge's value, as /metrics shows it."""
    got = {}
    for key, value in svc.metrics().items():
        if key.partition("{")[0] == GAUGE:
            labels = dict(_LABEL.findall(key))
            got[(labels.get("kind", ""), labels["rule"], labels["severity"])] = value
    return got


def raised_counter(svc: ps.Service) -> dict[tuple[str, str, str], float]:
    """(kind, rule, severity) -> alerts raised, as /metrics shows ``nev_ingest_alerts_total``."""
    got = {}
    for key, value in svc.metrics().items():
        if key.partition("{")[0] == COUNTER:
            labels = dict(_LABEL.findall(key))
            if labels["change"] == "raised":
                got[(labels.get("kind", ""), labels["rule"], labels["severity"])] = value
    return got


async def test_open_and_raised_alerts_are_counted_under_their_rules_entity_kind(
    env: PipelineEnv, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    t0 = time.time_ns() // 1_000_000 - 600_000
    expected = {
        ("vehicle", "test_hot_pack", "major"): 1.0,
        ("charger", "test_hot_gun", "major"): 1.0,
        ("battery", "test_hot_cell", "major"): 1.0,
        ("battery", "test_low_cell", "warning"): 0.0,
    }
    async with ps.serving(env, "open-kinds", NEV_ALERTS_RULES_FILE=str(rules)) as svc:
        await consume(env, traffic(env, t0))

        async def shown() -> dict[tuple[str, str, str], float]:
            got = open_gauge(svc)
            return got if got == expected else {}

        try:
            await ps.until(shown, timeout_s=30, what="one open alert of each kind on the gauge")
        except AssertionError:
            raise AssertionError(f"{GAUGE}: {open_gauge(svc)}\n{svc.tail()}") from None
        # The sum by kind an operator's query makes.
        assert svc.metric(GAUGE, kind="charger") == 1.0
        assert svc.metric(GAUGE, kind="battery") == 1.0

        # The changes counter (counted as the alerts are published, after the commit): each
        # kind's raised alert under its kind, so a rate by kind needs no rule ids either.
        raised = {key: n for key, n in expected.items() if n}

        async def counted() -> dict[tuple[str, str, str], float]:
            got = raised_counter(svc)
            return got if got == raised else {}

        try:
            await ps.until(counted, timeout_s=30, what="one raised alert of each kind counted")
        except AssertionError:
            raise AssertionError(f"{COUNTER}: {raised_counter(svc)}\n{svc.tail()}") from None
        assert svc.metric(COUNTER, kind="charger", change="raised") == 1.0
