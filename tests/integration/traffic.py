"""The traffic the pipeline tests send: a simulated fleet whose frames end now (inside the
stored time window), and one hot vehicle's frames with the threshold rule that watches it."""

from __future__ import annotations

import random
import time

from devtools.sim.fleet import FleetOptions, Message, SimVehicle, fleet_messages
from ingest.decoders.encoder import encode_frame


def recent_fleet(
    vehicles: int,
    minutes: float,
    *,
    bad_ratio: float = 0.0,
    runaway: bool = False,
    ahead_s: float = 0.0,
) -> list[Message]:
    """``vehicles`` reporting over the last ``minutes``, ``bad_ratio`` of the frames corrupted;
    with ``runaway``, vehicle 0 goes into thermal runaway near the end. ``ahead_s``: the
    devices' clocks run that far ahead of the wall clock."""
    end_ms = time.time_ns() // 1_000_000 + int(ahead_s * 1000)
    options = FleetOptions(
        vehicles=vehicles, minutes=minutes, bad_ratio=bad_ratio, runaway=runaway, end_ms=end_ms
    )
    return list(fleet_messages(options))


HOT_VIN = "LNEVHOT0000000001"
HOT_PACK_RULES = """
version = 1

[[rule]]
id = "test_hot_pack"
kind = "threshold"
severity = "major"
title = "Pack hotter than 50 °C (test rule)"
source = "tests/integration/traffic.py"
field = "max_temp_c"
op = ">="
value = 50
hysteresis = 5
"""


def hot_frames(start_ms: int, temps: list[float], period_ms: int = 10_000) -> list[Message]:
    """``HOT_VIN``'s real-time frames, one per ``period_ms``, at the given pack temperatures."""
    v = SimVehicle(HOT_VIN, random.Random(7), 2016)
    v.mode, v.current, v.probe_offsets = "park", 0.4, [0] * len(v.probe_offsets)
    out = []
    for i, temp in enumerate(temps):
        t = start_ms + i * period_ms
        v.temp = temp
        out.append(Message(t, HOT_VIN.encode(), encode_frame(v.frame(t)), "realtime"))
    return out
