"""The demo's summary of chargers read from real stored rows (devtools/demo/kinds.py): the
simulated charger frames go through the real decoder and storage writer into a migrated
PostgreSQL database; the charging session's line integrates the STORED power samples
(trapezoid) to the reported energy and shows the plan's peak power, the stuck connector's
faults are stored, and the row counts are this run's only (another run's entities: none)."""

from __future__ import annotations

import dataclasses
import re
import time
from datetime import UTC, datetime

import psycopg
import pytest

from devtools.demo import kinds
from devtools.sim import plans
from devtools.sim.fleet import GOOD_KINDS, FleetOptions
from devtools.sim.world import world_messages
from ingest.decoders.charger import decode_charger_rows
from storage import OffsetRange, PoolParams, StorageWriter, WriterParams

pytestmark = pytest.mark.integration


async def test_session_integral_peak_faults_and_counts_come_from_stored_rows(
    migrated_database: str,
) -> None:
    o = FleetOptions(vehicles=12, chargers=2, minutes=10, end_ms=int(time.time() * 1000) - 60_000)
    received = datetime.now(UTC)
    frames = [
        decode_charger_rows(m.value, received)
        for m in world_messages(o)
        if m.topic == "charger" and m.kind in GOOD_KINDS
    ]
    writer = await StorageWriter.open(
        PoolParams(dsn=migrated_database), WriterParams(consumer_group="demo-test")
    )
    try:
        await writer.write_batch(frames, {("nev.charger.raw", 0): OffsetRange(None, len(frames))})
    finally:
        await writer.close()

    plan = plans.charge_plan(o, 0)
    assert plan is not None
    with psycopg.connect(migrated_database, autocommit=True) as conn:
        session = kinds.session_lines(conn, "nev", o)
        rows = kinds.row_lines(conn, "nev", o)
        other = kinds.row_lines(conn, "nev", dataclasses.replace(o, vin_prefix="LDM0001"))
    found = re.search(
        r"energy reported ([\d.]+) kWh; trapezoid integral of the (\d+) stored power samples "
        r"([\d.]+) kWh \(([\d.]+) % apart\); peak power ([\d.]+) kW",
        session[-1],
    )
    assert found, session
    energy, samples, integral, apart, peak = found.groups()
    assert float(energy) == pytest.approx(plan.energy_at(plan.end_ms), abs=0.001)
    assert float(integral) == pytest.approx(float(energy), rel=0.01) and float(apart) < 1
    assert int(samples) >= 8
    assert float(peak) == pytest.approx(plan.p0_kw)
    charger = next(line for line in rows if line.startswith("charger"))
    assert re.search(r"charger_faults [1-9]", charger), charger
    assert re.search(r"charger_telemetry [1-9]", charger), charger
    theirs = next(line for line in other if line.startswith("charger"))
    assert re.findall(r" (\d+(?:,\d{3})*)", theirs) == ["0"] * 5, theirs
