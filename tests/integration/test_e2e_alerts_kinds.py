"""Alerts of the new entity kinds end to end, with the shipped default rules: a charging
connector that overheats (charger profile frames) and a standalone pack that overheats (pack
profile frames) go through Kafka and ``nev-ingest run``; each raises one alert in ``alerts``
with entity kind charger / battery and the entity id of the design (``operator:connector``,
the pack code), published on the alerts topic, and cleared when the temperature falls back.
A cool connector and a cool pack next to them raise nothing."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from tests.integration import pipeline_support as ps
from tests.integration.e2e_support import consume, fetch
from tests.integration.kinds_support import Out
from tests.integration.pipeline_support import PipelineEnv
from tests.kinds_traffic import (
    OPERATOR,
    VIN,
    charger_realtime,
    connector,
    pack_code,
    pack_realtime,
    received,
)

pytestmark = pytest.mark.integration

HOT_GUN, COOL_GUN = connector(21), connector(22)
HOT_PACK, COOL_PACK = pack_code(201), pack_code(202)
PERIOD_MS = 10_000
# The default rules: connector_over_temp fires at >= 90 °C for 2 frames (opened at the second)
# and clears once 10 °C past it (< 80 °C); pack_max_temp_high at >= 60 °C for 2 frames,
# clearing below 55 °C. The temperatures
# rise by 0.5 °C/s at most, so the pack's GB 38031 rate condition (>= 1 °C/s) stays out.
GUN_TEMPS = (40, 60, 80, 88, 91, 95, 96, 93, 85, 79, 70, 60)
PACK_TEMPS = (40, 45, 50, 55, 60, 62, 64, 63, 58, 55, 50, 45)


def _first_hot_run(temps: tuple[int, ...], limit: int, frames: int) -> int:
    """Index of the frame where ``frames`` consecutive values >= ``limit`` are complete."""
    run = 0
    for i, t in enumerate(temps):
        run = run + 1 if t >= limit else 0
        if run == frames:
            return i
    raise AssertionError("the test temperatures never hold long enough")


def traffic(env: PipelineEnv, t0: int) -> list[Out]:
    out = []
    for i, (gun_c, pack_c) in enumerate(zip(GUN_TEMPS, PACK_TEMPS, strict=True)):
        ms = t0 + i * PERIOD_MS
        for gun, temp in ((HOT_GUN, gun_c), (COOL_GUN, 40)):
            # Output below the BMS demand (410 V / 130 A), SOC steady: only the temperature
            # can fire a charger rule.
            raw = charger_realtime(
                ms, gun, output=(400.0, 125.5, 50.2, round(1.0 + 0.14 * i, 3), temp),
                vehicle=(VIN, 55),
            )  # fmt: skip
            out.append(Out(env.charger, f"{OPERATOR}:{gun}".encode(), raw, received(ms + 200)))
        for code, temp in ((HOT_PACK, pack_c), (COOL_PACK, 30)):
            raw = pack_realtime(
                ms, code, soc=60, cells=(3.301, 3.305), probes=(temp - 1, temp), site="SWAP-ALRT"
            )
            out.append(Out(env.battery, code.encode(), raw, received(ms + 200)))
    return out


async def test_connector_and_pack_over_temperature_raise_and_clear(env: PipelineEnv) -> None:
    t0 = (time.time_ns() // 10**9 - 10 * 60) * 1000

    def at(i: int) -> datetime:
        return datetime.fromtimestamp((t0 + i * PERIOD_MS) / 1000, UTC)

    records = traffic(env, t0)
    async with ps.serving(env, "alerts-kinds"):
        await consume(env, records)
        # raised + cleared of each of the two alerts
        published = await ps.read_topic(env.kafka, env.alerts, expect=4)

    gun_id = f"{OPERATOR}:{HOT_GUN}"
    gun_open = _first_hot_run(GUN_TEMPS, 90, 2)
    gun_clear = next(i for i, t in enumerate(GUN_TEMPS) if i > gun_open and t < 80)
    pack_open = _first_hot_run(PACK_TEMPS, 60, 2)
    pack_clear = next(i for i, t in enumerate(PACK_TEMPS) if i > pack_open and t < 55)

    # One episode each, opened and cleared at frame time; the cool ones raised nothing.
    rows = await fetch(
        env.dsn,
        "SELECT entity_kind, entity_id, rule_id, opened_at, cleared_at, clear_reason, "
        "peak_value FROM {s}.alerts ORDER BY entity_kind",
    )
    assert rows == [
        ("battery", HOT_PACK, "pack_max_temp_high", at(pack_open), at(pack_clear), "condition",
         max(PACK_TEMPS)),
        ("charger", gun_id, "connector_over_temp", at(gun_open), at(gun_clear), "condition",
         max(GUN_TEMPS)),
    ]  # fmt: skip

    changes: list[tuple[Any, ...]] = []
    for r in published:
        body = orjson.loads(r.value)
        assert r.key == body["entity_id"].encode(), "keyed by the entity"
        changes.append((body["type"], body["entity_kind"], body["entity_id"], body["rule_id"]))
    assert sorted(changes) == sorted(
        [
            ("raised", "charger", gun_id, "connector_over_temp"),
            ("cleared", "charger", gun_id, "connector_over_temp"),
            ("raised", "battery", HOT_PACK, "pack_max_temp_high"),
            ("cleared", "battery", HOT_PACK, "pack_max_temp_high"),
        ]
    )
