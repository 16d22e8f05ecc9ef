"""Producing to Kafka for the writer: dead letters and alert messages.

Dead letters of frames that did not decode go out before their batch's transaction; those of
frames the database refused go out inside it (``dead_letter_rejected``); alert changes go out
after it. Giving up would lose a dead letter or an alert, so sends that failed for a retriable
reason (broker away, leader moving, timeouts: ``retriable``) are retried; inside a transaction
only a few times, then the failure becomes a ``ConnectionError`` that the storage writer treats
as transient (the whole batch goes again later).

A non-retriable error is never retried: it would fail the same way forever and hold the
partition. A dead letter refused as too large is sent once more cut down (``wire.shrunk``: the
value's first 4 KiB, its size and SHA-256, the dead-letter headers), so the frame is still
accounted for. That works for the producer's own check (kafka.max_request_size); a refusal by
the broker leaves the worker's idempotent producer unable to go on on that partition, and the
worker exits (docs/kafka.md, "Dead-letter topic"). Any other non-retriable error
(authorisation, a missing or invalid topic, or a cut-down letter refused again) raises
``PermanentKafkaError``: the worker exits with that one line, nothing of the batch is
committed (its frames are read again after the fix), and the supervisor's restarts make the
problem loud.

Alert messages Kafka acknowledged leave the outbox with the next batch's transaction; on a
graceful stop or a revoke there is no next batch, so ``delete_acked`` deletes them at once:
otherwise the next owner finds them and publishes them a second time (catch-up run 1 of
docs/capacity.md: 9 raises of the batch in flight at SIGTERM).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, Protocol

from aiokafka.errors import (
    BrokerNotAvailableError,
    KafkaError,
    KafkaTimeoutError,
    KafkaUnavailableError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)

from alerts import outbox
from ingest.pipeline import wire
from ingest.pipeline.batch import Batch
from ingest.pipeline.logs import RateLimiter
from ingest.pipeline.metrics import PipelineMetrics
from ingest.pipeline.sink import AlertMessage
from ingest.pipeline.wire import DeadLetter

__all__ = [
    "TRANSIENT_KAFKA",
    "PermanentKafkaError",
    "Producer",
    "Publisher",
    "delete_acked",
    "retriable",
]

log = logging.getLogger(__name__)

_STAGE_STORE: Final = "store"
# Deleting acknowledged outbox rows on a stop or revoke: a few rows by primary key, so short;
# the group (inside kafka_limits.REVOKE_MARGIN_MS) or the supervisor waits for it. What it
# misses is sent once more by the next owner (at-least-once, never lost).
_DELETE_ACKED_S: Final = 2.0

# What producing can raise; ``retriable`` says which of these are worth another attempt.
TRANSIENT_KAFKA: Final[tuple[type[BaseException], ...]] = (KafkaError, OSError, TimeoutError)

# Not flagged retriable by aiokafka, yet what a broker that is away or restarting looks like:
# a batch that expired unsent, no broker to talk to.
_AWAY: Final = (KafkaTimeoutError, BrokerNotAvailableError, KafkaUnavailableError)
_TOO_LARGE: Final = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError)


class PermanentKafkaError(Exception):
    """Producing failed in a way another attempt cannot fix; the message says what to do."""


def retriable(exc: BaseException) -> bool:
    """True for an error another attempt can get past (connection, timeout, leadership)."""
    if isinstance(exc, KafkaError):
        return bool(exc.retriable) or isinstance(exc, _AWAY)
    return isinstance(exc, (OSError, TimeoutError))


def _permanent(topic: str, exc: BaseException) -> PermanentKafkaError:
    return PermanentKafkaError(
        f"producing to Kafka topic {topic} failed with a non-retriable error "
        f"({type(exc).__name__}: {exc}); fix the topic or the permissions, then restart; "
        "nothing of the batch was committed, its frames will be read again"
    )


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
        """Produce ``letters`` and wait until the broker acknowledged all of them. A letter
        refused as too large is sent again cut down (module docstring); retriable errors are
        raised for the caller to retry, others as ``PermanentKafkaError``."""
        outcomes = await self._send_all(letters)
        again: list[DeadLetter] = []
        for letter, outcome in zip(letters, outcomes, strict=True):
            if isinstance(outcome, _TOO_LARGE) and (small := wire.shrunk(letter)) is not None:
                again.append(small)
            elif isinstance(outcome, BaseException):
                raise outcome if retriable(outcome) else _permanent(self._dlq_topic, outcome)
        if not again:
            return
        self._m.dead_letters_shrunk.inc(len(again))
        log.error(
            "the dead-letter topic refused %d dead letters as too large: sending them cut down "
            "to their first bytes, size and hash; make kafka.max_request_size and the topic's "
            "max.message.bytes agree (docs/kafka.md)",
            len(again),
            extra={"topic": self._dlq_topic},
        )
        for outcome in await self._send_all(again):
            if isinstance(outcome, BaseException):
                raise outcome if retriable(outcome) else _permanent(self._dlq_topic, outcome)

    async def _send_all(self, letters: Sequence[DeadLetter]) -> list[BaseException | None]:
        """Send every letter; per letter, the error it met (at send or at acknowledgement)."""
        futures: list[Any] = []
        for d in letters:
            try:
                futures.append(
                    await self._producer.send(
                        self._dlq_topic, d.value, key=d.key, headers=d.headers
                    )
                )
            except _TOO_LARGE as exc:  # the producer's own max_request_size check
                futures.append(exc)
        acks = [f for f in futures if not isinstance(f, BaseException)]
        results = iter(await asyncio.gather(*acks, return_exceptions=True))
        return [f if isinstance(f, BaseException) else _error_of(next(results)) for f in futures]

    async def dead_letter_rejected(self, batch: Batch, rejected: list[tuple[int, str]]) -> None:
        """Inside the batch's transaction: dead letters of the frames the database refused."""
        letters = []
        for i, detail in rejected:
            rec = batch.records[i]
            letters.append(
                wire.letter_of(rec, reason=wire.DB_REJECTED, detail=detail, stage=_STAGE_STORE)
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
                if not retriable(exc):
                    raise _permanent(self._dlq_topic, exc) from exc
                if attempt == 2:
                    raise ConnectionError(f"dead-letter topic unreachable: {exc!r}") from exc
                await asyncio.sleep(self._backoff_initial * 2**attempt)

    async def publish_alerts(self, changes: Sequence[AlertMessage]) -> None:
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

        await self._retry_forever("alerts", self._alerts_topic, publish)
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

    async def _retry_forever(
        self, stage: str, topic: str, op: Callable[[], Awaitable[None]]
    ) -> None:
        """``op`` until it works, while its errors are retriable (``PermanentKafkaError``
        otherwise: an alert message is small, so a refusal is a setup problem to fix)."""
        backoff = self._backoff_initial
        while True:
            try:
                await op()
                return
            except TRANSIENT_KAFKA as exc:
                if not retriable(exc):
                    raise _permanent(topic, exc) from exc
                self._m.write_retries.labels(stage=stage).inc()
                log.warning(
                    "producing to Kafka failed, retrying in %.2fs: %r",
                    backoff,
                    exc,
                    extra={"stage": stage},
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._backoff_max)


def _error_of(result: object) -> BaseException | None:
    return result if isinstance(result, BaseException) else None


async def delete_acked(acked: set[tuple[int, int]], writer_of: Callable[[int], Any]) -> None:
    """Delete the outbox rows ``acked`` ((shard, id), acknowledged by Kafka) from each shard's
    database (``writer_of(shard).pool``) and drop the deleted ones from ``acked``. Never
    raises: a row left behind is sent again by the next owner, which consumers deduplicate."""
    by_shard: dict[int, set[int]] = {}
    for shard, row_id in acked:
        by_shard.setdefault(shard, set()).add(row_id)
    for shard, ids in sorted(by_shard.items()):
        try:
            async with asyncio.timeout(_DELETE_ACKED_S):
                async with writer_of(shard).pool.acquire() as conn:
                    await outbox.delete(conn, ids)
        except Exception as exc:  # the database away: at-least-once still holds
            log.warning(
                "acknowledged alert messages not deleted from the outbox (%r): the next owner "
                "of their partitions sends them again",
                exc,
                extra={"shard": shard, "messages": len(ids)},
            )
            continue
        acked.difference_update((shard, i) for i in ids)
