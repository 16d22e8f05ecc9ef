"""The simulated incidents of the charger and pack kinds are real for the default rules: the
demo's world, decoded by the real decoders and run through alerts/default_rules.toml, opens
the connector over-temperature alert on the hot connector and the pack over-temperature and
cell-spread alerts on the pack with a shorted cell - nothing on any other connector or pack -
and the piles with incidents report in the charger profile (fault codes, power, temperature),
never by T/CEC pushes. The demo's row counts pick its own run's entities."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import replace
from typing import Any

import pytest

from alerts import RuleEngine, RuleSet
from devtools.demo.kinds import run_patterns
from devtools.sim import plans
from devtools.sim.chargers import is_tcec_pile
from devtools.sim.fleet import FleetOptions
from devtools.sim.world import world_messages
from ingest.decoders.battery import decode_pack_rows
from ingest.decoders.charger import decode_charger_rows
from ingest.decoders.errors import FrameError
from ingest.decoders.fast import decode_rows

pytestmark = pytest.mark.unit

# The demo's shape at a tenth of its size: 10 simulated minutes at 10 s.
DEMO = FleetOptions(vehicles=300, chargers=20, packs=40, minutes=10, end_ms=1_782_878_400_000)


@pytest.fixture(scope="module")
def decoded() -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = defaultdict(list)
    for m in world_messages(DEMO):
        if m.topic not in ("charger", "battery"):
            continue
        decoder = decode_charger_rows if m.topic == "charger" else decode_pack_rows
        try:
            out[m.topic].append(decoder(m.value))
        except FrameError:
            continue  # corrupted on purpose
    return out


def _raised(kind: str, frames: list[Any]) -> set[tuple[str, str]]:
    engine = RuleEngine(RuleSet.default(), entity_kind=kind)
    changes = engine.evaluate(frames)
    # The engine's safety net skips a frame that raises, in silence: every frame was judged.
    assert engine.take_failures() == []
    return {(c.alert.rule_id, c.alert.entity_id) for c in changes if c.type == "raised"}


def test_the_hot_connector_opens_the_over_temperature_alert_and_no_other_connector_does(
    decoded: dict[str, list[Any]],
) -> None:
    tag = plans.tag_of(DEMO.vin_prefix)
    hot = f"{plans.operator_of(1, DEMO.chargers, tag)}:"
    hot += plans.connector_id_of(1, 0, DEMO.chargers, tag)
    assert _raised("charger", decoded["charger"]) == {("connector_over_temp", hot)}


def test_the_shorted_pack_opens_over_temperature_and_spread_alerts_and_no_other_pack_does(
    decoded: dict[str, list[Any]],
) -> None:
    k = plans.hot_pack(DEMO)
    assert k is not None
    code = plans.standalone_pack_code(DEMO, k)
    raised = _raised("battery", decoded["battery"])
    assert {entity for _, entity in raised} == {code}
    assert {rule for rule, _ in raised} >= {"pack_max_temp_high", "pack_cell_voltage_spread"}
    assert "pack_thermal_runaway" not in {rule for rule, _ in raised}  # 0.3 °C/s, not 1


def test_piles_with_incidents_report_in_the_profile_with_fault_codes_and_power(
    decoded: dict[str, list[Any]],
) -> None:
    many = FleetOptions(chargers=400, tcec_share=1.0)
    assert not is_tcec_pile(many, 0) and not is_tcec_pile(many, 1)
    assert all(is_tcec_pile(many, pile) for pile in range(2, 400))
    tag = plans.tag_of(DEMO.vin_prefix)
    faulty = plans.connector_id_of(0, 1, DEMO.chargers, tag)
    session = plans.connector_id_of(0, 0, DEMO.chargers, tag)
    faults = {f.connector_id for rows in decoded["charger"] for f in rows.faults}
    powered = {r.connector_id for rows in decoded["charger"] for r in rows.telemetry if r.power_kw}
    assert faults == {faulty}
    assert session in powered


def _like(pattern: str, value: str) -> bool:
    """SQL LIKE (``%``, ``_``; the patterns have no escapes)."""
    rx = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, value) is not None


def test_the_demo_counts_the_entities_of_its_own_run_only() -> None:
    def ids(o: FleetOptions) -> dict[str, set[str]]:
        out: dict[str, set[str]] = defaultdict(set)
        for m in world_messages(o):
            if m.topic == "tcec":
                continue  # the same operators as the profile's piles
            decoder: Any = {"vehicle": decode_rows, "charger": decode_charger_rows}.get(m.topic)
            try:
                rows: Any = (decoder or decode_pack_rows)(m.value)
            except FrameError:
                continue
            out[m.topic].add(
                rows.vin if m.topic == "vehicle"
                else rows.operator_id if m.topic == "charger"
                else rows.pack_code
            )  # fmt: skip
        return out

    small = FleetOptions(vehicles=40, chargers=4, packs=30, minutes=3, end_ms=DEMO.end_ms)
    this, other = small, replace(small, vin_prefix="LDM0001")
    mine, theirs = run_patterns(this), run_patterns(other)
    for topic, entities in ids(this).items():
        kind = "battery" if topic == "battery" else topic
        assert entities and all(any(_like(p, e) for p in mine[kind]) for e in entities)
        assert not any(_like(p, e) for p in theirs[kind] for e in entities), kind
