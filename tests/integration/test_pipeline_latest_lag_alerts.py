"""Bounded-lag latest_state and the alert restore after a crash (issue 12): with a long
``storage.latest_interval_ms`` the history of a windowed rule is committed but not merged into
latest_state when the worker is killed, so the replay from the database (which ends at each
entity's latest_state time) misses it. The frames the new worker reads again to refill the
pending tuples warm its rule engine too, and it raises exactly what a run without the crash
raises (computed here by one engine over the same frames), and nothing else."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import asyncpg
import pytest

from alerts import RuleEngine, RuleSet
from devtools.sim.fleet import Message, SimVehicle
from ingest.decoders.encoder import encode_frame
from ingest.decoders.fast import decode_rows
from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv

pytestmark = pytest.mark.integration

RULES = """
version = 1

[[rule]]
id = "test_temp_drop"
kind = "drop"
severity = "major"
title = "Pack temperature fell by more than 25 % within 35 s (test rule)"
source = "tests/integration/test_pipeline_latest_lag_alerts.py"
field = "max_temp_c"
pct = 25
window_s = 35
max_gap_s = 35

[[rule]]
id = "test_hot_for"
kind = "threshold"
severity = "major"
title = "Pack at 55 °C or more for 25 s (test rule)"
source = "tests/integration/test_pipeline_latest_lag_alerts.py"
field = "max_temp_c"
op = ">="
value = 55
hysteresis = 5
for_s = 25
"""

DROP_VIN = "LNEVLAG0000000001"  # in latest_state before the crash, its window not
NEW_VIN = "LNEVLAG0000000002"  # first seen after the last merge: no latest_state row


def frames(vin: str, start_ms: int, temps: dict[int, float]) -> list[Message]:
    """``vin``'s real-time frames at ``start_ms`` + the keys (seconds), at those temperatures."""
    v = SimVehicle(vin, random.Random(7), 2016)
    v.mode, v.current, v.probe_offsets = "park", 0.4, [0] * len(v.probe_offsets)
    out = []
    for at_s, temp in temps.items():
        t = start_ms + at_s * 1000
        v.temp = temp
        out.append(Message(t, vin.encode(), encode_frame(v.frame(t)), "realtime"))
    return out


def uninterrupted(messages: list[Message]) -> list[tuple[str, str, int]]:
    """(rule, entity, opened ms) of what one engine raises over ``messages`` without a crash."""
    engine = RuleEngine(RuleSet.from_toml(RULES), entity_kind="vehicle")
    changes = engine.evaluate([decode_rows(m.value) for m in messages])
    return sorted(
        (c.alert.rule_id, c.alert.entity_id, c.alert.opened_ms)
        for c in changes
        if c.type == "raised"
    )


async def raised(dsn: str) -> list[tuple[str, str, int]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            f"SELECT rule_id, entity_id, (extract(epoch FROM opened_at) * 1000)::bigint AS ms "
            f"FROM {ps.SCHEMA}.alerts"
        )
    finally:
        await conn.close()
    return sorted((r["rule_id"], r["entity_id"], r["ms"]) for r in rows)


async def latest_ts(dsn: str, vin: str) -> int | None:
    conn = await asyncpg.connect(dsn)
    try:
        ms: int | None = await conn.fetchval(
            f"SELECT (extract(epoch FROM ts) * 1000)::bigint FROM {ps.SCHEMA}.latest_state "
            "WHERE entity_kind = 'vehicle' AND entity_id = $1",
            vin,
        )
    finally:
        await conn.close()
    return ms


async def test_kill_9_between_merges_raises_what_an_uninterrupted_run_raises(
    env: PipelineEnv, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    start = (time.time_ns() // 1_000_000_000 - 3600) * 1000  # frame times have whole seconds
    # One frame each of 40 quiet vehicles: every partition's first batch (merged at once).
    quiet = [m for i in range(40) for m in frames(f"LNEVQUIET{i:08d}", start, {0: 30.0})]
    merged = frames(DROP_VIN, start, {0: 40.0})
    # Committed but not merged when the worker dies: the drop's highest value (60 °C) and the
    # first 10 s of the new vehicle's 25 s at 55 °C or more.
    pending = frames(DROP_VIN, start, {10: 60.0, 20: 60.0}) + frames(
        NEW_VIN, start, {10: 60.0, 20: 60.0}
    )
    # Read by the new worker: the fall to 40 °C (33 % below 60 within 35 s); 60 °C since 10 s.
    after = frames(DROP_VIN, start, {30: 40.0}) + frames(NEW_VIN, start, {30: 60.0, 40: 60.0})
    expected = uninterrupted(quiet + merged + pending + after)
    assert expected == [  # the duration (10 s -> 40 s) raises at 40 s, the drop at 30 s
        ("test_hot_for", NEW_VIN, start + 40_000),
        ("test_temp_drop", DROP_VIN, start + 30_000),
    ]
    async with ps.serving(
        env,
        "crash",
        NEV_STORAGE_LATEST_INTERVAL_MS="600000",  # no merge by time within this test
        NEV_ALERTS_RULES_FILE=str(rules),
    ) as svc:
        (victim,) = svc.worker_pids()
        await ps.produce_and_store(env, quiet + merged)
        await ps.produce_and_store(env, pending)
        # The history is in the unmerged range: the replay from the database cannot see it.
        # (None when its partition's first batch came without it: then it is a new entity too)
        assert await latest_ts(env.dsn, DROP_VIN) in (start, None)
        assert await latest_ts(env.dsn, NEW_VIN) is None
        os.kill(victim, signal.SIGKILL)

        async def restarted() -> bool:
            pids = svc.worker_pids()
            return len(pids) == 1 and pids[0] != victim

        await ps.until(restarted, timeout_s=30, what="the supervisor to restart the worker")

        async def refilled() -> bool:
            logs = svc.logs()
            seeks = [r for r in logs if r.get("msg", "").startswith("latest_state tuples were")]
            done = [r for r in logs if r.get("msg") == "latest_state tuples refilled"]
            return bool(seeks) and len(done) == len(seeks)

        await ps.until(refilled, timeout_s=60, what="the pending range to be read again")
        assert await raised(env.dsn) == []  # the refill raised nothing
        await ps.produce_and_store(env, after)
        # Alerts commit with the rows and offsets that raise them: all there once caught up.
        assert await raised(env.dsn) == expected, svc.tail()
