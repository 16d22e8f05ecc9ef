"""The simulated fleet: real frames of both editions, bad frames the decoder rejects, one
thermal runaway the default rules catch (tests/integration/test_pipeline_loadgen.py puts
them on Kafka)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from alerts import RuleEngine, RuleSet
from devtools.sim.bench_frames import frames_of_kind, realtime_frames
from devtools.sim.fleet import FleetOptions, fleet_messages, vin_of
from ingest.decoders.battery import decode_pack_rows
from ingest.decoders.charger import decode_charger_rows
from ingest.decoders.errors import FrameError
from ingest.decoders.fast import decode_rows

pytestmark = pytest.mark.unit

END_MS = 1_782_878_400_000  # 2026-07-01 12:00 +08:00


def test_fleet_sends_both_editions_logins_bad_frames_in_time_order() -> None:
    messages = list(fleet_messages(FleetOptions(vehicles=60, minutes=5, end_ms=END_MS)))
    assert [m.t_ms for m in messages] == sorted(m.t_ms for m in messages)
    kinds = Counter(m.kind for m in messages)
    assert kinds["login"] == 60 and kinds["realtime"] > 60 * 25
    editions: Counter[int] = Counter()
    rejected: Counter[str] = Counter()
    for m in messages:
        try:
            rows = decode_rows(m.value)
        except FrameError as exc:
            assert m.kind not in ("login", "realtime", "reissue")
            rejected[exc.reason] += 1
            continue
        assert m.key.decode() == rows.vin and len(rows.vin) == 17
        editions[rows.edition] += 1
        if m.kind in ("realtime", "reissue"):
            assert rows.vehicle is not None and rows.packs and rows.ts_ms is not None
            assert rows.ts_ms <= END_MS
    assert set(editions) == {2016, 2025}
    assert sum(rejected.values()) == sum(
        n for k, n in kinds.items() if k not in ("login", "realtime", "reissue")
    )


def test_runaway_vehicle_raises_the_gb38031_alert_and_no_one_else_alerts() -> None:
    messages = fleet_messages(FleetOptions(vehicles=40, minutes=5, bad_ratio=0, end_ms=END_MS))
    engine = RuleEngine(RuleSet.default())
    changes = engine.evaluate(decode_rows(m.value) for m in messages)
    assert engine.take_failures() == []  # no frame skipped by the engine's safety net
    raised = {(c.alert.entity_id, c.alert.rule_id) for c in changes if c.type == "raised"}
    assert (vin_of(0), "gb38031_thermal_runaway") in raised
    assert {vin for vin, _ in raised} == {vin_of(0)}


def test_bench_frames_are_distinct_real_frames() -> None:
    pairs = list(realtime_frames(50, 4, start_ms=END_MS - 60_000))
    keys = {(r.vin, r.ts_ms) for r in (decode_rows(v) for _, v in pairs)}
    assert len(pairs) == len(keys) == 200


_FLEET_DIGEST = """
import hashlib
from devtools.sim.fleet import FleetOptions, fleet_messages
digest = hashlib.sha256()
for m in fleet_messages(FleetOptions(vehicles=20, minutes=2, end_ms=1_780_000_000_000)):
    digest.update(m.key + m.value)
print(digest.hexdigest())
"""


def test_the_fleet_is_the_same_bytes_for_a_seed_in_every_process() -> None:
    # str hashes differ per process (PYTHONHASHSEED): nothing of the fleet may depend on them.
    digests = {
        subprocess.run(
            [sys.executable, "-c", _FLEET_DIGEST],
            env={**os.environ, "PYTHONHASHSEED": seed},
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(digests) == 1, digests


@pytest.mark.parametrize("kind", ["charger", "battery"])
def test_bench_frames_of_chargers_and_packs_are_distinct_real_frames(kind: str) -> None:
    decoders: dict[str, Callable[[bytes], Any]] = {
        "charger": decode_charger_rows,
        "battery": decode_pack_rows,
    }
    decode = decoders[kind]
    pairs = list(frames_of_kind(kind, 20, 5, start_ms=END_MS - 60_000))
    decoded = [(key, decode(value)) for key, value in pairs]
    ident = "charger_id" if kind == "charger" else "pack_code"
    assert all(key.decode() == getattr(rows, ident) for key, rows in decoded)
    assert len({(key, rows.ts_ms) for key, rows in decoded}) == len(pairs) == 100
