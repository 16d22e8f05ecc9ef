"""The load generator's record file (``nev-ingest loadgen --out FILE``, ``--replay FILE``): the
Kafka records a run would produce, for offline benchmarks and for replaying the same bytes.

Text, one record a line, five tab-separated fields, after one ``#`` comment line naming the
format and the topics the file holds (lines starting with ``#`` are skipped)::

    # nev-ingest loadgen records v1: topic, kind, key hex, value hex, headers; topics=a,b
    topic <TAB> kind <TAB> key hex <TAB> value hex <TAB> headers

``kind`` is the simulator's (``login``, ``realtime``, ``reissue``, ``logout``, ``tcec``, or a
bad frame's damage: ``bad_checksum``, ``truncated``, ...), so a benchmark knows how many dead
letters to expect; ``headers`` are the record's own (T/CEC pushes'), ``name=hex`` joined by
``;``, empty for most records. The gateway headers (``received_at``, ``gateway``, ``peer``)
are not stored: a replay stamps them when it sends. Hex, so that the file is plain text any
tool reads (``grep`` for a VIN's hex finds its records).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

from devtools.sim.fleet import Message

__all__ = [
    "RecordFileError",
    "count_records",
    "format_record",
    "header",
    "read_records",
    "read_topics",
]

FORMAT: Final = "# nev-ingest loadgen records v1: topic, kind, key hex, value hex, headers"
TOPICS: Final = "; topics="


class RecordFileError(ValueError):
    """A line that is not a record; the message names the file, the line and the fix."""


def header(topics: Iterable[str]) -> str:
    """The first line: the format, and the topics (so that a replay checks them first)."""
    return f"{FORMAT}{TOPICS}{','.join(sorted(set(topics)))}\n"


def read_topics(path: Path) -> list[str]:
    """The topics the file's first line names; ``RecordFileError`` if it is not a record file."""
    with path.open(encoding="ascii", errors="replace") as f:
        first = f.readline().rstrip("\n")
    if not first.startswith(FORMAT + TOPICS):
        raise RecordFileError(
            f"{path}: not a loadgen record file (the first line is not {FORMAT!r}); "
            "write one with nev-ingest loadgen --out FILE"
        )
    return [t for t in first[len(FORMAT + TOPICS) :].split(",") if t]


def format_record(topic: str, msg: Message) -> str:
    """One line (with its newline) for ``msg`` sent to ``topic``."""
    headers = ";".join(f"{name}={value.hex()}" for name, value in msg.headers)
    return f"{topic}\t{msg.kind}\t{msg.key.hex()}\t{msg.value.hex()}\t{headers}\n"


def read_records(path: Path) -> Iterator[Message]:
    """The file's records as messages whose ``topic`` is the Kafka topic name (streamed: a
    file of any size in constant memory)."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("ascii")
                if line.startswith("#") or not line.strip():
                    continue
                message = _parse(line)
            except ValueError as exc:  # UnicodeDecodeError too: the format is ASCII
                raise RecordFileError(
                    f"{path}:{number}: {exc}; a record line is topic, kind, key hex, value hex, "
                    "headers, tab-separated (write one with nev-ingest loadgen --out)"
                ) from None
            yield message


def count_records(path: Path) -> int:
    """The file's records, every line read and checked (``RecordFileError`` at the first bad
    one): a replay checks the whole file before it sends any record of it."""
    return sum(1 for _ in read_records(path))


def _parse(line: str) -> Message:
    fields = line.rstrip("\r\n").split("\t")  # a file saved with CRLF line ends too
    if len(fields) != 5:
        raise ValueError(f"{len(fields)} tab-separated fields, not 5")
    topic, kind, key, value, headers = fields
    pairs = []
    for item in filter(None, headers.split(";")):
        name, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"header {item!r} is not name=hex")
        pairs.append((name, bytes.fromhex(raw)))
    return Message(0, bytes.fromhex(key), bytes.fromhex(value), kind, topic, tuple(pairs))
