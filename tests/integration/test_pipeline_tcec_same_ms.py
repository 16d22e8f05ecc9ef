"""T/CEC status pushes of one millisecond through the alert path (the real broker and database).

A status push's rows are at TimeStamp + Seq µs (ingest.decoders.charger.push_time), so the
pushes of one second numbered 0001..0999 all fall in its first millisecond: storage keeps each
(tests/integration/test_storage_charger_keys.py), and the rule engine must judge each, in Seq
order, live and in the short replay on partition assignment, not take the later one for a
duplicate of the first. Runs the pipeline's own sink in this process on the records of a
private T/CEC topic, as test_pipeline_alert_topics does.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import orjson
import pytest
from aiokafka import TopicPartition

from ingest.config.load import load_settings
from ingest.pipeline import wire
from ingest.pipeline.sink import AlertMessage
from tests import kinds_traffic as kt
from tests.integration import pipeline_support as ps
from tests.integration.kinds_support import Out, produce_records
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.test_pipeline_alert_topics import (
    CONNECTOR,
    FAULT_RULES,
    no_rejects,
    read_batch,
    started,
)

pytestmark = pytest.mark.integration

# A status that changes and changes back within 10 minutes: history a new owner of the
# partition only has through the replay (and a window, so that there is one).
FLIP_RULES = """
[[rule]]
id = "test_status_flip"
entity = "charger"
kind = "flip"
severity = "major"
title = "connector status back within 10 minutes"
field = "connector_status"
window_s = 600
"""


def status_push(env: PipelineEnv, second_ms: int, seq: str, status: int) -> Out:
    """A stationStatus push of the test's connector: envelope TimeStamp ``second_ms``, Seq
    ``seq`` (its rows' time: that second + Seq µs)."""
    headers = [*kt.tcec_headers(kt.STATUS, second_ms), (wire.TCEC_SEQ, seq.encode())]
    return Out(env.tcec, CONNECTOR.encode(), kt.station_status(CONNECTOR, status), headers)


def a_second_ago(minutes: int) -> int:
    """A whole second ``minutes`` ago, in epoch ms (a TimeStamp has whole seconds)."""
    return (time.time_ns() // 1_000_000 - minutes * 60_000) // 1000 * 1000


async def test_a_fault_pushed_in_the_millisecond_of_another_push_raises(
    env: PipelineEnv, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(FAULT_RULES)
    settings = load_settings(environ=env.environ(NEV_ALERTS_RULES_FILE=str(rules)))
    second = a_second_ago(10)
    # occupied (Seq 0001, +1 µs), then a fault (Seq 0003, +3 µs): one millisecond
    await produce_records(
        env.kafka, [status_push(env, second, "0001", 2), status_push(env, second, "0003", 255)]
    )
    tcec0 = TopicPartition(env.tcec, 0)
    sink = await started(settings)
    try:
        await sink.on_partitions_assigned([tcec0])
        result = await sink.write(await read_batch(env, settings, tcec0), no_rejects)
    finally:
        await sink.close()
    assert [(a.change, a.rule) for a in result.alerts] == [("raised", "test_connector_fault")]
    conn = await asyncpg.connect(env.dsn)
    try:
        statuses = await conn.fetch(
            f"SELECT ts, status FROM {ps.SCHEMA}.connector_status_events ORDER BY ts"
        )
        opened = await conn.fetchval(f"SELECT opened_at FROM {ps.SCHEMA}.alerts")
    finally:
        await conn.close()
    at = datetime.fromtimestamp(second / 1000, UTC)
    us = timedelta(microseconds=1)
    assert [tuple(r) for r in statuses] == [(at + us, 2), (at + 3 * us, 255)]
    # Alert records keep milliseconds: the fault's time, +3 µs, is recorded at its millisecond.
    assert opened == at


async def test_the_replay_on_assignment_sees_both_pushes_of_one_millisecond(
    env: PipelineEnv, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(FLIP_RULES)
    settings = load_settings(environ=env.environ(NEV_ALERTS_RULES_FILE=str(rules)))
    second = a_second_ago(5)
    tcec0 = TopicPartition(env.tcec, 0)
    # The first owner stores charging (Seq 0001), then a fault (Seq 0003), one millisecond.
    await produce_records(
        env.kafka, [status_push(env, second, "0001", 3), status_push(env, second, "0003", 255)]
    )
    first = await started(settings)
    try:
        await first.on_partitions_assigned([tcec0])
        result = await first.write(await read_batch(env, settings, tcec0), no_rejects)
    finally:
        await first.close()
    assert result.alerts == []  # no flip back yet
    # Charging again a second later: back to the status before the fault. Only the replay
    # of the stored rows tells the next owner that there was a fault in between.
    await produce_records(env.kafka, [status_push(env, second + 1000, "0001", 3)])
    second_owner = await started(settings)
    try:
        await second_owner.on_partitions_assigned([tcec0])
        # from the offset the first owner stored: the two pushes are read again only by the
        # replay, from the database
        batch = await read_batch(env, settings, tcec0, start=2)
        result = await second_owner.write(batch, no_rejects)
    finally:
        await second_owner.close()
    assert [(a.change, a.rule) for a in result.alerts] == [("raised", "test_status_flip")]


# -- a fault back in the millisecond of a clear -------------------------------------------------
# An alert is stored as (entity, rule, opened_at in ms): an episode raised in the millisecond
# the last one cleared in opens the millisecond after (docs/alerts.md, "Entity kinds"), or the
# store would take its raise for the cleared episode and the ongoing fault would have no row.

MS = timedelta(milliseconds=1)


def published(alerts: list[AlertMessage]) -> list[tuple[str, datetime, datetime | None]]:
    """(change, opened_at, cleared_at) of each published alert message."""
    out = []
    for a in alerts:
        body = orjson.loads(a.message)
        cleared = body["cleared_at"]
        out.append(
            (
                a.change,
                datetime.fromisoformat(body["opened_at"]),
                None if cleared is None else datetime.fromisoformat(cleared),
            )
        )
    return out


async def stored(env: PipelineEnv) -> list[tuple[datetime, datetime, datetime | None]]:
    """(opened_at, last_seen_at, cleared_at) of the test's alerts, oldest first."""
    conn = await asyncpg.connect(env.dsn)
    try:
        rows = await conn.fetch(
            f"SELECT opened_at, last_seen_at, cleared_at FROM {ps.SCHEMA}.alerts ORDER BY opened_at"
        )
    finally:
        await conn.close()
    return [tuple(r) for r in rows]


async def test_a_fault_back_within_one_millisecond_is_stored_open(
    env: PipelineEnv, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(FAULT_RULES)
    settings = load_settings(environ=env.environ(NEV_ALERTS_RULES_FILE=str(rules)))
    second = a_second_ago(10)
    at = datetime.fromtimestamp(second / 1000, UTC)
    # a fault (Seq 0001), occupied (0003), the fault again (0005): one millisecond
    pushes = [(1, 255), (3, 2), (5, 255)]
    await produce_records(env.kafka, [status_push(env, second, f"{q:04}", s) for q, s in pushes])
    tcec0 = TopicPartition(env.tcec, 0)
    sink = await started(settings)
    try:
        await sink.on_partitions_assigned([tcec0])
        result = await sink.write(await read_batch(env, settings, tcec0), no_rejects)
        # the second episode opened the millisecond after the first one's clear: stored open,
        # as published
        assert await stored(env) == [(at, at, at), (at + MS, at + MS, None)]
        assert published(result.alerts) == [
            ("raised", at, None),
            ("cleared", at, at),
            ("raised", at + MS, None),
        ]
        # it recovers (Seq 0007, the same millisecond): the open row is the one that clears
        await produce_records(env.kafka, [status_push(env, second, "0007", 2)])
        result = await sink.write(await read_batch(env, settings, tcec0, start=3), no_rejects)
    finally:
        await sink.close()
    assert await stored(env) == [(at, at, at), (at + MS, at + MS, at + MS)]
    assert published(result.alerts) == [("cleared", at + MS, at + MS)]


@pytest.mark.parametrize("next_owner", [False, True], ids=["one-batch", "next-owner"])
async def test_a_fault_back_in_the_millisecond_of_its_recovery_is_stored_open(
    env: PipelineEnv, tmp_path: Path, next_owner: bool
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(FAULT_RULES)
    settings = load_settings(environ=env.environ(NEV_ALERTS_RULES_FILE=str(rules)))
    second = a_second_ago(10)
    at = datetime.fromtimestamp(second / 1000, UTC)
    before = at - timedelta(minutes=1)
    tcec0 = TopicPartition(env.tcec, 0)
    # a fault a minute before; it recovers (Seq 0001) and faults again (Seq 0003) in one ms
    pushes = [status_push(env, second - 60_000, "0001", 255), status_push(env, second, "0001", 2)]
    again = status_push(env, second, "0003", 255)
    await produce_records(env.kafka, pushes if next_owner else [*pushes, again])
    sink = await started(settings)
    try:
        await sink.on_partitions_assigned([tcec0])
        result = await sink.write(await read_batch(env, settings, tcec0), no_rejects)
    finally:
        await sink.close()
    if next_owner:
        # the fault comes to the partition's next owner, which knows the clear from the
        # stored alert only
        await produce_records(env.kafka, [again])
        sink = await started(settings)
        try:
            await sink.on_partitions_assigned([tcec0])
            batch = await read_batch(env, settings, tcec0, start=2)
            result = await sink.write(batch, no_rejects)
        finally:
            await sink.close()
    assert await stored(env) == [(before, before, at), (at + MS, at + MS, None)]
    assert published(result.alerts)[-1] == ("raised", at + MS, None)
