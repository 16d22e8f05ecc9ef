"""Input limits: every bound the pipeline puts on one raw Kafka record, with its reason.

One table (``LIMITS``), so that docs/security.md ("Input limits"), docs/kafka.md and the checks
(``ingest.pipeline.limits``) name the same numbers. Each limit is chosen above anything a real
device sends (the protocol's own maximum where it has one) and below what would let one record
cost many times a normal one: in rows written, rules evaluated, memory held or dead-letter
bytes. A record over a limit is dead-lettered with the limit's ``reason`` before the work it
bounds is done, cheapest check first: the record's own sizes (key, headers, value) before
decoding, the decoded rows' counts before the rows reach the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ingest.config.kafka_limits import DEAD_LETTER_OVERHEAD
from ingest.config.kafka_settings import DEFAULT_MAX_RECORD_BYTES

__all__ = [
    "BAD_HEADER",
    "BAD_KEY",
    "BLOCKS_PER_FRAME",
    "CELLS_PER_FRAME",
    "CHARGER_BLOCKS_PER_FRAME",
    "FRAME_BYTES",
    "HEADERS_PER_RECORD",
    "HEADER_BYTES",
    "KEY_BYTES",
    "LENGTH_MISMATCH",
    "LIMITS",
    "LIMIT_REASONS",
    "MISSING_KEY",
    "MOTORS_PER_FRAME",
    "OVER_LIMIT",
    "PACK_ROWS_PER_FRAME",
    "PROBES_PER_FRAME",
    "TOO_LARGE",
    "Limit",
]

# The dead-letter reasons of the limits. ``too_large``, ``length_mismatch`` and ``bad_header``
# existed before the limits (ingest.pipeline.wire, ingest.decoders.errors); the spellings are
# repeated here so that the config layer does not import the pipeline.
TOO_LARGE: Final = "too_large"
LENGTH_MISMATCH: Final = "length_mismatch"  # the decoders' (ingest.decoders.errors)
BAD_HEADER: Final = "bad_header"
MISSING_KEY: Final = "missing_key"  # a raw record without a key (the device identity)
BAD_KEY: Final = "bad_key"  # a key longer than any device identity
# a frame that decodes to more rows, or holds more information blocks, than any device sends
# (the decoders' blocks_per_frame reject: ingest.decoders.errors.OVER_LIMIT)
OVER_LIMIT: Final = "over_limit"
# The reasons the limits add to the pipeline's (docs/kafka.md lists them).
LIMIT_REASONS: Final = frozenset({MISSING_KEY, BAD_KEY, OVER_LIMIT})


@dataclass(frozen=True, slots=True)
class Limit:
    """One named bound: ``value`` in ``unit``; a record over it is dead-lettered as ``reason``
    by ``where``; ``why`` is the number's reason, for docs/security.md."""

    name: str
    value: int
    unit: str
    reason: str
    where: str
    why: str


# The largest GB/T 32960 frame: 24-byte header + a data unit of at most 65531 bytes (its length is
# a WORD) + BCC (ingest.decoders.envelope.MAX_FRAME_SIZE; config sits beside the decoders, so
# the number is repeated here and a test keeps the two equal).
FRAME_BYTES: Final = 24 + 65531 + 1
# The identity keys: VIN and charger code 17 characters, GB/T 34014 pack code 24, a T/CEC 102
# connector key "OperatorID:ConnectorID" 9 + 1 + 26 = 36. 64 leaves room, and keeps what every
# dead letter and log line repeats small.
KEY_BYTES: Final = 64
# The gateway sets 5 headers (8 on T/CEC 102 pushes); a proxy may add a few (tracing).
HEADERS_PER_RECORD: Final = 32
# Names plus values. The dead letter of an accepted record repeats its headers and adds ~1.2 KiB
# of error headers; with this bound it always fits in kafka.max_request_size, which keeps
# DEAD_LETTER_OVERHEAD (16 KiB) over kafka.max_record_bytes (tests/unit/test_limits.py).
HEADER_BYTES: Final = 8 * 1024
# GB/T 32960 drive-motor count is a BYTE, 1-253: more motors in one frame can only come from a
# repeated 0x02 block, 10-12 bytes per row: a 64 KiB frame would make ~5,000 motor rows.
MOTORS_PER_FRAME: Final = 253
# One pack row per RESS subsystem of the voltage block and of the temperature block: 2 x 250
# (2016: subsystem count 1-250; 2025: pack count 0-50). Each row is a row of
# battery_pack_telemetry and a pass of the cell rules.
PACK_ROWS_PER_FRAME: Final = 500
# Cell voltages and probe temperatures of one frame, all packs together. The largest real
# frames carry a few hundred (2016 pages at 200 cells per subsystem; the collected data tops
# out at 384 cells and 96 probes); a 64 KiB frame could carry 32,000 cells (64,000 probes),
# which the cell rules and the arrays in storage would pay for a hundred times over.
CELLS_PER_FRAME: Final = 4096
PROBES_PER_FRAME: Final = 4096
# Information blocks in one data unit (real-time / reissue, vehicle and pack frames). Real frames
# carry under 20 (2016: 7-9 standard blocks + a few custom ones); a 64 KiB unit of tiny blocks
# (5-byte engine blocks, 3-byte empty custom blocks) would be 13,000-21,000, each walked and
# kept. Checked inside the decoders' block walks (native and structured), so the number is
# repeated in ingest.decoders.realtime and native/src/error.rs; tests keep the three equal.
BLOCKS_PER_FRAME: Final = 64
# The charger profile's own (ingest.decoders.charger.frame, where it is checked): its blocks are
# 28 bytes and more (a data unit holds at most 2,340), so the tiny-block flood above cannot be
# sent, and a real frame carries one block per connector and type: 22 connectors reporting
# status, output and demand are 66 blocks. 255 connectors (the login's BYTE) x 5 types + the
# pile's fault block.
CHARGER_BLOCKS_PER_FRAME: Final = 255 * 5 + 1

LIMITS: Final[tuple[Limit, ...]] = (
    Limit(
        "record_bytes",
        DEFAULT_MAX_RECORD_BYTES,
        "bytes",
        TOO_LARGE,
        "before decoding (setting kafka.max_record_bytes)",
        "a GB/T 32960 frame is under 64 KiB; the dead letter of an accepted record must fit "
        "kafka.max_request_size; larger values are kept as their first 4 KiB, size and hash",
    ),
    Limit(
        "frame_bytes",
        FRAME_BYTES,
        "bytes",
        LENGTH_MISMATCH,
        "the decoder, first check (frame topics)",
        "the data-unit length is a WORD of at most 65531 bytes: 24-byte header + 65531 + BCC; "
        "any longer value cannot be one frame",
    ),
    Limit(
        "key_bytes",
        KEY_BYTES,
        "bytes",
        BAD_KEY,
        "before decoding",
        "the longest identity key is 36 bytes (T/CEC OperatorID:ConnectorID); every dead "
        "letter and log line repeats the key",
    ),
    Limit(
        "key_required",
        1,
        "byte",
        MISSING_KEY,
        "after decoding: records that carry rows (a heartbeat may come without a key)",
        "the key decides the partition: a keyless record lands on any partition, out of "
        "order with its device's other frames, which the alert rules rely on",
    ),
    Limit(
        "headers_per_record",
        HEADERS_PER_RECORD,
        "headers",
        BAD_HEADER,
        "before decoding",
        "the gateway sets 5 (8 on T/CEC pushes); every header is read and copied to the "
        "dead letter",
    ),
    Limit(
        "header_bytes",
        HEADER_BYTES,
        "bytes",
        BAD_HEADER,
        "before decoding",
        f"names + values; keeps any dead letter within kafka.max_record_bytes + "
        f"{DEAD_LETTER_OVERHEAD // 1024} KiB, which kafka.max_request_size must hold",
    ),
    Limit(
        "blocks_per_frame",
        BLOCKS_PER_FRAME,
        "information blocks",
        OVER_LIMIT,
        "the decoder's block walk, before any row is built",
        "real frames carry under 20; a 64 KiB data unit of tiny blocks (5-byte engine, 3-byte "
        "empty custom) would be ~20,000 blocks walked and kept",
    ),
    Limit(
        "charger_blocks_per_frame",
        CHARGER_BLOCKS_PER_FRAME,
        "information blocks",
        OVER_LIMIT,
        "the charger decoder's block walk, before any row is built",
        "255 connectors (a login's most) x the five block types + the pile's fault block; a "
        "charger block is 28 bytes or more, so no flood of tiny blocks fits a data unit",
    ),
    Limit(
        "motors_per_frame",
        MOTORS_PER_FRAME,
        "drive motors",
        OVER_LIMIT,
        "after decoding, before the batch",
        "the count is a BYTE of 1-253; more can only come from repeated 0x02 blocks "
        "(a 64 KiB frame: ~5,000 rows)",
    ),
    Limit(
        "pack_rows_per_frame",
        PACK_ROWS_PER_FRAME,
        "pack rows",
        OVER_LIMIT,
        "after decoding, before the batch",
        "250 RESS subsystems x (voltage + temperature block); each is a stored row and a pass "
        "of the cell rules",
    ),
    Limit(
        "cells_per_frame",
        CELLS_PER_FRAME,
        "cell voltages",
        OVER_LIMIT,
        "after decoding, before the batch",
        "real frames carry a few hundred (2016 pages 200 per subsystem); a 64 KiB frame could "
        "carry 32,000",
    ),
    Limit(
        "probes_per_frame",
        PROBES_PER_FRAME,
        "probe temperatures",
        OVER_LIMIT,
        "after decoding, before the batch",
        "real frames carry under 100; a 64 KiB frame could carry 64,000",
    ),
)
