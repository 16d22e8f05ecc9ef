"""``nev-ingest dlq list|replay``: inspect dead letters, and send them back after a fix.

``dlq list`` reads the dead-letter topic (``kafka.topic_dlq``) from its beginning, or from
``--since``, up to its end when the command started, and prints one line per letter (reason,
source topic/partition/offset, time, size, detail) as a table or JSON lines, then the counts by
reason. ``dlq replay`` produces the selected letters' original records (key, value, headers
minus the ``error.*``/``source.*`` ones) back to their source topic; the pipeline stores a
replayed frame once however often it is replayed. Letters whose value was cut (``too_large``)
are never replayed. See docs/operations.md, "Reprocess the DLQ".
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

from contract.clock import CHINA_TZ
from ingest.cli.args import kafka_topic, text, time_or_ago
from ingest.config.load import add_config_arguments, settings_from_args
from ingest.pipeline.dlq import Letter, Selection, parse_offsets, read_letters, replay

__all__ = ["register"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _time(value: str) -> int:
    """``--since``/``--until``: an ISO 8601 time (no zone: China time, like the frames) or a
    duration ago (``30m``, ``2h``, ``7d``) -> epoch ms, never before 1970 (Kafka's time 0: a
    time before it means from the beginning)."""
    try:
        when = time_or_ago(value, CHINA_TZ, datetime.now(UTC), _EPOCH)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return max(0, int(when.timestamp() * 1000))


def _offsets(value: str) -> dict[int, tuple[tuple[int, int], ...]]:
    try:
        return parse_offsets(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(subparsers: Any) -> None:
    """Add the ``dlq`` subcommand (``list``, ``replay``)."""
    p = subparsers.add_parser(
        "dlq", help="list dead letters by reason and time; replay them after a fix"
    )
    sub = p.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="dead letters, oldest first, and their counts by reason")
    ls.add_argument("--format", choices=("table", "json"), default="table")
    ls.add_argument("--counts", action="store_true", help="print only the counts by reason")
    ls.set_defaults(func=_list)
    rp = sub.add_parser("replay", help="produce selected dead letters back to their source topic")
    rp.add_argument("--until", type=_time, help="letters written before this time")
    rp.add_argument(
        "--offsets",
        type=_offsets,
        help="dead-letter topic coordinates as dlq list shows them: 0:12,0:15-20",
    )
    rp.add_argument("--dry-run", action="store_true", help="count what would be sent; send none")
    rp.set_defaults(func=_replay)
    for sp in (ls, rp):
        sp.add_argument(
            "--since", type=_time, help="letters written at or after this time (ISO 8601 or 2h)"
        )
        sp.add_argument(
            "--reason", action="append", type=text(64), default=[], help="one reason (repeatable)"
        )
        sp.add_argument(
            "--topic", action="append", type=kafka_topic, default=[], help="one source topic"
        )
        add_config_arguments(sp)


def _selection(args: argparse.Namespace) -> Selection:
    return Selection(
        reasons=frozenset(args.reason),
        topics=frozenset(args.topic),
        since_ms=args.since,
        until_ms=getattr(args, "until", None),
        offsets=getattr(args, "offsets", None) or {},
    )


def _list(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    selection = _selection(args)

    # The table's header is written once the topic was read from (before the first row, or
    # before the counts of an empty selection): written up front, it stood on stdout above the
    # one-line error of an unreachable broker, as if the table had begun.
    header = args.format == "table" and not args.counts
    out = sys.stdout

    def write_header() -> None:
        nonlocal header
        if header:
            out.write(_ROW.format("dlq", "time (UTC+8)", "reason", "source", "size", "detail"))
            header = False

    async def run() -> Counter[str]:
        counts: Counter[str] = Counter()
        async for letter in read_letters(settings.kafka, settings.kafka.topic_dlq, args.since):
            if not selection.takes(letter):
                continue
            counts[letter.reason] += 1
            if not args.counts:
                write_header()
                _print(letter, args.format, out)
        return counts

    counts = asyncio.run(run())
    write_header()
    _print_counts(counts, args.format, out)
    return 0


_ROW = "{:<10} {:<19} {:<20} {:<28} {:>7}  {}\n"


def _print(letter: Letter, fmt: str, out: TextIO) -> None:
    if fmt == "json":
        out.write(orjson.dumps(letter.as_json()).decode() + "\n")
        return
    when = datetime.fromtimestamp(letter.time_ms / 1000, CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")
    source = f"{letter.topic}[{letter.partition}]@{letter.offset}"
    detail = " ".join(letter.detail.split())[:100]  # one line per letter
    out.write(
        _ROW.format(
            f"{letter.dlq_partition}:{letter.dlq_offset}",
            when,
            letter.reason,
            source,
            letter.size,
            detail,
        )
    )


def _print_counts(counts: Counter[str], fmt: str, out: TextIO) -> None:
    if fmt == "json":
        out.write(orjson.dumps({"counts": dict(counts.most_common())}).decode() + "\n")
        return
    out.write(_letters(sum(counts.values())))
    out.write(": " + ", ".join(f"{r} {n}" for r, n in counts.most_common()) if counts else "")
    out.write("\n")


def _letters(n: int) -> str:
    return f"{n} dead letter" + ("" if n == 1 else "s")


def _replay(args: argparse.Namespace) -> int:
    from ingest.pipeline.process import raw_topic_keys

    settings = settings_from_args(args)
    k = settings.kafka

    def progress(n: int) -> None:
        print(f"replayed {_letters(n)} so far ...", file=sys.stderr, flush=True)

    async def run() -> Any:
        letters = read_letters(k, k.topic_dlq, args.since)
        return await replay(
            k,
            letters,
            _selection(args),
            raw_topic_keys(settings),
            dry_run=args.dry_run,
            progress=progress,
        )

    report = asyncio.run(run())
    verb = "would replay" if args.dry_run else "replayed"
    total = sum(report.replayed.values())
    by_reason = ", ".join(f"{r} {n}" for r, n in report.replayed.most_common())
    print(f"{verb} {_letters(total)}" + (f": {by_reason}" if by_reason else ""))
    for why, n in report.skipped.most_common():
        print(f"skipped {n}: {why}")
    if not total and not report.skipped:
        # Nothing matched: most often a misspelt --reason or --topic, or --offsets past the end.
        print(
            "nothing matched the selection: check it against nev-ingest dlq list (the same "
            "--since, --reason and --topic flags)",
            file=sys.stderr,
        )
    return 0
