"""Producing to Kafka for the writer: dead letters and alert messages.

Dead letters of frames that did not decode go out before their batch's transaction; those of
frames the database refused go out inside it (``dead_letter_rejected``); alert changes go out
after it. Giving up would lose a dead letter or an alert, so sends are retried; inside a
transaction only a few times, then the failure becomes a ``ConnectionError`` that the storage
writer treats as transient (the whole batch goes again later).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, Protocol

from aiokafka.errors import KafkaError

from ingest.pipeline import wire
from ingest.pipeline.batch import Batch
from ingest.pipeline.logs import RateLimiter
from ingest.pipeline.metrics import PipelineMetrics
from ingest.pipeline.sink import AlertChange
from ingest.pipeline.wire import DeadLetter

__all__ = ["TRANSIENT_KAFKA", "Producer", "Publisher"]

log = logging.getLogger(__name__)

_STAGE_STORE: Final = "store"

# Errors of the broker side that are worth retrying: all of them, since giving up would lose
# a dead letter; a permanent one (authorisation) keeps being logged until someone fixes it.
TRANSIENT_KAFKA: Final[tuple[type[BaseException], ...]] = (KafkaError, OSError, TimeoutError)


class Producer(Protocol):
    """The part of aiokafka's AIOKafkaProducer used here."""

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> Awaitable[Any]: ...


class Publisher:
    """Dead letters and alert messages, with the retries described in the module docstring."""

    def __init__(
        self,
        producer: Producer,
        metrics: PipelineMetrics,
        *,
        dlq_topic: str,
        alerts_topic: str,
        backoff_initial_s: float,
        backoff_max_s: float,
    ) -> None:
        self._producer = producer
        self._m = metrics
        self._dlq_topic = dlq_topic
        self._alerts_topic = alerts_topic
        self._backoff_initial = backoff_initial_s
        self._backoff_max = backoff_max_s
        self._limiter = RateLimiter(10.0)

    async def send_dead(self, letters: Sequence[DeadLetter]) -> None:
        """Produce ``letters`` and wait until the broker acknowledged all of them."""
        futures = [
            await self._producer.send(self._dlq_topic, d.value, key=d.key, headers=d.headers)
            for d in letters
        ]
        await asyncio.gather(*futures)

    async def dead_letter_rejected(self, batch: Batch, rejected: list[tuple[int, str]]) -> None:
        """Inside the batch's transaction: dead letters of the frames the database refused."""
        letters = []
        for i, detail in rejected:
            rec = batch.records[i]
            letters.append(
                wire.dead_letter(
                    key=rec.key,
                    value=rec.value,
                    headers=list(rec.headers or ()),
                    reason=wire.DB_REJECTED,
                    detail=detail,
                    stage=_STAGE_STORE,
                    topic=rec.topic,
                    partition=rec.partition,
                    offset=rec.offset,
                    timestamp_ms=rec.timestamp,
                )
            )
            if self._limiter.allow(wire.DB_REJECTED) is not None:
                log.warning(
                    "the database rejected a frame's rows: sent to the dead-letter topic",
                    extra={
                        "reason": wire.DB_REJECTED,
                        "detail": detail[:300],
                        "topic": rec.topic,
                        "partition": rec.partition,
                        "offset": rec.offset,
                    },
                )
        for attempt in range(3):
            try:
                await self.send_dead(letters)
                return
            except TRANSIENT_KAFKA as exc:
                if attempt == 2:
                    raise ConnectionError(f"dead-letter topic unreachable: {exc!r}") from exc
                await asyncio.sleep(self._backoff_initial * 2**attempt)

    async def publish_alerts(self, changes: Sequence[AlertChange]) -> None:
        """After the commit: one message per alert change (retried until the broker takes it)."""
        for change in changes:
            self._m.alerts.labels(
                rule=change.rule, severity=change.severity, change=change.change
            ).inc()

        async def publish() -> None:
            futures = [
                await self._producer.send(self._alerts_topic, change.message, key=change.key)
                for change in changes
            ]
            await asyncio.gather(*futures)

        await self._retry_forever("alerts", publish)
        self._m.alerts_published.inc(len(changes))
        for change in changes:
            log.info(
                "alert %s: %s",
                change.change,
                change.rule,
                extra={
                    "rule": change.rule,
                    "severity": change.severity,
                    "entity": change.key.decode(errors="replace"),
                },
            )

    async def _retry_forever(self, stage: str, op: Callable[[], Awaitable[None]]) -> None:
        backoff = self._backoff_initial
        while True:
            try:
                await op()
                return
            except TRANSIENT_KAFKA as exc:
                self._m.write_retries.labels(stage=stage).inc()
                log.warning(
                    "producing to Kafka failed, retrying in %.2fs: %r",
                    backoff,
                    exc,
                    extra={"stage": stage},
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._backoff_max)
