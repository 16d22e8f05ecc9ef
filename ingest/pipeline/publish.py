"""Producing to Kafka for the writer: dead letters and alert messages.

Dead letters of frames that did not decode go out before their batch's transaction; those of
frames the database refused go out inside it (``dead_letter_rejected``); alert changes go out
after it. Giving up would lose a dead letter or an alert, so sends that failed for a retriable
reason (broker away, leader moving, timeouts: ``retriable``) are retried; inside a transaction
only a few times, then the failure becomes a ``ConnectionError`` that the storage writer treats
as transient (the whole batch goes again later).

A non-retriable error is never retried: it would fail the same way forever and hold the
partition. A dead letter too large on its own is sent once more cut down (``wire.shrunk``: the
value's first 4 KiB, its size and SHA-256, the dead-letter headers), in a batch of its own, so
the frame is still accounted for. The refusal may be the producer's own check
(kafka.max_request_size: nothing was sent, the letter alone is too large) or the broker's (the
topic's max.message.bytes, lowered after the start check read it). The broker refuses a
producer batch, which may hold several letters each of which fits alone: the letters of a
refused batch first go again each alone, as they are, and only one refused alone is cut down
(so no letter loses its value and headers for sharing a batch). The broker's refusal leaves a
gap in the idempotent producer's sequence on that partition, and every later batch there is
refused as ``OutOfOrderSequenceNumber``: the producer is replaced by a new one
(``Producers.renew``, a new producer id), which sends the letters to go alone (as they are or
cut down), each in a record batch of its own, all at once, and, as they were, the letters that
were behind the gap (never written, so not sent twice). The write lanes send at once with that
producer: each borrows it for one round of a send and its acknowledgements (``Producers.use``),
and a replaced one is stopped only when the last round using it is done, so another lane's
replacement fails only the letters behind its gap, which go again with the new one. A send
gives up (``PermanentKafkaError``) only after rounds in a row that got nothing through and each
needed a new producer of its own (a gap a new producer does not close). What a failed send got
acknowledged stays so (``OutgoingLetters``, kept by the writer across the retries of a batch,
for the decode step's letters and for those of the frames the database refused): it is
neither sent nor counted cut down again. Alert messages share the producer: a publish
caught by a gap is retried with a new one, so none is lost; some may go twice (at-least-once,
docs/kafka.md). Any other non-retriable error (authorisation, a missing or invalid topic, or a
cut-down letter refused again) raises ``PermanentKafkaError``: nothing of the batch is
committed, the worker exits with that one line (its frames are read again after the fix) and
the supervisor's restarts make the problem loud: for alert messages, the letters of frames the
database refused, and those of the decode step, which travel beside the batch's write
(ingest.pipeline.writer raises their send's ``PermanentKafkaError`` instead of retrying the
write).

Alert messages Kafka acknowledged leave the outbox with the next batch's transaction; on a
graceful stop or a revoke there is no next batch, so ``delete_acked`` deletes them at once:
otherwise the next owner finds them and publishes them a second time (catch-up run 1 of
docs/capacity.md: 9 raises of the batch in flight at SIGTERM).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
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
from aiokafka.partitioner import DefaultPartitioner

from alerts import outbox
from ingest.pipeline import wire
from ingest.pipeline.batch import Batch
from ingest.pipeline.logs import RateLimiter
from ingest.pipeline.metrics import PipelineMetrics
from ingest.pipeline.sink import AlertMessage
from ingest.pipeline.wire import DeadLetter

__all__ = [
    "TRANSIENT_KAFKA",
    "OutgoingLetters",
    "PermanentKafkaError",
    "Producer",
    "Producers",
    "Publisher",
    "Sender",
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
# Rounds of one send_dead in a row that acknowledged and cut down nothing, each ending with a
# new producer this send made for an OutOfOrderSequenceNumber: a gap a new producer cannot
# close. Rounds whose producer another send replaced do not count: that send made progress
# (it cut its refused letters down), and its new producer serves this one too.
_STUCK_ROUNDS: Final = 3


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


class Sender(Protocol):
    """aiokafka's per-record ``send``: all a T/CEC push needs (the gateway's receiver)."""

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> Awaitable[Any]: ...


class Producer(Sender, Protocol):
    """The part of aiokafka's AIOKafkaProducer used here."""

    def create_batch(self) -> Any: ...

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> Awaitable[Any]: ...

    async def partitions_for(self, topic: str) -> set[int]: ...


class Producers(Protocol):
    """The worker's producer, which a broker's refusal has replaced by a new one
    (``kafka_clients.RenewableProducer``). ``use`` lends the current one for a send and its
    acknowledgements: a replaced producer is stopped only once no send uses it any more."""

    def use(self) -> AbstractContextManager[Producer]: ...

    async def renew(self, failed: Producer) -> bool: ...


class OutgoingLetters:
    """A batch's dead letters that Kafka has not acknowledged yet, each with whether it goes in
    a batch of its own (its batch was refused as too large, or it is cut down). Kept across
    the retries of the batch's write: a send that failed half way leaves here only what is
    left, so the next one neither sends an acknowledged letter again nor cuts one down (and
    counts it in dead_letters_shrunk) twice."""

    def __init__(self, letters: Sequence[DeadLetter]) -> None:
        self.todo: list[tuple[DeadLetter, bool]] = [(d, False) for d in letters]


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

    async def send_dead(self, letters: Sequence[DeadLetter] | OutgoingLetters) -> None:
        """Produce ``letters`` and wait until the broker acknowledged all of them. A letter
        whose batch the broker refused as too large is sent again alone, as it is, then cut
        down if refused alone (or by the producer's own check), with a new producer when the
        broker refused it (module docstring); retriable errors are raised for the caller to retry
        (with the same ``OutgoingLetters``: what is acknowledged is not sent again), others as
        ``PermanentKafkaError``."""
        out = letters if isinstance(letters, OutgoingLetters) else OutgoingLetters(letters)
        stuck = 0
        while out.todo:
            with self._producers.use() as producer:
                results = await self._send_round(producer, out.todo)
            left: list[tuple[DeadLetter, bool]] = []
            gap = progress = False  # gap: the producer cannot go on on some partition
            cut = 0
            failure: BaseException | None = None
            for (letter, alone), (error, at_broker) in results:
                if error is None:
                    progress = True
                elif isinstance(error, OutOfOrderSequenceNumber):
                    # Behind a batch the broker refused on its partition (this send's or
                    # another's): never written, nothing wrong with it.
                    left.append((letter, alone))
                    gap = True
                elif isinstance(error, _TOO_LARGE) and at_broker and not alone:
                    # The broker refused the producer batch it was in, which may have held
                    # other letters (another lane's too): the letter may fit on its own, so it
                    # goes alone, as it is, and is cut down only if refused alone.
                    gap = True
                    left.append((letter, True))
                    progress = True
                elif isinstance(error, _TOO_LARGE):
                    # Refused alone by the broker, or by the producer's own check (which
                    # sent nothing: no gap): too large on its own.
                    gap |= at_broker
                    small = wire.shrunk(letter)
                    if small is not None:
                        left.append((small, True))
                        cut += 1
                        progress = True
                    else:  # as small as it gets already, and refused alone
                        left.append((letter, alone))
                        failure = failure or _permanent(self._dlq_topic, error)
                else:
                    left.append((letter, alone))
                    failure = failure or (
                        error if retriable(error) else _permanent(self._dlq_topic, error)
                    )
            out.todo = left
            if cut:
                self._shrunk(cut)
            if failure is not None:
                raise failure
            if progress:
                stuck = 0
            if gap and await self._producers.renew(producer) and not progress:
                stuck += 1
                if stuck >= _STUCK_ROUNDS:
                    raise _permanent(
                        self._dlq_topic,
                        RuntimeError(
                            f"{len(left)} dead letters refused as out of order by "
                            f"{stuck} new producers in a row"
                        ),
                    )

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
        (the producer batches them), the others each in a batch of its own, all at once.
        Per letter: the error it met, and whether the broker's (at acknowledgement) rather
        than the producer's own (at send)."""
        together = [item for item in todo if not item[1]]
        alone = [item for item in todo if item[1]]
        futures: list[Any] = []
        for d, _ in together:
            try:
                futures.append(
                    await producer.send(self._dlq_topic, d.value, key=d.key, headers=d.headers)
                )
            except TRANSIENT_KAFKA as exc:  # the producer's own size check, a full buffer
                futures.append(exc)
        for d, _ in alone:
            try:
                futures.append(await self._send_alone(producer, d))
            except TRANSIENT_KAFKA as exc:
                futures.append(exc)
        acks = [f for f in futures if not isinstance(f, BaseException)]
        results = iter(await asyncio.gather(*acks, return_exceptions=True))
        errors = [
            (f, False) if isinstance(f, BaseException) else (_error_of(next(results)), True)
            for f in futures
        ]
        return list(zip([*together, *alone], errors, strict=True))

    async def _send_alone(self, producer: Producer, d: DeadLetter) -> Any:
        """``d`` in a record batch of its own (closed, so no other send joins it), on the
        partition its key gives, as ``send`` would place it; its acknowledgement's future.
        Enqueued without waiting for the acknowledgement of the one before it (the producer
        sends them back to back): awaited one by one, with the producer's linger each, ~800
        cut-down letters outlasted the commit's wait for them (writer.DLQ_COMMIT_WAIT_S)."""
        partitions = sorted(await producer.partitions_for(self._dlq_topic))
        partition = _PARTITIONER(d.key, partitions, partitions)
        batch = producer.create_batch()
        if batch.append(key=d.key, value=d.value, timestamp=None, headers=d.headers) is None:
            raise RecordTooLargeError(f"a dead letter of {len(d.value or b'')} bytes")
        batch.close()
        return await producer.send_batch(batch, self._dlq_topic, partition=partition)

    def rejected_letters(self, batch: Batch, rejected: list[tuple[int, str]]) -> OutgoingLetters:
        """The dead letters of the frames of ``batch`` the database refused (``rejected``:
        (index, detail)), to send with ``dead_letter_rejected``. Made once per batch and kept
        across the attempts of its transaction (``ingest.pipeline.writer``)."""
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
        return OutgoingLetters(letters)

    async def dead_letter_rejected(self, letters: OutgoingLetters) -> None:
        """Inside the batch's transaction: the dead letters of the frames the database refused
        (``rejected_letters``). Every attempt, and the next transaction's after a
        ``ConnectionError``, takes up the same ``letters``: what Kafka acknowledged is not
        sent again, nor a letter cut down counted again."""
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
                kind=change.kind, rule=change.rule, severity=change.severity, change=change.change
            ).inc()

        async def publish() -> None:
            with self._producers.use() as producer:
                try:
                    futures = [
                        await producer.send(self._alerts_topic, change.message, key=change.key)
                        for change in changes
                    ]
                    await asyncio.gather(*futures)
                except OutOfOrderSequenceNumber:
                    # A gap here (a batch the broker refused): the next attempt sends them all
                    # with a new producer (some a second time: at-least-once, docs/kafka.md).
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
            except ProducerClosed:
                raise  # the worker's stop: nothing to retry with
            except TRANSIENT_KAFKA as exc:
                if not retriable(exc) and not isinstance(exc, OutOfOrderSequenceNumber):
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


_PARTITIONER: Final = DefaultPartitioner()  # the worker's producer's (ingest.pipeline.process)


def _error_of(result: object) -> BaseException | None:
    return result if isinstance(result, BaseException) else None


async def delete_acked(acked: set[tuple[int, int]], writer_of: Callable[[int], Any]) -> None:
    """Delete the outbox rows ``acked`` ((shard, id), acknowledged by Kafka) from each shard's
    database (``writer_of(shard).pool``) and drop the deleted ones from ``acked``. Never
    raises: a row left behind is sent again by the next owner, which consumers deduplicate."""
    by_shard: dict[int, set[int]] = {}
    for shard, row_id in acked:
        by_shard.setdefault(shard, set()).add(row_id)

    async def delete(shard: int, ids: set[int]) -> None:
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
            return
        acked.difference_update((shard, i) for i in ids)

    # Every shard at once, each on its own shard's pool: the caller's one bound
    # (closing.DELETE_PUBLISHED_S) covers them together, so a stalled shard does not use up
    # the others' time before their turn.
    await asyncio.gather(*(delete(shard, ids) for shard, ids in sorted(by_shard.items())))
