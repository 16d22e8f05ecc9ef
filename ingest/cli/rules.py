"""``nev-ingest rules``: validate a rule file, and replay frames through it offline.

``rules check FILE`` lists every problem as ``FILE:LINE: error: rule ID key 'K': why`` (exit 2
when there is an error, like any invalid input); fields are checked against the field table of
the rule's entity kind (``entity``). ``rules test FILE --frames FRAMES [--kind K]`` replays
frames through the rules, the way an engineer tunes a threshold, and prints the alerts that
would be raised and cleared. It runs one entity kind's rules on that kind's frames (``--kind``:
vehicle by default, charger, battery), decoded and evaluated as the pipeline does for that
kind's topic; frames of another profile are skipped as ``wrong_topic`` (ingest.cli.rules_frames)
and the rules of the other kinds in the file are named in a warning, not run.
FRAMES holds one frame per line: hex (as ``nev-ingest decode`` reads it), a JSON object with a
``hex`` member (e.g. the protocol test vectors), (vehicles) a JSON frame in the decoded-row
form of ``alerts.frames`` (``{"vin": ..., "ts": ..., "max_temp_c": ...}``), or (chargers) a
T/CEC 102 push as ``nev-ingest decode --profile tcec`` reads it (``--interface``,
``--operator``, ``--timestamp``, ``--seq`` as there), judged at its time as the pipeline's.
A frame whose judging raises (a rule's defect, caught by the engine as in the pipeline) is
printed on stderr with its rule, entity and error and counted in the summary; any makes the
exit status ``RULE_ERROR_EXIT`` (3), before skipped lines' 1.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from alerts import AlertChange, RuleEngine, RuleFileError, RuleSet, to_message
from contract.clock import CHINA_TZ
from contract.kinds import ENTITY_KINDS
from ingest.cli.rules_frames import read_frames
from ingest.cli.tcec_lines import add_envelope_arguments, check_envelope_arguments
from ingest.errors import UserError, not_utf8
from ingest.pipeline.vehicle_models import load_models

__all__ = ["load_rules", "register"]

_PROGRESS_EVERY = 100_000
# The exit status of a `rules test` run in which judging a frame raised (a rule code defect):
# not 1, which is skipped input lines, nor 2, invalid input.
RULE_ERROR_EXIT = 3


def register(subparsers: Any) -> None:
    """Add the ``rules`` subcommand (``check``, ``test``)."""
    p = subparsers.add_parser("rules", help="check battery-safety rule files, try them on frames")
    sub = p.add_subparsers(dest="rules_command", metavar="ACTION", required=True)
    c = sub.add_parser("check", help="validate a rule file: every problem with its line and key")
    c.add_argument("file", help="rule file (TOML), e.g. alerts/default_rules.toml")
    c.set_defaults(func=_check)
    t = sub.add_parser(
        "test",
        help="replay one entity kind's frames through its rules, print the alerts",
        description="Replay one entity kind's frames through its rules and print the alerts "
        "raised and cleared. Exit status: 0 all judged; 1 some lines skipped (not a frame of "
        f"--kind, not decodable); 2 invalid input; {RULE_ERROR_EXIT} judging a frame raised in "
        "a rule (a defect: each is printed on stderr with its rule, entity and error).",
    )
    t.add_argument("file", help="rule file (TOML)")
    t.add_argument("--frames", required=True, help="hex or JSON lines, one frame per line")
    t.add_argument(
        "--kind",
        choices=ENTITY_KINDS,
        default="vehicle",
        help="entity kind of the frames and of the rules run (default vehicle); frames of "
        "another profile are skipped as wrong_topic; charger reads binary-profile frames (hex) "
        "and T/CEC 102 pushes (JSON lines, as decode --profile tcec)",
    )
    # A charger's T/CEC 102 pushes: the envelope of the lines that do not carry it, as decode's.
    add_envelope_arguments(t, "charger pushes", "required: the line's or this")
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


# Beijing time by arithmetic, not datetime.fromtimestamp: that goes through UTC, which a
# T/CEC push dated before 0001-01-01 08:00 Beijing time (its TimeStamp is Beijing time) has
# not ("year 0 is out of range"). Clamped to what datetime can show.
# (Arithmetic between datetimes of one tzinfo is on their wall clock: no UTC involved.)
_EPOCH_CN = datetime(1970, 1, 1, 8, tzinfo=CHINA_TZ)
_MS = timedelta(milliseconds=1)
_MIN_MS = (datetime.min.replace(tzinfo=CHINA_TZ) - _EPOCH_CN) // _MS
_MAX_MS = (datetime.max.replace(tzinfo=CHINA_TZ) - _EPOCH_CN) // _MS


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    ms = min(max(ms, _MIN_MS), _MAX_MS)
    return (_EPOCH_CN + ms * _MS).strftime("%Y-%m-%d %H:%M:%S")


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


def _kind_rules(args: argparse.Namespace, rules: RuleSet) -> None:
    """Warn of the file's rules of other kinds (not run); refuse a file without ``--kind``'s
    rules: a run of no rule raises nothing and would look like a pass."""
    kind = args.kind
    per = {k: len(rules.for_kind(k).rules) for k in rules.entity_kinds}
    if not per:
        raise UserError(f"{args.file} has no enabled [[rule]]: there is nothing to test")
    if not per.get(kind):
        theirs = " or ".join(f"--kind {k}" for k in per)
        raise UserError(
            f"{args.file} has no {kind} rule, so nothing would be tested: its rules are for "
            f"{', '.join(per)}: run with {theirs} and frames of that kind"
        )
    for k, n in per.items():
        if k != kind:
            print(
                f"{args.file}: warning: its {n} {k} rule(s) are not run (this run tests {kind} "
                f"frames): run again with --kind {k} and {k} frames to test them",
                file=sys.stderr,
            )


def _skipped(bad: Counter[str]) -> str:
    text = f"{sum(bad.values())} skipped"
    if bad:
        text += " (" + ", ".join(f"{n} {reason}" for reason, n in sorted(bad.items())) + ")"
    return text


def _test(args: argparse.Namespace) -> int:
    try:
        rules = load_rules(args.file)
    except RuleFileError as exc:
        raise UserError(f"{exc}; run `nev-ingest rules check {args.file}` for all of them") from exc
    check_envelope_arguments(args, args.kind == "charger", "--kind charger (T/CEC pushes)")
    _kind_rules(args, rules)
    models = load_models(args.models, "--models") if args.models else {}
    # The kind's engine, as the pipeline builds one per kind (ingest.pipeline.storage_sink):
    # chargers' and packs' frames go through alerts.subjects there.
    engine = RuleEngine(rules, entity_kind=args.kind, models=models)
    bad: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    batch: list[Any] = []
    started = time.monotonic()
    count = 0
    errors = 0  # frames whose judging raised (the engine's safety net: alerts.failure)
    for fr in read_frames(args.frames, args.kind, bad, args):
        batch.append(fr)
        count += 1
        if len(batch) == 5000:
            changes = engine.evaluate(batch)
            totals.update(c.type for c in changes)
            _print(changes, args.format, args.updates)
            errors += _print_failures(engine, args.file)
            batch = []
        if count % _PROGRESS_EVERY == 0:
            rate = count / max(time.monotonic() - started, 1e-9)
            print(f"... {count:,} frames, {rate:,.0f} frames/s", file=sys.stderr)
    changes = engine.evaluate(batch)
    totals.update(c.type for c in changes)
    _print(changes, args.format, args.updates)
    errors += _print_failures(engine, args.file)
    s = engine.stats
    # A charger frame or push is judged once per connector it reports on (alerts.subjects).
    judged = " connector reports" if args.kind == "charger" else ""
    print(
        f"{count} {args.kind} frames ({s.evaluated}{judged} in order, {s.late} late, "
        f"{s.duplicate} duplicate, {s.no_data} without data), {_skipped(bad)}; "
        f"{totals['raised']} raised, {totals['cleared']} cleared, "
        f"{len(engine.open_alerts())} still open; {errors} rule error(s)",
        file=sys.stderr,
    )
    if errors:
        return RULE_ERROR_EXIT
    return 1 if bad else 0


def _print_failures(engine: RuleEngine, file: str) -> int:
    """Print what judging raised since the last call (the pipeline counts it in
    nev_ingest_rule_errors_total and logs it); return how many frames raised. The engine keeps
    one line per rule (how many, the last entity and error) per batch it judged."""
    n = 0
    for f in engine.take_failures():
        n += f.count
        frames = "a frame" if f.count == 1 else f"{f.count} frames (the last)"
        print(
            f"{file}: error: rule '{f.rule_id}' raised judging {frames} of entity "
            f"{f.entity_id}, which it and the rules after it skipped: {f.error}",
            file=sys.stderr,
        )
    return n
