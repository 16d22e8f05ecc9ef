"""A rule that raises on a frame does not fail the batch (the real broker and database).

The trigger is real: a T/CEC equipment charge status push whose TotalPower is a JSON int beyond
2**53 passes the decoder (its bound is REAL_MAX), and the native rule runner refuses to compare
such an int (exact only within +-2**53): every charger rule reading ``energy_kwh`` raised, the
batch's write failed, and each restart read the push again. The engine's safety net
(alerts/failure.py) now skips that frame's verdicts: the batch commits with every row, the
other connector's fault raises its alert, and the failure is counted. Runs the pipeline's own
sink in this process on the records of a private T/CEC topic, as test_pipeline_alert_topics
does.
"""

from __future__ import annotations

import time
from pathlib import Path

import asyncpg
import pytest
from aiokafka import TopicPartition

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
BEYOND_DOUBLES = 2**53 + 1  # a JSON int the decoder takes and the native runner refuses


async def test_a_push_a_rule_raises_on_is_stored_and_the_batch_commits(
    env: PipelineEnv, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(ENERGY_RULES)
    settings = load_settings(environ=env.environ(NEV_ALERTS_RULES_FILE=str(rules)))
    second = (time.time_ns() // 1_000_000 - 10 * 60_000) // 1000 * 1000
    charging, faulty = kt.connector(1), kt.connector(2)
    charge = kt.charge_status(second, charging, 1, second - 60_000, BEYOND_DOUBLES, 50.0)
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
    assert [(r["connector_id"], r["energy_kwh"]) for r in energy] == [
        (charging, float(BEYOND_DOUBLES))
    ]
    assert (faulty, 255) in [(r["connector_id"], r["status"]) for r in statuses]
