"""Batches: the unit of work between Kafka and one database transaction.

A batch holds the decoded frames of consecutive records of one or more partitions (in offset
order per partition), the dead letters of the records that did not decode, and for each
partition the offset range it covers: ``start`` (the offset the database must hold before this
batch, the fence) and ``next`` (the offset stored with the rows). Decoding happens when records
are added, so the CPU work of batch N+1 overlaps the database write of batch N.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from operator import attrgetter
from typing import Any, Final, Protocol

from contract.kinds import Decoded
from ingest.config.kafka_settings import DEFAULT_MAX_RECORD_BYTES
from ingest.decoders.errors import FrameError
from ingest.pipeline import wire
from ingest.pipeline.backpressure import Held
from ingest.pipeline.decoding import (
    Batched,
    Decode,
    DecodeBatch,
    DecodeWithHeaders,
    Result,
    TopicDecoder,
    WithHeaders,
    decode_records,
    header_sizes,
)
from ingest.pipeline.limits import cut_letter, without_bulk
from ingest.pipeline.logs import RateLimiter
from ingest.pipeline.timewindow import FRAME_TIME, WINDOW_END, WINDOW_START, TimeWindow
from ingest.pipeline.wire import DeadLetter, Headers, Record
from storage.shards import shard_of
from storage.unsure import Unsure

__all__ = [
    "Batch",
    "BatchBuilder",
    "Batched",
    "Decode",
    "DecodeBatch",
    "DecodeWithHeaders",
    "Record",
    "TopicDecoder",
    "TopicPartitionLike",
    "WithHeaders",
    "lane_of",
    "partition_runs",
]

log = logging.getLogger(__name__)

_STAGE_DECODE: Final = "decode"


class TopicPartitionLike(Protocol):
    """aiokafka's TopicPartition (a NamedTuple), typed for mypy."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    def __hash__(self) -> int: ...


@dataclass(eq=False)
class Batch:
    """Decoded frames + dead letters + per-partition offset ranges; see the module docstring."""

    generation: int
    created: float = field(default_factory=time.monotonic)
    frames: list[Decoded] = field(default_factory=list)  # of any kind: batches span topics
    records: list[Record] = field(default_factory=list)  # parallel to frames (DLQ of db rejects)
    received_ms: list[int] = field(default_factory=list)  # parallel to frames
    record_bytes: list[int] = field(default_factory=list)  # parallel to frames (BatchBuilder.add)
    dead: list[DeadLetter] = field(default_factory=list)
    dead_reasons: Counter[tuple[str, str]] = field(default_factory=Counter)  # (topic, reason)
    consumed: Counter[str] = field(default_factory=Counter)  # by topic
    decoded: Counter[str] = field(default_factory=Counter)  # by topic
    start: dict[Any, int | None] = field(default_factory=dict)  # tp -> fence (stored offset)
    next: dict[Any, int] = field(default_factory=dict)  # tp -> offset to store
    first_ts_ms: dict[Any, int] = field(default_factory=dict)  # tp -> oldest record timestamp
    size: int = 0  # records in the batch (frames + dead letters)
    held_bytes: int = 0  # their bytes (``_held_bytes``), against max_in_flight_bytes
    dead_sent: bool = False  # dead letters of decode failures already produced (retry-safe)
    alert_changes: Any = None  # the rule engine's output for this batch, computed once
    alert_work: Any = None  # that evaluation while under way (ingest.pipeline.evaluation)
    alert_moves: Any = None  # entities restored from another partition (pipeline.moved)
    # What the last transaction to run the sink's hook saved (alert messages, outbox rows
    # deleted): a retry that finds that transaction committed after all publishes them
    # (storage/unsure.py), also when the retry is a later write of the batch.
    alert_saved: Any = None
    alert_entities: Any = None  # its frames' entities, walked once (pipeline.entities)
    # No frames: a transaction for alert changes that came without a batch (a rules reload,
    # restored alerts of removed rules), so they do not wait for the next frame.
    changes_only: bool = False
    # Its attempt whose COMMIT got no answer, for the retry (storage/unsure.py): kept here for
    # a batch without offsets, which the writer cannot tell from another changes-only batch
    # (made by its first write: none for a batch with frames).
    unsure: Unsure | None = None
    # The database (storage.shards) the batch goes to: a writer lane's batches are all of one
    # shard (``split``), and a changes-only batch is made once per shard.
    shard: int = 0

    def abandon(self) -> None:
        """Given up uncommitted (``Writer.abandon``): the alert changes its evaluation took
        from the waiting ones are lost with it, no longer held for it (pipeline/waiting.py)."""
        if self.alert_work is not None:
            self.alert_work.hold.abandoned = True

    @property
    def partitions(self) -> list[Any]:
        return list(self.next)

    @property
    def held(self) -> Held:
        """What the batch counts against the in-flight bounds (ingest.pipeline.backpressure)."""
        return Held(self.size, self.held_bytes)

    def split(self, lanes: int, shards: int = 1) -> list[tuple[int, Batch]]:
        """This batch's parts per writer lane, each with its partitions' frames, dead letters
        and offset ranges; the batch itself when it all goes to one lane. Each shard has
        ``lanes`` lanes of its own (shard ``s``: lanes ``s * lanes`` ..), so that a part is
        written to one database and a shard that is down holds up only its own lanes."""
        lane = {
            tp: shard_of(tp[1], shards) * lanes + lane_of(tp[0], tp[1], lanes) for tp in self.next
        }
        used = set(lane.values())
        if len(used) <= 1:
            index = used.pop() if used else 0
            self.shard = index // lanes
            return [(index, self)]
        parts = {
            i: Batch(self.generation, created=self.created, shard=i // lanes) for i in sorted(used)
        }
        for tp, i in lane.items():
            part = parts[i]
            part.start[tp] = self.start[tp]
            part.next[tp] = self.next[tp]
            if tp in self.first_ts_ms:
                part.first_ts_ms[tp] = self.first_ts_ms[tp]
        # Each run of one partition's records goes to its part as slices.
        for where, at, end in partition_runs(self.records):
            part = parts[lane[where]]
            part.decoded[where[0]] += end - at
            part.frames += self.frames[at:end]
            part.records += self.records[at:end]
            part.received_ms += self.received_ms[at:end]
            part.record_bytes += self.record_bytes[at:end]
        for d in self.dead:
            parts[lane[_dead_tp(d)]].dead.append(d)
        for part in parts.values():
            part.dead_sent = self.dead_sent
            part.consumed = part.decoded + Counter(_dead_topic(d) for d in part.dead)
            part.dead_reasons = Counter((_dead_topic(d), _dead_reason(d)) for d in part.dead)
            part.size = len(part.records) + len(part.dead)
            part.held_bytes = _held_bytes(part.record_bytes, part.dead)
        return sorted(parts.items())

    def drop_partitions(self, tps: Iterable[Any]) -> Held:
        """Remove everything of partitions ``tps`` (fenced or revoked); returns what it held."""
        gone = set(tps) & set(self.next)
        if not gone:
            return Held(0, 0)
        before = self.held
        keep = [i for i, r in enumerate(self.records) if _tp_of(r) not in gone]
        self.frames = [self.frames[i] for i in keep]
        self.records = [self.records[i] for i in keep]
        self.received_ms = [self.received_ms[i] for i in keep]
        self.record_bytes = [self.record_bytes[i] for i in keep]
        dead = [d for d in self.dead if _dead_tp(d) not in gone]
        self.dead = dead
        self.decoded = Counter(r.topic for r in self.records)
        self.consumed = self.decoded + Counter(_dead_topic(d) for d in dead)
        self.dead_reasons = Counter((_dead_topic(d), _dead_reason(d)) for d in dead)
        for tp in gone:
            self.start.pop(tp, None)
            self.next.pop(tp, None)
            self.first_ts_ms.pop(tp, None)
        self.size = len(self.records) + len(self.dead)
        self.held_bytes = _held_bytes(self.record_bytes, dead)
        self.alert_entities = None  # of the frames gone too: walked again if asked
        return Held(before.frames - self.size, before.bytes - self.held_bytes)


def _letter_bytes(d: DeadLetter) -> int:
    """A dead letter's bytes: its value, key and headers (copied from the record's)."""
    return len(d.value or b"") + len(d.key or b"") + wire.header_bytes(d.headers)


def _held_bytes(record_bytes: Iterable[int], dead: Iterable[DeadLetter]) -> int:
    """The bytes of a batch's contents, from the sizes ``BatchBuilder`` counted when they were
    added (the kept records' are kept beside them): a part or a remainder of a batch gives
    back exactly what it took, without counting the headers again."""
    return sum(record_bytes) + sum(map(_letter_bytes, dead))


def lane_of(topic: str, partition: int, lanes: int) -> int:
    """The writer lane of a partition: always the same one (keeps the partition's order)."""
    return (zlib.crc32(topic.encode()) + partition) % lanes


_WHERE: Final = attrgetter("topic", "partition")


def partition_runs(records: Sequence[Record]) -> Iterator[tuple[tuple[str, int], int, int]]:
    """The runs of ``records`` of one (topic, partition), in order: (that pair, start, end).
    The builder adds a partition's records a fetch at a time, so they come in runs of
    hundreds: each run is found in C (``groupby``), not by a Python statement per record."""
    at = 0
    for where, run in groupby(map(_WHERE, records)):
        end = at + len(list(run))
        yield where, at, end
        at = end


def _tp_of(record: Record) -> tuple[str, int]:
    return (record.topic, record.partition)


def _dead_header(d: DeadLetter, name: str) -> bytes:
    return wire.header(d.headers, name) or b""


def _dead_tp(d: DeadLetter) -> tuple[str, int]:
    return (
        _dead_header(d, wire.SOURCE_TOPIC).decode(),
        int(_dead_header(d, wire.SOURCE_PARTITION) or b"-1"),
    )


def _dead_topic(d: DeadLetter) -> str:
    return _dead_header(d, wire.SOURCE_TOPIC).decode()


def _dead_reason(d: DeadLetter) -> str:
    return _dead_header(d, wire.ERROR_REASON).decode()


class BatchBuilder:
    """Accumulates records into the open batch, decoding each one as it arrives.

    ``decoders`` maps a topic to its entity kind's decoder (a topic without a decoder sends its
    records to the DLQ with ``no_decoder``; the worker only subscribes to topics it can decode,
    so that is a configuration mistake, reported loudly, never a stuck partition). ``window``:
    a decoded frame whose time is outside it goes to the DLQ with ``time_out_of_window``
    (``ingest.pipeline.timewindow``) and never reaches the database.
    """

    def __init__(
        self,
        decoders: Mapping[str, TopicDecoder],
        *,
        generation: int = 0,
        window: TimeWindow | None = None,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        max_value_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    ) -> None:
        self._decoders = decoders
        self._window = window
        self._clock_ms = clock_ms
        # Checked before decoding: an oversized record's dead letter must not carry the whole
        # value, which could exceed what the dead-letter topic accepts (docs/kafka.md).
        self._max_value = max_value_bytes
        self._limiter = RateLimiter(10.0)
        self.generation = generation
        self.batch = Batch(generation)

    @property
    def size(self) -> int:
        return self.batch.size

    def age(self, now: float | None = None) -> float:
        """Seconds since the open batch received its first record (0 when empty)."""
        if self.batch.size == 0:
            return 0.0
        return (time.monotonic() if now is None else now) - self.batch.created

    def add(self, tp: Any, records: Sequence[Record], start: int | None) -> Held:
        """Decode ``records`` of partition ``tp`` (in offset order) into the open batch;
        returns what they hold against the in-flight bounds.

        ``start`` is the offset the database holds for ``tp`` before this batch (None when it
        holds none); it is used only for the first records of ``tp`` in this batch.
        """
        if not records:
            return Held(0, 0)
        b = self.batch
        held_before = b.held_bytes
        if b.size == 0:
            b.created = time.monotonic()
        topic = tp.topic
        entry = self._decoders.get(topic)
        if tp not in b.next:
            b.start[tp] = start
            b.first_ts_ms[tp] = records[0].timestamp
        b.size += len(records)
        b.consumed[topic] += len(records)
        received_of = wire.received_at_ms
        receipts = [received_of(rec.headers, rec.timestamp) for rec in records]
        # Each record's headers counted once: for the input limits and the in-flight bytes.
        sizes = header_sizes(records)
        results = self._decode(entry, records, receipts, sizes)
        # This loop runs once per frame: locals instead of attribute lookups.
        frames, recs, received_ms = b.frames, b.records, b.received_ms
        kept_bytes = b.record_bytes
        before = len(frames)
        window = self._window
        now_ms = self._clock_ms()
        # The past bound is one number per call; the future bound is per frame (received_at).
        oldest = window.start(now_ms) if window is not None else 0
        ahead = window.max_future_ms if window is not None else 0
        for rec, received, rows, size in zip(records, receipts, results, sizes, strict=True):
            if rows is None:  # decided before decoding: empty, oversized or no decoder
                self._refuse(rec, topic)
                continue
            if isinstance(rows, BaseException):
                if isinstance(rows, FrameError):
                    self._dead(rec, rows.reason, str(rows), letter=cut_letter(rec, rows))
                else:
                    # A decoder bug must not stop the partition: the frame is kept in the DLQ
                    # for the fix, and the traceback is logged (rate-limited) for the report.
                    self._dead(rec, wire.DECODER_ERROR, repr(rows), exc_info=rows)
                continue
            ts = rows.ts_ms
            if window is not None and ts is not None and (ts < oldest or ts > received + ahead):
                self._out_of_window(rec, window, ts, received, now_ms)
                continue
            frames.append(rows)
            recs.append(rec)
            received_ms.append(received)
            # A kept record's bytes: value, key and headers (up to 64 B and 8 KiB by the input
            # limits: on a valid frame a producer could still make them 25x its value).
            key = rec.key
            kept_bytes.append(len(rec.value or b"") + (len(key) if key else 0) + size)
        if len(frames) > before:
            b.decoded[topic] += len(frames) - before
            b.held_bytes += sum(kept_bytes[before:])
        b.next[tp] = records[-1].offset + 1
        return Held(len(records), b.held_bytes - held_before)

    def decode_stored(self, topic: str, records: Sequence[Record]) -> list[Decoded]:
        """The frames of records stored already, read again after a crash only to refill the
        pending latest_state tuples (ingest/pipeline/latest_keeper.py): decoded as ``add``
        decodes them; rejects and out-of-window frames are left out, without dead letters or
        metrics (they had theirs when first read)."""
        receipts = [wire.received_at_ms(rec.headers, rec.timestamp) for rec in records]
        results = self._decode(self._decoders.get(topic), records, receipts)
        window = self._window
        now_ms = self._clock_ms()
        oldest = window.start(now_ms) if window is not None else 0
        ahead = window.max_future_ms if window is not None else 0
        out: list[Decoded] = []
        for received, rows in zip(receipts, results, strict=True):
            if rows is None or isinstance(rows, BaseException):
                continue
            ts = rows.ts_ms
            if window is None or ts is None or oldest <= ts <= received + ahead:
                out.append(rows)
        return out

    def _refuse(self, rec: Record, topic: str) -> None:
        """Dead-letter a record refused before decoding (``_decode`` gave it no result); its
        letter leaves out a key or headers over their limits, as a decoded record's would."""
        value = rec.value
        if value and len(value) > self._max_value:
            reason = wire.TOO_LARGE
            detail = (
                f"record value of {len(value)} bytes is over kafka.max_record_bytes "
                f"({self._max_value}); kept: the first bytes, the size and the SHA-256"
            )
            letter = wire.too_large_letter_of(rec, value, detail=detail, stage=_STAGE_DECODE)
        else:
            if not value:
                reason, detail = wire.EMPTY_VALUE, "record has no value (one raw frame)"
            else:
                reason, detail = wire.NO_DECODER, f"no decoder for topic {topic}"
            letter = wire.letter_of(rec, reason=reason, detail=detail, stage=_STAGE_DECODE)
        self._dead(rec, reason, detail, letter=without_bulk(letter, rec))

    def _decode(
        self,
        entry: TopicDecoder | None,
        records: Sequence[Record],
        receipts: list[int],
        sizes: list[int] | None = None,
    ) -> list[Result | None]:
        """One result per record, in order; None for a record refused before decoding.
        ``sizes``: the records' header bytes (``header_sizes``), when counted already."""
        if entry is None:
            return [None] * len(records)
        return decode_records(entry, records, receipts, self._max_value, self._limiter, sizes)

    def take(self) -> Batch:
        """Seal and return the open batch; a new empty one takes its place."""
        sealed = self.batch
        self.batch = Batch(self.generation)
        return sealed

    def reset(self, generation: int) -> Batch:
        """Drop the open batch (rebalance) and start a new generation; returns the dropped one."""
        self.generation = generation
        return self.take()

    def _out_of_window(
        self, rec: Record, window: TimeWindow, ts: int, received: int, now_ms: int
    ) -> None:
        more = [
            (FRAME_TIME, str(ts).encode()),
            (WINDOW_START, str(window.start(now_ms)).encode()),
            (WINDOW_END, str(window.end(received)).encode()),
        ]
        detail = window.describe(ts, received, now_ms)
        self._dead(rec, wire.TIME_OUT_OF_WINDOW, detail, more=more)

    def _dead(
        self,
        rec: Record,
        reason: str,
        detail: str,
        *,
        exc_info: bool | BaseException = False,
        more: Headers = (),
        letter: DeadLetter | None = None,
    ) -> None:
        if letter is None:
            letter = wire.letter_of(
                rec, reason=reason, detail=detail, stage=_STAGE_DECODE, more=more
            )
        self.batch.dead.append(letter)
        self.batch.held_bytes += _letter_bytes(letter)
        self.batch.dead_reasons[(rec.topic, reason)] += 1
        suppressed = self._limiter.allow(reason)
        if suppressed is not None:
            log.warning(
                "frame sent to the dead-letter topic: %s",
                reason,
                extra={
                    "reason": reason,
                    "detail": detail[:300],
                    "topic": rec.topic,
                    "partition": rec.partition,
                    "offset": rec.offset,
                    "suppressed": suppressed,
                },
                exc_info=exc_info,
            )
