"""Malformed raw Kafka records, for fuzzing the running pipeline (not only its decoders):
tests/integration/test_pipeline_fuzz.py and loadtest/fuzz_pipeline.py.

Each ``BadRecord`` says which raw topic it goes to and the dead-letter reasons it may get:
exactly one reason where the record's fault decides it (an empty value, a missing key), the
decoders' whole list where the bytes are random. Every one of them must be dead-lettered:
none is a frame the pipeline could store (a mutation is never resealed, so its checksum, start
marker or length is always broken). ``noisy`` makes the opposite case, good frames with junk
in their optional headers, which must be stored as they are.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import orjson

from devtools.sim.bench_frames import frames_of_kind
from devtools.sim.fleet import Message
from ingest.config import limits
from ingest.decoders.errors import FRAME_REASONS

__all__ = ["KINDS", "BadRecord", "Headers", "bad_records", "noisy"]

Headers = tuple[tuple[str, bytes | None], ...]

_EVERY_FRAME: Final = frozenset(FRAME_REASONS)
# A frame with one byte changed and not resealed: the BCC no longer matches, unless the change
# hit the start marker or the length (or the BCC byte itself).
_MUTATED: Final = frozenset({"bad_checksum", "bad_start", "length_mismatch", "truncated"})
_STATUS: Final = b'{"ConnectorStatusInfo": {"ConnectorID": "MA5B85000P001", "Status": 3}}'
_TCEC_KEY: Final = b"MA5B85000:MA5B85000P001"
_TCEC_NO_TIME: Final[Headers] = (
    ("tcec_interface", b"notification_stationStatus"),
    ("tcec_operator_id", b"MA5B85000"),
)
_CHARGER_KEY: Final = b"MA5B8500000000000"
_PACK_KEY: Final = b"SIMPE965B85S00C4U0000000"


@dataclass(frozen=True, slots=True)
class BadRecord:
    """One malformed record: ``role`` is the raw topic (vehicle, charger, battery, tcec)."""

    kind: str
    role: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    reasons: frozenset[str]


def _frame_2016(vin: bytes, data: bytes) -> bytes:
    """A 2016 real-time frame of ``vin`` with data unit ``data``, length and BCC right."""
    body = bytes([0x02, 0xFE]) + vin + b"\x01" + len(data).to_bytes(2, "big") + data
    bcc = 0
    for b in body:
        bcc ^= b
    return b"##" + body + bytes([bcc])


def _too_many_motors(vin: bytes) -> bytes:
    motor = bytes([1, 1, 100, 0x4E, 0x20, 0x4E, 0x20, 100, 0x0F, 0xA0, 0x27, 0x10])
    blocks = (bytes([0x02, 0xFD]) + motor * 0xFD) + (bytes([0x02, 1]) + motor)
    return _frame_2016(vin, bytes([25, 11, 1, 10, 0, 0]) + blocks)


def _mutate(frame: bytes, rng: random.Random) -> bytes:
    out = bytearray(frame)
    choice = rng.random()
    if choice < 0.6:  # flip one byte (any: start, header, data, BCC)
        at = rng.randrange(len(out))
        out[at] ^= rng.randrange(1, 256)
        return bytes(out)
    if choice < 0.8:  # cut
        return bytes(out[: rng.randrange(1, len(out))])
    return bytes(out) + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))  # append


class _Maker:
    """Builds one bad record of a kind at a time, from the good frames and a seeded RNG."""

    def __init__(
        self, good: Sequence[Message], rng: random.Random, now_ms: int, huge_bytes: int
    ) -> None:
        self.vehicle = [m for m in good if m.topic == "vehicle"]
        start = now_ms - 60_000
        self.charger = [v for _, v in frames_of_kind("charger", 20, 2, start_ms=start)]
        self.packs = [v for _, v in frames_of_kind("battery", 20, 2, start_ms=start)]
        self.rng = rng
        self.huge_bytes = huge_bytes

    def make(self, kind: str) -> BadRecord:
        rng = self.rng
        msg = rng.choice(self.vehicle)
        key, frame = msg.key, msg.value
        one = frozenset[str]

        def bad(
            role: str, k: bytes | None, v: bytes | None, h: Headers, r: frozenset[str]
        ) -> BadRecord:
            return BadRecord(kind, role, k, v, h, r)

        if kind == "empty":
            return bad("vehicle", key, b"", (), one({"empty_value"}))
        if kind == "tombstone":  # a value of null: Kafka's delete marker
            return bad(
                rng.choice(["charger", "battery", "tcec"]), b"k1", None, (), one({"empty_value"})
            )
        if kind == "huge":
            return bad(
                "vehicle", key, b"##" + rng.randbytes(self.huge_bytes - 2), (), one({"too_large"})
            )
        if kind == "no_key":
            return bad("vehicle", None, frame, (), one({limits.MISSING_KEY}))
        if kind == "long_key":
            return bad("vehicle", b"K" * (limits.KEY_BYTES + 1), frame, (), one({limits.BAD_KEY}))
        if kind == "many_headers":
            many = tuple((f"x{i}", b"1") for i in range(limits.HEADERS_PER_RECORD + 1))
            return bad("vehicle", key, frame, many, one({limits.BAD_HEADER}))
        if kind == "big_headers":
            big = (("gateway", rng.randbytes(limits.HEADER_BYTES)),)
            return bad("vehicle", key, frame, big, one({limits.BAD_HEADER}))
        if kind == "tcec_no_headers":
            return bad("tcec", _TCEC_KEY, _STATUS, (), one({"missing_header"}))
        if kind == "tcec_garbage_headers":
            junk: Headers = (
                ("tcec_interface", b"notification_\xff\xfe"),
                ("tcec_operator_id", rng.randbytes(9)),
                ("tcec_timestamp", b"garbage"),
            )
            return bad("tcec", _TCEC_KEY, _STATUS, junk, one({"bad_header"}))
        if kind == "tcec_no_timestamp":
            return bad("tcec", _TCEC_KEY, _STATUS, _TCEC_NO_TIME, one({"missing_header"}))
        if kind == "charger_on_vehicle":
            return bad("vehicle", _CHARGER_KEY, rng.choice(self.charger), (), one({"wrong_topic"}))
        if kind == "pack_on_vehicle":
            return bad("vehicle", _PACK_KEY, rng.choice(self.packs), (), one({"wrong_topic"}))
        if kind in ("vehicle_on_charger", "vehicle_on_battery"):
            return bad(kind.rsplit("_", 1)[1], key, frame, (), _EVERY_FRAME)
        if kind == "vehicle_on_tcec":  # no T/CEC headers: refused before the JSON is read
            return bad("tcec", key, frame, (), one({"missing_header"}))
        if kind == "random":
            role = rng.choice(["vehicle", "charger", "battery"])
            return bad(role, key, rng.randbytes(rng.randrange(1, 2048)), (), _EVERY_FRAME)
        if kind == "mutated":
            return bad("vehicle", key, _mutate(frame, rng), (), _MUTATED)
        if kind == "over_limit":
            return bad("vehicle", key, _too_many_motors(key), (), one({limits.OVER_LIMIT}))
        raise ValueError(f"unknown kind of bad record {kind!r}: one of {', '.join(KINDS)}")


# Every kind, in the order ``bad_records`` takes them round robin.
KINDS: Final = (
    "empty",
    "tombstone",
    "huge",
    "no_key",
    "long_key",
    "many_headers",
    "big_headers",
    "tcec_no_headers",
    "tcec_garbage_headers",
    "tcec_no_timestamp",
    "charger_on_vehicle",
    "pack_on_vehicle",
    "vehicle_on_charger",
    "vehicle_on_battery",
    "vehicle_on_tcec",
    "random",
    "mutated",
    "over_limit",
)


def bad_records(
    good: Sequence[Message],
    count: int,
    *,
    now_ms: int,
    seed: int = 1,
    huge_bytes: int = 8 * 1024 * 1024 - 4096,
    huge_count: int = 1,
) -> list[BadRecord]:
    """``count`` malformed records, every kind in turn (at most ``huge_count`` huge ones, each
    ``huge_bytes``: by default just under the dev broker's 8 MiB ``message.max.bytes``).
    ``good``: vehicle frames to take keys and frames from (mutations, wrong topics)."""
    rng = random.Random(seed)
    maker = _Maker(good, rng, now_ms, huge_bytes)
    out: list[BadRecord] = []
    huge = 0
    while len(out) < count:
        for kind in KINDS:
            if len(out) >= count:
                break
            if kind == "huge":
                if huge >= huge_count:
                    continue
                huge += 1
            out.append(maker.make(kind))
    return out


def noisy(msg: Message, rng: random.Random) -> Headers:
    """Junk in a good frame's optional headers (a header without a value, ``received_at`` that
    is no number, bytes that are no UTF-8): the frame is still good and must be stored."""
    return (
        ("received_at", rng.choice([None, b"garbage", b"-1", b"\xff\xfe"])),
        ("gateway", None),
        ("peer", rng.randbytes(8)),
        ("platform", orjson.dumps({"key": msg.key.hex()})),
    )
