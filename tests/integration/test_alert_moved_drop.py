"""``drop_moved`` on a real PostgreSQL (ingest/pipeline/moved.py): the old owner of a charger's
connector and of a pack, each with an open alert, whose frames now come from another partition
(latest_state stamped there by a newer frame, the new owner's) drops its copy.

Chargers' and packs' watermarks are in µs (their subjects' order time, alerts.subjects), the
stored time was compared in ms: a thousand times smaller, never newer, so the old owner kept
their copies open forever (counted by nev_ingest_alerts_open). A placement elsewhere by a frame
no newer than the watermark is no move: kept, and placed back on the worker's partition (the
device came back before the check dropped it: stamped nowhere, it stayed placed elsewhere and
the other owner never dropped its copy)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from alerts import RuleEngine, RuleSet
from alerts.model import AlertRecord
from ingest.pipeline.moved import drop_moved
from storage import PoolParams
from storage.connect import connect

pytestmark = pytest.mark.integration

TOPIC = "chg"
PACK_TOPIC = "bat"
MOVED_GUN = "MA1234567:01"
STAYED_GUN = "MA1234567:02"
PACK = "P" * 24
RULES = RuleSet.from_toml(
    '[[rule]]\nid = "pk_soc"\nentity = "battery"\nkind = "threshold"\nseverity = "info"\n'
    'field = "soc_pct"\nop = ">"\nvalue = 1\n'
    '[[rule]]\nid = "ch_soc"\nentity = "charger"\nkind = "threshold"\nseverity = "info"\n'
    'field = "soc_pct"\nop = ">"\nvalue = 1\n'
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def opened(kind: str, eid: str, rule: str, topic: str, ms: int) -> AlertRecord:
    """An alert open on partition 0 of ``topic``, last seen at ``ms``."""
    version = next(r.version for r in RULES.rules if r.id == rule)
    return AlertRecord(
        entity_kind=kind,
        entity_id=eid,
        rule_id=rule,
        rule_version=version,
        severity="info",
        title="t",
        opened_ms=ms,
        last_seen_ms=ms,
        cleared_ms=None,
        peak=5.0,
        last_value=5.0,
        frame_count=1,
        trigger_ms=(ms,),
        late=False,
        partition=0,
        clear_reason=None,
        topic=topic,
    )


async def test_moved_chargers_and_packs_are_dropped_by_their_old_owner(
    migrated_database: str,
) -> None:
    conn = await connect(PoolParams(dsn=migrated_database))
    try:
        now: datetime = await conn.fetchval("SELECT date_trunc('second', now())")
        seen_ms = (now - EPOCH) // timedelta(milliseconds=1) - 60_000
        charger = RuleEngine(RULES, entity_kind="charger")
        charger.restore(
            [
                opened("charger", MOVED_GUN, "ch_soc", TOPIC, seen_ms),
                opened("charger", STAYED_GUN, "ch_soc", TOPIC, seen_ms),
            ]
        )
        battery = RuleEngine(RULES, entity_kind="battery")
        battery.restore([opened("battery", PACK, "pk_soc", PACK_TOPIC, seen_ms)])
        newer = EPOCH + timedelta(milliseconds=seen_ms + 10_000)
        same = EPOCH + timedelta(milliseconds=seen_ms)
        for kind, eid, topic, ts in (
            ("charger", MOVED_GUN, TOPIC, newer),
            ("charger", STAYED_GUN, TOPIC, same),
            ("battery", PACK, PACK_TOPIC, newer),
        ):
            await conn.execute(
                "INSERT INTO latest_state (entity_kind, entity_id, ts, updated_at, kafka_topic, "
                "kafka_partition) VALUES ($1, $2, $3, now(), $4, 1)",
                kind,
                eid,
                ts,
                topic,
            )

        @asynccontextmanager
        async def acquire(shard: int) -> AsyncIterator[Any]:
            yield conn

        engines = {"charger": charger, "battery": battery}
        gone = await drop_moved(engines, acquire, lambda p: 0, {})
        where = await conn.fetch("SELECT entity_id, kafka_partition FROM latest_state")
    finally:
        await conn.close()
    assert [a.entity_id for a in charger.open_alerts()] == [STAYED_GUN]
    assert MOVED_GUN not in charger and STAYED_GUN in charger
    assert battery.open_alerts() == [] and PACK not in battery
    assert gone == {"charger": [MOVED_GUN], "battery": [PACK]}
    assert {r[0]: r[1] for r in where} == {MOVED_GUN: 1, STAYED_GUN: 0, PACK: 1}
