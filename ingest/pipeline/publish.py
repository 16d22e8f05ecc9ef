"""Producing to Kafka for the writer: dead letters and alert messages.

Dead letters of frames that did not decode go out before their batch's transaction; those of
frames the database refused go out inside it (``dead_letter_rejected``); alert changes go out
after it. Giving up would lose a dead letter or an alert, so sends that failed for a retriable
reason (broker away, leader moving, timeouts: ``retriable``) are retried; inside a transaction
only a few times, then the failure becomes a ``ConnectionError`` that the storage writer treats
as transient (the whole batch goes again later).

A non-retriable error is never retried: it would fail the same way forever and hold the
partition. A dead letter refused as too large is sent once more cut down (``wire.shrunk``: the
value's first 4 KiB, its size and SHA-256, the dead-letter headers), in a batch of its own, so
the frame is still accounted for. The refusal may be the producer's own check
(kafka.max_request_size: nothing was sent) or the broker's (the topic's max.message.bytes,
lowered after the start check read it). The broker's leaves a gap in the idempotent
producer's sequence on that partition, and every later batch there is refused as
``OutOfOrderSequenceNumber``: the producer is replaced by a new one (``Producers.renew``, a
new producer id), which sends the cut-down letter and, as they were, the letters that were
behind the gap (never written, so not sent twice). Alert messages share the producer: a send
caught by the replacement (``ProducerClosed``) or by a gap is retried with the new one, so
none is lost; some may go twice (at-least-once, docs/kafka.md). Any other non-retriable error
(authorisation, a missing or invalid topic, or a cut-down letter refused again) raises
``PermanentKafkaError``: nothing of the batch is committed. For alert messages and the letters
of frames the database refused, the worker exits with that one line (its frames are read again
after the fix) and the supervisor's restarts make the problem loud; the letters of the decode
step travel beside the batch's write, whose retries (``DeadLettersPending``, in
ingest.pipeline.writer) log it until it is fixed.

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
    OutOfOrderSequenceNumber,
    ProducerClosed,
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
    "Producers",
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
# A message never written that goes again as it is, with a new producer: it was behind a batch
# the broker refused on its partition (the idempotent producer's sequence has a gap there), or
# sent while the producer was being replaced.
_AGAIN: Final = (OutOfOrderSequenceNumber, ProducerClosed)
# Rounds of a dead-letter send: the letters, then those behind a refusal with a new producer
# and the refused ones cut down, and twice more should other sends renew the producer meanwhile.
_SEND_ROUNDS: Final = 4


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


class Producers(Protocol):
    """The worker's producer, which a broker's refusal has replaced by a new one
    (``kafka_clients.RenewableProducer``): always send with ``current``."""

    @property
    def current(self) -> Producer: ...

    async def renew(self, failed: Producer) -> None: ...


class Publisher:
    """Dead letters and alert messages, with the retries described in the module docstring."""

    def __init__(
        self,
        producers: Producers,
        metrics: PipelineMetrics,
        *,
        dlq_topic: str,
        alerts_topic: str,
        backoff_initial_s: float,
        backoff_max_s: float,
    ) -> None:
        self._producers = producers
        self._m = metrics
        self._dlq_topic = dlq_topic
        self._alerts_topic = alerts_topic
        self._backoff_initial = backoff_initial_s
        self._backoff_max = backoff_max_s
        self._limiter = RateLimiter(10.0)

    async def send_dead(self, letters: Sequence[DeadLetter]) -> None:
        """Produce ``letters`` and wait until the broker acknowledged all of them. A letter
        refused as too large is sent again cut down, with a new producer when the broker
        refused it (module docstring); retriable errors are raised for the caller to retry,
        others as ``PermanentKafkaError``."""
        # (letter, alone): a cut-down letter goes in a batch of its own, so that several of
        # them together cannot make a batch over the topic's limit again.
        todo = [(d, False) for d in letters]
        for _ in range(_SEND_ROUNDS):
            producer = self._producers.current
            again: list[tuple[DeadLetter, bool]] = []
            gap = False  # the producer cannot go on on some partition: a new one is needed
            cut = 0
            for (letter, alone), (error, at_broker) in await self._send_round(producer, todo):
                if error is None:
                    continue
                if isinstance(error, _AGAIN):
                    # Behind a batch the broker refused on its partition (or sent while the
                    # producer was replaced): never written, nothing wrong with it.
                    again.append((letter, alone))
                    gap = True
                elif isinstance(error, _TOO_LARGE):
                    small = wire.shrunk(letter)
                    if small is None:  # cut down already, and refused again
                        raise _permanent(self._dlq_topic, error)
                    again.append((small, True))
                    cut += 1
                    gap |= at_broker  # the producer's own check sent nothing
                else:
                    raise error if retriable(error) else _permanent(self._dlq_topic, error)
            if cut:
                self._shrunk(cut)
            if not again:
                return
            if gap:
                await self._producers.renew(producer)
            todo = again
        raise _permanent(self._dlq_topic, RuntimeError(f"{len(todo)} dead letters still refused"))

    def _shrunk(self, count: int) -> None:
        self._m.dead_letters_shrunk.inc(count)
        log.error(
            "the dead-letter topic refused %d dead letters as too large: sending them cut down "
            "to their first bytes, size and hash; make kafka.max_request_size and the topic's "
            "max.message.bytes agree (docs/kafka.md)",
            count,
            extra={"topic": self._dlq_topic},
        )

    async def _send_round(
        self, producer: Producer, todo: Sequence[tuple[DeadLetter, bool]]
    ) -> list[tuple[tuple[DeadLetter, bool], tuple[BaseException | None, bool]]]:
        """Each letter of ``todo`` sent once with ``producer``: those not ``alone`` together
        (the producer batches them), then the others one by one, each acknowledged before
        the next is sent. Per letter: the error it met, and whether from the broker."""
        together = [item for item in todo if not item[1]]
        errors = await self._send_all(producer, [d for d, _ in together])
        out = list(zip(together, errors, strict=True))
        for item in todo:
            if item[1]:
                (error,) = await self._send_all(producer, [item[0]])
                out.append((item, error))
        return out

    async def _send_all(
        self, producer: Producer, letters: Sequence[DeadLetter]
    ) -> list[tuple[BaseException | None, bool]]:
        """Send every letter; per letter, the error it met and whether the broker's (at
        acknowledgement) rather than the producer's own (at send)."""
        futures: list[Any] = []
        for d in letters:
            try:
                futures.append(
                    await producer.send(self._dlq_topic, d.value, key=d.key, headers=d.headers)
                )
            # The producer's own max_request_size check; or the producer replaced meanwhile.
            except (*_TOO_LARGE, ProducerClosed) as exc:
                futures.append(exc)
        acks = [f for f in futures if not isinstance(f, BaseException)]
        results = iter(await asyncio.gather(*acks, return_exceptions=True))
        return [
            (f, False) if isinstance(f, BaseException) else (_error_of(next(results)), True)
            for f in futures
        ]

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
            producer = self._producers.current
            try:
                futures = [
                    await producer.send(self._alerts_topic, change.message, key=change.key)
                    for change in changes
                ]
                await asyncio.gather(*futures)
            except _AGAIN:
                # The producer was replaced meanwhile (a dead letter the broker refused), or
                # has a gap here: the next attempt sends them all with the new one (some a
                # second time: at-least-once, docs/kafka.md).
                await self._producers.renew(producer)
                raise

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
                if not retriable(exc) and not isinstance(exc, _AGAIN):
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
