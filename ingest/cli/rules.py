"""``nev-ingest rules``: validate a rule file, and replay frames through it offline.

``rules check FILE`` lists every problem as ``FILE:LINE: error: rule ID key 'K': why`` (exit 2
when there is an error, like any invalid input); fields are checked against the field table of
the rule's entity kind (``entity``). ``rules test`` replays vehicle frames: it runs the
file's vehicle rules. ``rules test FILE --frames FRAMES`` replays
frames through the rules, the way an engineer tunes a threshold, and prints the alerts that
would be raised and cleared.
FRAMES holds one frame per line: hex (as ``nev-ingest decode`` reads it), a JSON object with a
``hex`` member (e.g. the protocol test vectors), or a JSON frame in the decoded-row form of
``alerts.frames`` (``{"vin": ..., "ts": ..., "max_temp_c": ...}``).
"""

from __future__ import annotations

import argparse
import binascii
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from alerts import AlertChange, RuleEngine, RuleFileError, RuleSet, to_message
from alerts.frames import FrameSpecError, frame_from_json
from contract.clock import CHINA_TZ
from contract.rows import FrameRows
from ingest.decoders.errors import FrameError
from ingest.decoders.fast import decode_rows
from ingest.errors import UserError, not_utf8
from ingest.pipeline.limits import limit_rows
from ingest.pipeline.vehicle_models import load_models

__all__ = ["load_rules", "register"]

_PROGRESS_EVERY = 100_000


def register(subparsers: Any) -> None:
    """Add the ``rules`` subcommand (``check``, ``test``)."""
    p = subparsers.add_parser("rules", help="check battery-safety rule files, try them on frames")
    sub = p.add_subparsers(dest="rules_command", metavar="ACTION", required=True)
    c = sub.add_parser("check", help="validate a rule file: every problem with its line and key")
    c.add_argument("file", help="rule file (TOML), e.g. alerts/default_rules.toml")
    c.set_defaults(func=_check)
    t = sub.add_parser("test", help="replay frames through a rule file, print the alerts")
    t.add_argument("file", help="rule file (TOML)")
    t.add_argument("--frames", required=True, help="hex or JSON lines, one frame per line")
    t.add_argument("--models", help="JSON object VIN -> vehicle model, for model-scoped rules")
    t.add_argument("--format", choices=("table", "json"), default="table")
    t.add_argument("--updates", action="store_true", help="also print 'updated' changes")
    t.set_defaults(func=_test)


def load_rules(path: str) -> RuleSet:
    """``RuleSet.load``, with every way the file can be unreadable as a one-line ``UserError``
    (``RuleFileError``, the list of problems in a readable file, passes through)."""
    try:
        return RuleSet.load(path)
    except OSError as exc:
        raise UserError(f"cannot read rule file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise not_utf8(f"rule file {path}", exc) from None
    except RecursionError:
        # tomllib parses nested arrays and inline tables recursively; no rule nests deeply.
        raise UserError(f"rule file {path}: arrays or tables nested too deeply") from None


def _check(args: argparse.Namespace) -> int:
    try:
        rs = load_rules(args.file)
    except RuleFileError as exc:
        for p in exc.problems:
            print(p.format(exc.source), file=sys.stderr)
        n = sum(not p.warning for p in exc.problems)
        print(f"{args.file}: {n} error(s): fix them and run the check again", file=sys.stderr)
        return 2
    for p in rs.warnings:
        print(p.format(rs.source), file=sys.stderr)
    if not rs.rules:
        print(f"{args.file}: warning: no enabled [[rule]] in this file", file=sys.stderr)
    kinds = Counter(r.kind for r in rs.rules)
    alerting = sum(r.alert for r in rs.rules)
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    print(f"{args.file}: OK, {len(rs.rules)} rules ({alerting} alerting; {summary})")
    if rs.entity_kinds != ("vehicle",):
        per = ", ".join(f"{k} {len(rs.for_kind(k).rules)}" for k in rs.entity_kinds)
        print(f"  per entity kind: {per}")
    return 0


def _frames(path: str, bad: Counter[str]) -> Iterator[FrameRows]:
    try:
        f = Path(path).open("rb")  # noqa: SIM115 - closed below, streamed
    except OSError as exc:
        raise UserError(f"cannot read frames file {path}: {exc.strerror}") from None
    with f:
        for n, raw in enumerate(f, start=1):
            try:
                # Per line: one line in another encoding is a skipped line, not a traceback.
                line = raw.decode("utf-8").strip()
                if not line or line.startswith(("#", ";")):
                    continue
                if line.startswith("{"):
                    obj = orjson.loads(line)
                    if isinstance(obj, dict) and "hex" in obj:
                        rows = decode_rows(binascii.unhexlify(str(obj["hex"]).replace(" ", "")))
                    else:
                        rows = frame_from_json(obj)
                else:
                    hex_text = line.replace(" ", "").removeprefix("0x")
                    rows = decode_rows(binascii.unhexlify(hex_text))
                # The pipeline's input limits: a frame it would dead-letter raises nothing here.
                checked = limit_rows(rows)
                if isinstance(checked, FrameError):
                    raise checked
                yield checked
            except FrameError as exc:
                bad[exc.reason] += 1
                print(f"{path}:{n}: skipped, not decodable: {exc}", file=sys.stderr)
            except (binascii.Error, ValueError, FrameSpecError) as exc:  # UnicodeDecodeError too
                bad["bad_line"] += 1
                print(f"{path}:{n}: skipped, neither hex nor a JSON frame: {exc}", file=sys.stderr)


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")


def _print(changes: list[AlertChange], fmt: str, updates: bool) -> None:
    for c in changes:
        if c.type == "updated" and not updates:
            continue
        if fmt == "json":
            sys.stdout.write(to_message(c)[1].decode() + "\n")
            continue
        a = c.alert
        at = a.opened_ms if c.type == "raised" else a.cleared_ms or a.last_seen_ms
        peak = "-" if a.peak is None else f"{a.peak:g}"
        late = " (late)" if a.late else ""
        print(
            f"{_when(at)}  {c.type:<8} {a.severity:<8} {a.entity_id:<17}  {a.rule_id:<26} "
            f"peak={peak} frames={a.frame_count}{late}"
        )


def _test(args: argparse.Namespace) -> int:
    try:
        rules = load_rules(args.file)
    except RuleFileError as exc:
        raise UserError(f"{exc}; run `nev-ingest rules check {args.file}` for all of them") from exc
    models = load_models(args.models, "--models") if args.models else {}
    engine = RuleEngine(rules, models=models)
    bad: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    batch: list[FrameRows] = []
    started = time.monotonic()
    count = 0
    for fr in _frames(args.frames, bad):
        batch.append(fr)
        count += 1
        if len(batch) == 5000:
            changes = engine.evaluate(batch)
            totals.update(c.type for c in changes)
            _print(changes, args.format, args.updates)
            batch = []
        if count % _PROGRESS_EVERY == 0:
            rate = count / max(time.monotonic() - started, 1e-9)
            print(f"... {count:,} frames, {rate:,.0f} frames/s", file=sys.stderr)
    changes = engine.evaluate(batch)
    totals.update(c.type for c in changes)
    _print(changes, args.format, args.updates)
    s = engine.stats
    skipped = sum(bad.values())
    print(
        f"{count} frames ({s.evaluated} in order, {s.late} late, {s.duplicate} duplicate, "
        f"{s.no_data} without data), {skipped} skipped; {totals['raised']} raised, "
        f"{totals['cleared']} cleared, {len(engine.open_alerts())} still open",
        file=sys.stderr,
    )
    return 1 if skipped else 0
