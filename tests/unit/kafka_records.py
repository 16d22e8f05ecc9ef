"""Plain values in the shape of aiokafka's ``TopicPartition`` and ``ConsumerRecord``: what the
batch builder reads from them, for the unit tests that feed it records without a broker."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


class TP(NamedTuple):
    topic: str
    partition: int


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = b"VIN00000000000001"
    timestamp: int = 1_700_000_000_000
    headers: list[tuple[str, bytes]] = field(default_factory=list)
