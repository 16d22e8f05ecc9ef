"""The Kafka contract of nev-ingest (docs/kafka.md): raw-frame records in, dead letters out.

A raw record's value is exactly one frame as the device sent it; its key is the device
identity (VIN, charger id or pack id) so that one device stays on one partition and its frames
keep their order; its headers carry the gateway's receive time and where the frame came from.
On the T/CEC 102 topic a record's value is one push's business JSON instead, and its headers
also name the interface, the operator and the push time (``TCEC_HEADERS``).
A dead letter is the original record, untouched, plus headers saying why and where from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Final, NamedTuple, Protocol

from ingest.config.kafka_limits import TOO_LARGE_PREFIX_BYTES

__all__ = [
    "DLQ_HEADERS",
    "GATEWAY",
    "PEER",
    "PIPELINE_REASONS",
    "RECEIVED_AT",
    "TCEC_HEADERS",
    "TCEC_INTERFACE",
    "TCEC_OPERATOR_ID",
    "TCEC_SEQ",
    "TCEC_TIMESTAMP",
    "DeadLetter",
    "Headers",
    "Record",
    "dead_letter",
    "header",
    "header_bytes",
    "letter_of",
    "received_at_ms",
    "shrunk",
    "tcec_headers",
    "too_large_letter_of",
]

Headers = Sequence[tuple[str, bytes]]

# Raw-frame record headers (all optional; values are UTF-8 text).
RECEIVED_AT: Final = "received_at"  # gateway receive time, epoch milliseconds, decimal text
GATEWAY: Final = "gateway"  # gateway instance that received the frame
PEER: Final = "peer"  # device's address as the gateway saw it (ip:port)
# T/CEC 102 push headers (required on kafka.topic_tcec; UTF-8 text), from the envelope the
# gateway opened: the interface name (notification_stationStatus, ...), the OperatorID
# (9 characters) and the envelope TimeStamp (yyyyMMddHHmmss, China time).
TCEC_INTERFACE: Final = "tcec_interface"
TCEC_OPERATOR_ID: Final = "tcec_operator_id"
TCEC_TIMESTAMP: Final = "tcec_timestamp"
TCEC_HEADERS: Final = (TCEC_INTERFACE, TCEC_OPERATOR_ID, TCEC_TIMESTAMP)
# Optional: the envelope's Seq (4 digits). With TimeStamp it tells apart two pushes of one
# second (charger.tcec.push_time); records of gateways that did not send it go without.
TCEC_SEQ: Final = "tcec_seq"


def tcec_headers(
    interface: str,
    operator_id: str,
    timestamp: str,
    *,
    seq: str | None = None,
    received_ms: int | None = None,
) -> list[tuple[str, bytes]]:
    """The headers of a T/CEC 102 push's record, as the gateway sets them (one list for the
    gateway, `rules test` and the tests, so the three cannot drift apart)."""
    headers = [
        (TCEC_INTERFACE, interface.encode()),
        (TCEC_OPERATOR_ID, operator_id.encode()),
        (TCEC_TIMESTAMP, timestamp.encode()),
    ]
    if seq is not None:
        headers.append((TCEC_SEQ, seq.encode()))
    if received_ms is not None:
        headers.append((RECEIVED_AT, str(received_ms).encode()))
    return headers


# Dead-letter headers, added after the original ones.
ERROR_REASON: Final = "error.reason"  # stable machine-readable reason (metrics label too)
ERROR_DETAIL: Final = "error.detail"  # for people: what was wrong, where in the frame
ERROR_STAGE: Final = "error.stage"  # decode | store
SOURCE_TOPIC: Final = "source.topic"
SOURCE_PARTITION: Final = "source.partition"
SOURCE_OFFSET: Final = "source.offset"
SOURCE_TIMESTAMP: Final = "source.timestamp"  # Kafka timestamp of the original record, epoch ms
# Only on a dead letter whose value was cut (too_large, or shrunk to fit the DLQ topic):
ORIGINAL_SIZE: Final = "original.size"  # bytes of the original value, decimal
ORIGINAL_SHA256: Final = "original.sha256"  # SHA-256 of the original value, lowercase hex
DLQ_HEADERS: Final = (
    ERROR_REASON,
    ERROR_DETAIL,
    ERROR_STAGE,
    SOURCE_TOPIC,
    SOURCE_PARTITION,
    SOURCE_OFFSET,
    SOURCE_TIMESTAMP,
)

# Reasons the pipeline adds to the decoder's (ingest.decoders.errors.REASONS).
EMPTY_VALUE: Final = "empty_value"  # a record without a value (tombstone) on a raw topic
DECODER_ERROR: Final = "decoder_error"  # the decoder raised something else than FrameError (a bug)
DB_REJECTED: Final = "db_rejected"  # the database refused the frame's rows permanently
NO_DECODER: Final = "no_decoder"  # the topic's entity kind has no decoder in this version
# the frame's time is outside the stored window (ingest.pipeline.timewindow)
TIME_OUT_OF_WINDOW: Final = "time_out_of_window"
TOO_LARGE: Final = "too_large"  # value over kafka.max_record_bytes (kept: a prefix, size, hash)
MISSING_HEADER: Final = "missing_header"  # a header the topic requires is absent (T/CEC 102)
BAD_HEADER: Final = "bad_header"  # a required header's value is malformed (T/CEC 102)
PIPELINE_REASONS: Final = frozenset(
    {
        EMPTY_VALUE,
        DECODER_ERROR,
        DB_REJECTED,
        NO_DECODER,
        TIME_OUT_OF_WINDOW,
        TOO_LARGE,
        MISSING_HEADER,
        BAD_HEADER,
    }
)

# A dead letter's detail is for people; cap it so one bad frame cannot make a huge record.
MAX_DETAIL_BYTES: Final = 1000


class DeadLetter(NamedTuple):
    """A record for the dead-letter topic: the original key/value/headers plus the error."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def header_bytes(headers: Headers) -> int:
    """The bytes of ``headers``: names and values (Kafka allows a header without a value)."""
    size = 0
    for name, value in headers:
        size += len(name)
        if value is not None:
            size += len(value)
    return size


def header(headers: Headers, name: str) -> bytes | None:
    """The value of header ``name`` (the last one wins when repeated), or None."""
    found: bytes | None = None
    for key, value in headers:
        if key == name:
            found = value
    return found


def received_at_ms(headers: Headers, fallback_ms: int) -> int:
    """The ``received_at`` header as epoch ms; the Kafka timestamp when it is absent or bad.

    A missing or malformed header does not make the frame bad: the data is still good, and the
    record's own timestamp (set by the gateway's producer) is the next best receive time.
    Runs once per frame: the first ``received_at`` header counts.
    """
    for key, raw in headers:
        if key == RECEIVED_AT:
            try:
                value = int(raw)
            except (TypeError, ValueError):  # TypeError: a header without a value (None)
                return fallback_ms
            # Plausible epoch ms (2001..2286); seconds or microseconds sent by mistake fall back.
            if 1_000_000_000_000 <= value < 10_000_000_000_000:
                return value
            return fallback_ms
    return fallback_ms


def dead_letter(
    *,
    key: bytes | None,
    value: bytes | None,
    headers: Headers,
    reason: str,
    detail: str,
    stage: str,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int,
    more: Headers = (),
) -> DeadLetter:
    """The dead letter of one raw record: everything original, then the error headers, then
    ``more`` (a reason's own headers, e.g. the time window of ``time_out_of_window``)."""
    extra = _error_headers(reason, detail, stage, topic, partition, offset, timestamp_ms)
    return DeadLetter(key, value, [*headers, *extra, *more])


def _error_headers(
    reason: str, detail: str, stage: str, topic: str, partition: int, offset: int, ts_ms: int
) -> list[tuple[str, bytes]]:
    return [
        (ERROR_REASON, reason.encode()),
        (ERROR_DETAIL, detail.encode(errors="replace")[:MAX_DETAIL_BYTES]),
        (ERROR_STAGE, stage.encode()),
        (SOURCE_TOPIC, topic.encode()),
        (SOURCE_PARTITION, str(partition).encode()),
        (SOURCE_OFFSET, str(offset).encode()),
        (SOURCE_TIMESTAMP, str(ts_ms).encode()),
    ]


class Record(Protocol):
    """The fields of aiokafka's ConsumerRecord the pipeline reads."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Any: ...


def letter_of(
    rec: Record, *, reason: str, detail: str, stage: str, more: Headers = ()
) -> DeadLetter:
    """``dead_letter`` of a consumed record: its key, value, headers and where it came from."""
    extra = _error_headers(
        reason, detail, stage, rec.topic, rec.partition, rec.offset, rec.timestamp
    )
    return DeadLetter(rec.key, rec.value, [*(rec.headers or ()), *extra, *more])


def _cut_headers(value: bytes) -> list[tuple[str, bytes]]:
    return [
        (ORIGINAL_SIZE, str(len(value)).encode()),
        (ORIGINAL_SHA256, hashlib.sha256(value).hexdigest().encode()),
    ]


def too_large_letter_of(rec: Record, value: bytes, *, detail: str, stage: str) -> DeadLetter:
    """The dead letter of a consumed record whose ``value`` is over the size limit: the value's
    first ``TOO_LARGE_PREFIX_BYTES`` (the frame header identifies the device), its size and
    hash, and the record's headers and coordinates."""
    letter = letter_of(rec, reason=TOO_LARGE, detail=detail, stage=stage)
    return DeadLetter(
        letter.key, value[:TOO_LARGE_PREFIX_BYTES], [*letter.headers, *_cut_headers(value)]
    )


def shrunk(letter: DeadLetter) -> DeadLetter | None:
    """A dead letter the dead-letter topic refused as too large, cut to what surely fits: the
    value's prefix, its size and hash, and only the dead-letter headers (the original headers
    may be what made it large). None when it is already that small: nothing left to cut."""
    value = letter.value or b""
    keep = [(k, v) for k, v in letter.headers if k in DLQ_HEADERS or k == RECEIVED_AT]
    if header(letter.headers, ORIGINAL_SIZE) is not None:
        keep.extend((k, v) for k, v in letter.headers if k in (ORIGINAL_SIZE, ORIGINAL_SHA256))
    else:
        keep.extend(_cut_headers(value))
    key = letter.key[:256] if letter.key is not None else None
    small = DeadLetter(key, value[:TOO_LARGE_PREFIX_BYTES], keep)
    if small == letter:
        return None
    return small
