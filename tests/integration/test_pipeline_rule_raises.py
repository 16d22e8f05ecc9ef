"""A rule that raises on a frame does not fail the batch (the real broker and database).

No push a device can send makes a loader-checked rule raise any more: the last such trigger, a
T/CEC TotalPower written as a JSON int beyond 2**53 (the native runner refused it), is a
double since the decoder takes every T/CEC number as one (docs/protocols/charger.md). So the
rule that raises is one built by other means than the loader, as ``RuleSet``'s public types
allow, installed in the sink's charger engine by ``swap_rules`` (a reload's path): its guard
compares the session energy with a string, which raises TypeError on every push that carries
an energy. The engine's safety net (alerts/failure.py) skips that frame's verdicts: the batch
commits with every row, the other connector's fault raises its alert, and the failure is
counted. Runs the pipeline's own sink in this process on the records of a private T/CEC topic,
as test_pipeline_alert_topics does.

The guard's value is no number the native runner can take exactly (alerts.kinds_native._exact
refuses it), so the charger plan falls back to the generated Python loop: this end-to-end test
covers the Python runner's raise. The native runner's raise path is covered by
tests/unit/test_alerts_rule_failure.py's native cases (a frame value of the wrong type).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import TopicPartition

from alerts import RuleSet
from alerts.model import Guard
from ingest.config.load import load_settings
from tests import kinds_traffic as kt
from tests.integration import pipeline_support as ps
from tests.integration.kinds_support import Out, produce_records
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.test_pipeline_alert_topics import (
    FAULT_RULES,
    no_rejects,
    read_batch,
    started,
)
from tests.integration.test_pipeline_tcec_same_ms import a_second_ago

pytestmark = pytest.mark.integration

ENERGY_RULES = (
    FAULT_RULES
    + """
[[rule]]
id = "test_session_energy"
entity = "charger"
kind = "threshold"
severity = "warning"
field = "energy_kwh"
value = 500
"""
)
# What the loader refuses (a guard's value is a number): compared with a float, TypeError.
NOT_A_NUMBER: Any = "0"


def raising(rules: RuleSet) -> RuleSet:
    """``rules`` with test_session_energy guarded by ``energy_kwh >= "0"``."""
    guard = Guard("energy_kwh", ">=", NOT_A_NUMBER)
    return dataclasses.replace(
        rules,
        rules=tuple(
            dataclasses.replace(r, guards=(guard,)) if r.id == "test_session_energy" else r
            for r in rules.rules
        ),
    )


async def test_a_push_a_rule_raises_on_is_stored_and_the_batch_commits(
    env: PipelineEnv, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(ENERGY_RULES)
    settings = load_settings(environ=env.environ(NEV_ALERTS_RULES_FILE=str(rules)))
    second = a_second_ago(10)
    charging, faulty = kt.connector(1), kt.connector(2)
    charge = kt.charge_status(second, charging, 1, second - 60_000, 800.0, 50.0)
    await produce_records(
        env.kafka,
        [
            Out(env.tcec, charging.encode(), charge, kt.tcec_headers(kt.CHARGE, second)),
            Out(
                env.tcec,
                faulty.encode(),
                kt.station_status(faulty, 255),
                kt.tcec_headers(kt.STATUS, second),
            ),
        ],
    )
    tcec0 = TopicPartition(env.tcec, 0)
    sink = await started(settings)
    try:
        # The charger engine the sink built from the rule file, its rules swapped for the same
        # with the raising guard (no alert open yet: the swap changes nothing else).
        assert sink._engines["charger"].swap_rules(raising(RuleSet.load(rules))) == []
        await sink.on_partitions_assigned([tcec0])
        result = await sink.write(await read_batch(env, settings, tcec0), no_rejects)
        errors = sink.metrics.registry.get_sample_value(
            "nev_ingest_rule_errors_total", {"kind": "charger", "rule": "test_session_energy"}
        )
    finally:
        await sink.close()
    # The other connector's push was judged: its fault raised, in the committed batch.
    assert [(a.change, a.rule) for a in result.alerts] == [("raised", "test_connector_fault")]
    assert errors == 1.0
    conn = await asyncpg.connect(env.dsn)
    try:
        energy = await conn.fetch(
            f"SELECT connector_id, energy_kwh FROM {ps.SCHEMA}.charger_telemetry"
        )
        statuses = await conn.fetch(
            f"SELECT connector_id, status FROM {ps.SCHEMA}.connector_status_events"
        )
    finally:
        await conn.close()
    # The push the rule raised on is stored: the data is valid, our rule code failed.
    assert [(r["connector_id"], r["energy_kwh"]) for r in energy] == [(charging, 800.0)]
    assert (faulty, 255) in [(r["connector_id"], r["status"]) for r in statuses]
