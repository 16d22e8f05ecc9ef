"""The dead-letter topic for people: read dead letters back, select some, and replay them.

``nev-ingest dlq list|replay`` (ingest/cli/dlq.py) is the front; this module holds the logic:
what a dead letter says (``Letter.of``), which ones a selection takes (``Selection``), what a
replayed record is (``replay_record``: the original key, value and headers, the pipeline's
``error.*``/``source.*``/``original.*`` headers removed), and the Kafka I/O (``read_letters``,
``replay``).

Replay is idempotent through the pipeline, not here: a replayed frame is a new record on its
source topic, and the writer skips rows it already holds (docs/storage.md, "Exactly once"), so
replaying the same letters twice stores their rows once.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from ingest.config import KafkaSettings
from ingest.errors import UserError
from ingest.pipeline.wire import (
    ERROR_DETAIL,
    ERROR_REASON,
    ORIGINAL_SIZE,
    SOURCE_OFFSET,
    SOURCE_PARTITION,
    SOURCE_TOPIC,
    TOO_LARGE,
    header,
)
from ingest.wiring import kafka_client_options, quiet_aiokafka

__all__ = [
    "Letter",
    "ReplayReport",
    "Selection",
    "read_letters",
    "replay",
    "replay_headers",
    "unreplayable",
]

# Header prefixes the pipeline adds to a dead letter; everything else came with the frame
# (received_at, gateway, peer, tcec_*) and goes back with it.
_ADDED_PREFIXES: Final = ("error.", "source.", "original.")


@dataclass(frozen=True, slots=True)
class Letter:
    """One dead letter as read from the dead-letter topic."""

    dlq_partition: int
    dlq_offset: int
    time_ms: int  # when the pipeline wrote it (the dead letter's Kafka timestamp)
    reason: str
    detail: str
    topic: str  # its source topic ("" when the header is missing)
    partition: int  # -1 when unknown
    offset: int  # -1 when unknown
    size: int  # bytes of the original value (original.size when the value was cut)
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    @classmethod
    def of(cls, rec: Any) -> Letter:
        """The letter of a consumed dead-letter record (aiokafka ``ConsumerRecord``)."""
        headers = tuple(rec.headers or ())
        value: bytes | None = rec.value
        return cls(
            dlq_partition=rec.partition,
            dlq_offset=rec.offset,
            time_ms=rec.timestamp,
            reason=_text(header(headers, ERROR_REASON)) or "unknown",
            detail=_text(header(headers, ERROR_DETAIL)),
            topic=_text(header(headers, SOURCE_TOPIC)),
            partition=_int(header(headers, SOURCE_PARTITION)),
            offset=_int(header(headers, SOURCE_OFFSET)),
            size=_int(header(headers, ORIGINAL_SIZE), len(value or b"")),
            key=rec.key,
            value=value,
            headers=headers,
        )

    def as_json(self) -> dict[str, object]:
        """The fields ``dlq list --format json`` prints (no value bytes: ``decode`` shows them)."""
        return {
            "reason": self.reason,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "time_ms": self.time_ms,
            "size": self.size,
            "detail": self.detail,
            "dlq_partition": self.dlq_partition,
            "dlq_offset": self.dlq_offset,
        }


def _text(raw: bytes | None) -> str:
    return raw.decode("utf-8", "replace") if raw is not None else ""


def _int(raw: bytes | None, default: int = -1) -> int:
    try:
        return int(raw) if raw is not None else default
    except ValueError:
        return default


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters a command takes; an empty field takes every letter."""

    reasons: frozenset[str] = frozenset()
    topics: frozenset[str] = frozenset()
    since_ms: int | None = None  # dead letters written at or after this time
    until_ms: int | None = None  # ... and before this one
    # dead-letter topic coordinates: partition -> inclusive offset ranges
    offsets: dict[int, tuple[tuple[int, int], ...]] = field(default_factory=dict)

    def takes(self, letter: Letter) -> bool:
        if self.reasons and letter.reason not in self.reasons:
            return False
        if self.topics and letter.topic not in self.topics:
            return False
        if self.since_ms is not None and letter.time_ms < self.since_ms:
            return False
        if self.until_ms is not None and letter.time_ms >= self.until_ms:
            return False
        if self.offsets:
            ranges = self.offsets.get(letter.dlq_partition, ())
            return any(lo <= letter.dlq_offset <= hi for lo, hi in ranges)
        return True


def parse_offsets(text: str) -> dict[int, tuple[tuple[int, int], ...]]:
    """``0:12,0:15-20,1:3`` (dead-letter topic ``partition:offset`` or ``partition:first-last``)
    -> partition -> ranges; ``ValueError`` naming the bad item otherwise."""
    out: dict[int, list[tuple[int, int]]] = {}
    for item in text.split(","):
        bad = ValueError(f"{item.strip()!r} is not PARTITION:OFFSET or PARTITION:FIRST-LAST")
        part, sep, span = item.strip().partition(":")
        first, dash, last = span.partition("-")
        try:
            p, lo = int(part), int(first)
            hi = int(last) if dash else lo
        except ValueError:
            raise bad from None
        if not sep or p < 0 or lo < 0 or hi < lo:
            raise bad
        out.setdefault(p, []).append((lo, hi))
    return {p: tuple(r) for p, r in out.items()}


def replay_headers(headers: Iterable[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The original record's headers: the dead letter's minus those the pipeline added."""
    return [(k, v) for k, v in headers if not k.startswith(_ADDED_PREFIXES)]


def unreplayable(letter: Letter, raw_topics: Iterable[str]) -> str | None:
    """Why ``letter`` cannot be replayed, or None when it can."""
    if letter.reason == TOO_LARGE or header(letter.headers, ORIGINAL_SIZE) is not None:
        return "value was cut (only its first bytes were kept)"
    if not letter.topic:
        return "no source.topic header"
    if letter.topic not in set(raw_topics):
        return f"source topic {letter.topic} is not a raw topic of this configuration"
    if not letter.value:
        return "no value"
    return None


async def read_letters(
    kafka: KafkaSettings, dlq_topic: str, since_ms: int | None = None
) -> AsyncIterator[Letter]:
    """Every dead letter of ``dlq_topic`` from the beginning (or from ``since_ms``) up to its
    end when the call started, so the command ends while the pipeline keeps writing. Reads
    without a consumer group: listing commits nothing and moves no one's lag."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaError

    consumer = AIOKafkaConsumer(
        **kafka_client_options(kafka),
        enable_auto_commit=False,
        max_partition_fetch_bytes=kafka.max_partition_fetch_bytes,
        fetch_max_bytes=kafka.fetch_max_bytes,
    )
    try:
        with quiet_aiokafka():
            await consumer.start()
            # aiokafka has no public call for one topic's partitions without subscribing
            cluster = await consumer._client.fetch_all_metadata()
            ids = cluster.partitions_for_topic(dlq_topic)
            if not ids:
                raise UserError(
                    f"kafka.topic_dlq = {dlq_topic}: no such topic on "
                    f"{kafka.bootstrap_servers}; check NEV_KAFKA_TOPIC_DLQ or --set kafka.topic_dlq"
                )
            tps = [TopicPartition(dlq_topic, p) for p in sorted(ids)]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            starts = await consumer.beginning_offsets(tps)
            if since_ms is not None:
                found = await consumer.offsets_for_times(dict.fromkeys(tps, since_ms))
                starts = {
                    tp: (ot.offset if ot is not None else ends[tp]) for tp, ot in found.items()
                }
            left = {tp for tp in tps if starts[tp] < ends[tp]}
            for tp in tps:
                consumer.seek(tp, starts[tp])
            while left:
                batch = await consumer.getmany(*left, timeout_ms=1000)
                for tp, records in batch.items():
                    for rec in records:
                        if rec.offset < ends[tp]:
                            yield Letter.of(rec)
                    if records and records[-1].offset + 1 >= ends[tp]:
                        left.discard(tp)
    except KafkaError as exc:
        raise UserError(
            f"reading {dlq_topic} from {kafka.bootstrap_servers} failed ({exc}); "
            "check that the broker answers: nev-ingest config check"
        ) from None
    finally:
        await consumer.stop()


@dataclass
class ReplayReport:
    """What ``replay`` did: counts by reason of the replayed letters, and why others were not."""

    replayed: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)  # why -> count


async def replay(
    kafka: KafkaSettings,
    letters: AsyncIterator[Letter],
    selection: Selection,
    raw_topics: Iterable[str],
    *,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
    progress_every_s: float = 2.0,
) -> ReplayReport:
    """Produce each selected letter's original record to its source topic (acks=all,
    idempotent producer: a retried send is not duplicated); ``dry_run`` produces nothing.
    ``progress(n)`` is called at most every ``progress_every_s`` with the count so far."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    raw = frozenset(raw_topics)
    report = ReplayReport()
    acked = 0  # letters the broker acknowledged (the rest of ``replayed`` is in flight)
    producer = None
    if not dry_run:
        producer = AIOKafkaProducer(
            **kafka_client_options(kafka),
            acks="all",
            enable_idempotence=True,
            max_request_size=kafka.max_request_size,
        )
    try:
        if producer is not None:
            with quiet_aiokafka():
                await producer.start()
        pending = []
        last = time.monotonic()
        async for letter in letters:
            if not selection.takes(letter):
                continue
            why = unreplayable(letter, raw)
            if why is not None:
                report.skipped[why] += 1
                continue
            if producer is not None:
                pending.append(
                    await producer.send(
                        letter.topic,
                        value=letter.value,
                        key=letter.key,
                        headers=replay_headers(letter.headers),
                    )
                )
                if len(pending) >= 1000:  # bound what is in flight; each send is acked
                    for fut in pending:
                        await fut
                        acked += 1
                    pending.clear()
            report.replayed[letter.reason] += 1
            if progress is not None and time.monotonic() - last >= progress_every_s:
                progress(sum(report.replayed.values()))
                last = time.monotonic()
        for fut in pending:
            await fut
            acked += 1
    except KafkaError as exc:
        unanswered = sum(report.replayed.values()) - acked
        raise UserError(
            f"replay stopped ({exc}): {acked} letters acknowledged by the broker, {unanswered} "
            "sent without an answer; a letter sent twice is stored once, so run the same "
            "replay again when the broker answers"
        ) from None
    finally:
        if producer is not None:
            await producer.stop()
    return report
