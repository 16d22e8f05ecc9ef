"""The thermal-runaway scenario as real GB/T 32960 bytes: encoded by the protocol encoder,
decoded by the fast path (``decode_rows``), then the default rules: raised exactly once."""

from __future__ import annotations

from datetime import datetime

import pytest

from alerts import RuleEngine, RuleSet
from contract.clock import CHINA_TZ
from contract.rows import FrameRows
from devtools.sim.scenarios import thermal_runaway
from ingest.decoders.blocks.alarm import Alarm
from ingest.decoders.blocks.extremes import Extremes
from ingest.decoders.blocks.vehicle import Vehicle
from ingest.decoders.encoder import encode_frame
from ingest.decoders.fast import decode_rows
from ingest.decoders.frame import Frame

pytestmark = pytest.mark.unit


def encode_2016(fr: FrameRows) -> bytes:
    v = fr.vehicle
    assert v is not None and fr.ts_ms is not None
    blocks = (
        Vehicle(
            vehicle_state=v.vehicle_state, charging_state=v.charging_state, run_mode=v.run_mode,
            speed_kmh=v.speed_kmh, odometer_km=v.odometer_km, total_voltage_v=v.total_voltage_v,
            total_current_a=v.total_current_a, soc_pct=v.soc_pct, dcdc_state=v.dcdc_state,
            gear=v.gear, insulation_kohm=v.insulation_kohm, accel_pedal_pct=0, brake_pedal_pct=0,
        ),
        Extremes(
            max_cell_voltage_pack=1, max_cell_voltage_cell=1,
            max_cell_voltage_v=v.max_cell_voltage_v,
            min_cell_voltage_pack=1, min_cell_voltage_cell=2,
            min_cell_voltage_v=v.min_cell_voltage_v,
            max_temp_pack=1, max_temp_probe=1, max_temp_c=v.max_temp_c,
            min_temp_pack=1, min_temp_probe=2, min_temp_c=v.min_temp_c,
        ),
        Alarm(max_level=v.max_alarm_level, general_flags=v.general_flags or 0),
    )  # fmt: skip
    time = datetime.fromtimestamp(fr.ts_ms / 1000, CHINA_TZ).replace(tzinfo=None)
    return encode_frame(
        Frame(edition=2016, command=fr.command, vin=fr.vin, time=time, blocks=blocks)
    )


def test_encoded_thermal_runaway_raises_the_gb38031_alert_once() -> None:
    scenario = thermal_runaway(vin="LNEVTR00000000001", edition=2016)  # a 17-character VIN
    wire = [encode_2016(fr) for fr in scenario]
    decoded = [decode_rows(b) for b in wire]
    assert [d.ts_ms for d in decoded] == [fr.ts_ms for fr in scenario]  # the bytes carry time
    assert decoded[-1].vehicle is not None and decoded[-1].vehicle.max_temp_c == 210
    engine = RuleEngine(RuleSet.default())
    changes = [c for i in range(0, len(decoded), 7) for c in engine.evaluate(decoded[i : i + 7])]
    tr = [c for c in changes if c.alert.rule_id == "gb38031_thermal_runaway"]
    assert [c.type for c in tr if c.type != "updated"] == ["raised"]  # and never cleared
    assert tr[0].alert.opened_ms == next(
        d.ts_ms for d in decoded if d.vehicle is not None and (d.vehicle.max_temp_c or 0) >= 60
    )
    assert engine.stats.late == 3  # the reissued 30 s before the alarm: no second raise
    assert engine.take_failures() == []  # no frame skipped by the engine's safety net
