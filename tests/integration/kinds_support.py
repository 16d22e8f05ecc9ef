"""Helpers of the end-to-end tests of chargers, packs and T/CEC 102 pushes: produce records
with their own headers to the raw topics, work out what the tables must hold with the
service's own decoders, and read back what they hold (row keys, per table)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg
from aiokafka import AIOKafkaProducer

from contract.battery import PackFrameRows
from contract.charger import ChargerRows
from contract.kinds import Decoded
from ingest.config import KafkaSettings, Settings
from ingest.decoders.errors import FrameError
from ingest.pipeline.batch import Batched, WithHeaders
from ingest.pipeline.process import decoders_for
from tests.integration.pipeline_support import SCHEMA, PipelineEnv

Key = tuple[Any, ...]


class Out(NamedTuple):
    """One raw record to produce."""

    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


# Table -> its key columns (the primary keys of migrations 0006 / 0007).
KEYS: dict[str, tuple[str, ...]] = {
    "charger_connectors": ("operator_id", "connector_id", "ts", "source"),
    "connector_status_events": ("operator_id", "connector_id", "ts", "source"),
    "charger_telemetry": ("operator_id", "connector_id", "ts", "source"),
    "charging_session_events": ("start_charge_seq", "ts", "event", "source"),
    "charger_faults": ("operator_id", "connector_id", "ts", "source"),
    "pack_telemetry": ("pack_code", "ts"),
    "pack_alarm_events": ("pack_code", "ts"),
    "pack_sessions": ("pack_code", "ts", "event"),
}


async def produce_records(kafka: str, records: Iterable[Out], *, rate: float = 0.0) -> int:
    """Send ``records`` in order (paced at ``rate`` per second when > 0); returns how many."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", enable_idempotence=True)
    await producer.start()
    sent = 0
    started = time.monotonic()
    try:
        pending = []
        for r in records:
            if rate > 0:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0.005:
                    await asyncio.sleep(ahead)  # pacing the producer, not waiting for a service
            pending.append(await producer.send(r.topic, r.value, key=r.key, headers=r.headers))
            sent += 1
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


def env_settings(env: PipelineEnv) -> Settings:
    """The service's settings as far as topics go (which decoder reads which topic)."""
    kafka = KafkaSettings(
        topic_vehicle=env.topic,
        topic_charger=env.charger,
        topic_tcec=env.tcec,
        topic_battery=env.battery,
        topic_dlq=env.dlq,
        topic_alerts=env.alerts,
    )
    return Settings(kafka=kafka)


def decode(env: PipelineEnv, out: Out) -> Decoded:
    """What the service decodes ``out`` to (FrameError when it dead-letters it)."""
    decoder = decoders_for(env_settings(env))[out.topic]
    received = int(dict(out.headers).get("received_at", b"0"))
    if isinstance(decoder, WithHeaders):
        return decoder.decode(out.value, received, out.headers)
    if isinstance(decoder, Batched):
        (result,) = decoder.decode([out.value], [received])
        if isinstance(result, FrameError):
            raise result
        return result
    return decoder(out.value, received)


class Expected(NamedTuple):
    rows: dict[str, Counter[Key]]  # table -> row keys
    bad: Counter[tuple[str, str]]  # (topic, reason)
    decoded: list[Decoded]


def expected(env: PipelineEnv, records: Iterable[Out]) -> Expected:
    rows: dict[str, Counter[Key]] = {t: Counter() for t in KEYS}
    bad: Counter[tuple[str, str]] = Counter()
    decoded: list[Decoded] = []
    for r in records:
        try:
            d = decode(env, r)
        except FrameError as exc:
            bad[(r.topic, exc.reason)] += 1
            continue
        decoded.append(d)
        for table, items in _tables(d):
            rows[table].update(_key(table, item) for item in items)
    return Expected(rows, bad, decoded)


def _tables(d: Decoded) -> list[tuple[str, list[Any]]]:
    if isinstance(d, ChargerRows):
        return [
            ("charger_connectors", d.connectors),
            ("connector_status_events", d.statuses),
            ("charger_telemetry", d.telemetry),
            ("charging_session_events", d.sessions),
            ("charger_faults", d.faults),
        ]
    if isinstance(d, PackFrameRows):
        return [
            ("pack_telemetry", [d.telemetry] if d.telemetry is not None else []),
            ("pack_alarm_events", [d.alarm] if d.alarm is not None else []),
            ("pack_sessions", [d.session] if d.session is not None else []),
        ]
    return []


def _key(table: str, item: Any) -> Key:
    return tuple(_plain(getattr(item, c)) for c in KEYS[table])


def _plain(value: Any) -> Any:
    """Times as epoch ms: the database returns them in its own zone."""
    return int(value.timestamp() * 1000) if isinstance(value, datetime) else value


async def stored(dsn: str) -> dict[str, Counter[Key]]:
    """Table -> the keys of its rows."""
    conn = await asyncpg.connect(dsn)
    try:
        out: dict[str, Counter[Key]] = {}
        for table, cols in KEYS.items():
            records = await conn.fetch(f"SELECT {', '.join(cols)} FROM {SCHEMA}.{table}")
            out[table] = Counter(tuple(_plain(r[c]) for c in cols) for r in records)
        return out
    finally:
        await conn.close()


async def latest(dsn: str, kind: str) -> dict[str, dict[str, Any]]:
    """entity_id -> its latest_state row, for one entity kind."""
    conn = await asyncpg.connect(dsn)
    try:
        records = await conn.fetch(
            f"SELECT * FROM {SCHEMA}.latest_state WHERE entity_kind = $1", kind
        )
    finally:
        await conn.close()
    return {r["entity_id"]: dict(r) for r in records}
