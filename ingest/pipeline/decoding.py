"""How the batch builder calls a topic's decoder: the three forms (one frame; one frame with
its record's headers; all the values of one ``add`` call at once) and what a decoder's failure
becomes. A ``FrameError`` is the frame's reject reason; any other exception (and a panic of the
native extension) is a decoder bug, ``decoder_error``: the frame goes to the dead-letter topic
and its partition moves on. A batch call that fails is retried one frame at a time, so only
the frame that hits the bug is lost to the DLQ.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Final

from contract.kinds import Decoded
from contract.rows import FrameRows
from ingest.decoders.errors import FrameError
from ingest.pipeline.limits import check_decoded, refuse_record
from ingest.pipeline.logs import RateLimiter
from ingest.pipeline.wire import Headers, Record, header_bytes

__all__ = [
    "Batched",
    "Decode",
    "DecodeBatch",
    "DecodeWithHeaders",
    "Result",
    "TopicDecoder",
    "WithHeaders",
    "decode_records",
    "header_sizes",
    "rows_limited",
]

log = logging.getLogger(__name__)

_HEADERS: Final = attrgetter("headers")

# Decode one frame: (raw bytes, received_at epoch ms) -> rows, or FrameError.
Decode = Callable[[bytes, int], Decoded]
# The same with the record's headers, for a topic whose records need them (T/CEC 102 pushes:
# the interface, operator id and push time travel in headers). A separate form so that the
# frame topics, the hot path, never pay for reading headers they do not use.
DecodeWithHeaders = Callable[[bytes, int, Headers], Decoded]


@dataclass(frozen=True, slots=True)
class WithHeaders:
    """A topic's decoder that takes the record's headers too (see ``DecodeWithHeaders``)."""

    decode: DecodeWithHeaders


# Decode the values of one ``add`` call at once: (values, received_at epoch ms) -> one result
# per value, in order, a rejected frame as a FrameError instance (not raised). The frame
# topics' form: one native call per batch, the GIL released while it parses.
DecodeBatch = Callable[[Sequence[bytes], Sequence[int]], Sequence[Decoded | FrameError]]


@dataclass(frozen=True, slots=True)
class Batched:
    """A topic's decoder that takes all the values of one ``add`` call (see ``DecodeBatch``)."""

    decode: DecodeBatch


TopicDecoder = Decode | WithHeaders | Batched


def rows_limited(decode: object) -> bool:
    """Whether the batch decoder ``decode`` applies the row limits itself (its attribute
    ``rows_limited`` is True): the pipeline's vehicle decoder counts the rows natively before
    it builds them (``ingest.pipeline.row_limits.VEHICLE_ROW_LIMITS``), and a frame it does not
    decode natively has no motor or pack rows, so counting the rows it built again
    (``limits.limit_rows``) can find nothing, at ~0.2 µs a frame on the hot path."""
    return getattr(decode, "rows_limited", False) is True


def header_sizes(records: Sequence[Record]) -> list[int]:
    """The bytes of each record's headers (``wire.header_bytes``; 0 without headers): read
    once per record, for the input limits and for the in-flight bytes both."""
    return [header_bytes(h) if h else 0 for h in map(_HEADERS, records)]


# What one record decoded to: rows, or the exception that rejected it (FrameError: a reason of
# the decoder; anything else: a decoder bug, ``decoder_error``).
Result = Decoded | BaseException


def is_bug(exc: BaseException) -> bool:
    """Whether ``exc`` is a decoder's failure to dead-letter rather than to let through: any
    Exception, and a panic in the native extension, which PyO3 raises as
    ``pyo3_runtime.PanicException``, a BaseException (so that ``except Exception`` does not
    swallow it by accident). Cancellation, KeyboardInterrupt and SystemExit pass."""
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


def _decode_one(
    entry: Decode | WithHeaders, value: bytes, headers: Headers | None, received: int
) -> Result:
    try:
        if isinstance(entry, WithHeaders):
            return entry.decode(value, received, headers or ())
        return entry(value, received)
    except BaseException as exc:  # FrameError, or a decoder bug: the caller dead-letters it
        if not is_bug(exc):
            raise
        return exc


def decode_records(
    entry: TopicDecoder,
    records: Sequence[Record],
    receipts: list[int],
    max_value: int,
    limiter: RateLimiter,
    sizes: Sequence[int] | None = None,
) -> list[Result | None]:
    """One result per record, in order: rows, or the exception that rejected it (a FrameError
    of an input limit too: key, headers, row counts); None for a record not decoded (empty, or
    over ``max_value`` bytes: the caller dead-letters it). ``sizes``: each record's header
    bytes (``header_sizes``), when the caller has them already."""
    if sizes is None:
        sizes = header_sizes(records)
    out: list[Result | None] = [None] * len(records)
    if isinstance(entry, Batched):
        at: list[int] = []
        values: list[bytes] = []
        for i, rec in enumerate(records):
            value = rec.value
            if value and len(value) <= max_value:
                refused = refuse_record(rec, sizes[i])  # the input limits (ingest.pipeline.limits)
                if refused is not None:
                    out[i] = refused
                    continue
                at.append(i)
                values.append(value)
        results = _decode_batch(entry.decode, values, [receipts[i] for i in at], limiter)
        limited = rows_limited(entry.decode)
        for i, result in zip(at, results, strict=True):
            rec = records[i]
            # The usual frame: vehicle rows of a keyed record, whole, counted by the decoder.
            # ``check_decoded`` would pass it unchanged; the rest goes through it.
            if limited and type(result) is FrameRows and rec.key and not result.partial:
                out[i] = result
            else:
                out[i] = check_decoded(result, rec, receipts[i])
        return out
    for i, (rec, received) in enumerate(zip(records, receipts, strict=True)):
        value = rec.value
        if value and len(value) <= max_value:
            refused = refuse_record(rec, sizes[i])
            if refused is not None:
                out[i] = refused
                continue
            out[i] = check_decoded(_decode_one(entry, value, rec.headers, received), rec, received)
    return out


def _decode_batch(
    decode: DecodeBatch, values: list[bytes], receipts: list[int], limiter: RateLimiter
) -> list[Result]:
    """``decode`` over all ``values`` in one call. Should the call itself fail (a bug in the
    native decoder, or a result list of the wrong length), the values are decoded one at a
    time, so that only the frame that hits the bug goes to the DLQ (``decoder_error``) and
    the partition moves on."""
    if not values:
        return []
    try:
        results: list[Result] = list(decode(values, receipts))
        if len(results) == len(values):
            return results
        problem = f"gave {len(results)} results for {len(values)} frames"
    except BaseException as exc:
        if not is_bug(exc):
            raise
        problem = f"failed: {exc!r}"
    suppressed = limiter.allow("batch_decoder")
    if suppressed is not None:
        log.error(
            "batch decoder %s; decoding these frames one by one",
            problem,
            extra={"suppressed": suppressed},
        )
    out: list[Result] = []
    for value, received in zip(values, receipts, strict=True):
        try:
            one: list[Result] = list(decode([value], [received]))
            if len(one) != 1:
                raise RuntimeError(f"batch decoder gave {len(one)} results for 1 frame")
            out.append(one[0])
        except BaseException as exc:
            if not is_bug(exc):
                raise
            out.append(exc)
    return out
