"""The ``nev-ingest query`` questions about packs, chargers and being online (issue 11): ``pack
CODE``, ``swaps``, ``charger``, ``chargers``, ``sessions``, ``online``. Registered by
``ingest.cli.query``; they print like the vehicle queries, with one titled section per part of
a report (``== bindings`` in a table, a ``section`` key in JSON, a ``section`` column in CSV).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final

from ingest.cli.args import duration, text
from ingest.cli.query_run import Sections, day, execute, execute_sections, window, zone
from ingest.config import ENTITY_KINDS
from ingest.decoders.pack_code import PackCodeError, decode_pack_code
from ingest.errors import UserError
from storage import queries_chargers, queries_online, queries_packs
from storage.queries_chargers import CONNECTOR_STATUS, OPERATOR_ID_LENGTH, Charger

__all__ = ["MAX_ROWS", "pack_history", "register"]

MAX_ROWS: Final = 10_000_000
_ID = text(64)
_OPERATOR = text(OPERATOR_ID_LENGTH)
_LOOKBACK = duration(timedelta(minutes=1), timedelta(days=366))
_STALE = duration(timedelta(seconds=1), timedelta(days=366))
_INTERVAL = duration(timedelta(seconds=1), timedelta(days=1))
_SESSION_DAYS = timedelta(days=7)  # default window of sessions and faults

Common = Callable[..., None]


def _status(value: str) -> int:
    """A connector status by T/CEC 102 code or name."""
    if value.lower() in CONNECTOR_STATUS:
        return CONNECTOR_STATUS[value.lower()]
    if value.strip().isdigit() and int(value) in CONNECTOR_STATUS.values():
        return int(value)
    names = ", ".join(f"{n} ({c})" for n, c in CONNECTOR_STATUS.items())
    raise argparse.ArgumentTypeError(f"expected a connector status: {names}; got {value!r}")


def register(sub: Any, common: Common) -> None:
    """Add swaps, charger, chargers, sessions and online (``pack CODE`` shares ``pack``)."""

    def since(sp: argparse.ArgumentParser, default: str) -> None:
        sp.add_argument("--from", dest="start", help=f"start (default: {default} before --to)")
        sp.add_argument("--to", dest="end", help="end, exclusive (default: now)")

    sw = sub.add_parser("swaps", help="pack swaps (changes of place) in a time range")
    sw.add_argument(
        "--lookback",
        type=_LOOKBACK,
        default=timedelta(days=7),
        help="how far before --from to look for the place a pack left, 1m..366d (7d)",
    )
    common(sw)
    sw.set_defaults(func=_swaps)

    ch = sub.add_parser("charger", help="a charger's connectors, recent sessions and faults")
    ch.add_argument("charger", metavar="ID", type=_ID)
    ch.add_argument("--operator", type=_OPERATOR, help="ID is an EquipmentID of this operator")
    since(ch, "7d")
    common(ch, window=False)
    ch.set_defaults(func=_charger)

    cs = sub.add_parser("chargers", help="connectors by status now (of an operator)")
    cs.add_argument("--operator", type=_OPERATOR, help="one operator (9-character OperatorID)")
    cs.add_argument(
        "--status", type=_status, help="offline, idle, occupied, charging, reserved, fault or code"
    )
    common(cs, window=False)
    cs.set_defaults(func=_chargers)

    se = sub.add_parser("sessions", help="charging sessions of a vehicle or a charger")
    se.add_argument("--vin", type=_ID, help="sessions whose orders name this VIN")
    se.add_argument("--charger", metavar="ID", type=_ID, help="as for `query charger`")
    se.add_argument("--operator", type=_OPERATOR, help="--charger is an EquipmentID of this")
    since(se, "7d")
    common(se, window=False)
    se.set_defaults(func=_sessions)

    on = sub.add_parser("online", help="online now and the offline list, or data quality")
    on.add_argument("--kind", default="vehicle", choices=ENTITY_KINDS, help="entity kind")
    on.add_argument(
        "--stale", type=_STALE, default=timedelta(minutes=10), help="offline after (10m)"
    )
    on.add_argument("--quality", action="store_true", help="per-entity data quality of --day")
    on.add_argument("--day", help="the day of --quality (default: today)")
    on.add_argument("--id", type=_ID, help="--quality of one entity")
    on.add_argument("--prefix", type=_ID, help="--quality of entities whose id starts so")
    on.add_argument(
        "--interval", type=_INTERVAL, default=timedelta(seconds=10), help="reporting interval"
    )
    on.add_argument(
        "--skew", type=_STALE, default=timedelta(minutes=1), help="clock skew counted (1m)"
    )
    common(on, window=False)
    on.set_defaults(func=_online)


def pack_history(args: argparse.Namespace) -> int:
    """``query pack CODE``: the code's fields, its bindings with telemetry, its swaps."""
    try:
        code = decode_pack_code(args.vin)
    except PackCodeError as exc:
        raise UserError(
            f"{args.vin!r} is not a GB/T 34014 pack code ({exc}); a VIN has 17 characters"
        ) from None
    return execute_sections(
        args,
        lambda s: [
            ("pack", queries_packs.about(s, code)),
            ("bindings", queries_packs.bindings(s, code.code)),
            ("swaps", queries_packs.swaps(s, code.code)),
        ],
    )


def _swaps(args: argparse.Namespace) -> int:
    start, end = window(args)
    return execute(
        args,
        lambda s: queries_packs.swaps_in(s, start, end, lookback=args.lookback, limit=args.limit),
    )


def _parse_charger(ident: str, operator: str | None, flag: str = "ID") -> Charger:
    try:
        return Charger.parse(ident, operator)
    except ValueError as exc:
        raise UserError(f"{flag} {exc}") from None


def _charger(args: argparse.Namespace) -> int:
    charger = _parse_charger(args.charger, args.operator)
    start, end = window(args, _SESSION_DAYS)

    def build(s: str) -> Sections:
        return [
            ("connectors", queries_chargers.connectors(s, charger)),
            (
                "sessions",
                queries_chargers.sessions(s, start, end, charger=charger, limit=args.limit),
            ),
            ("faults", queries_chargers.faults(s, charger, start, end, limit=args.limit)),
        ]

    # Said unknown only when nothing is stored of it: a connector known by its charging orders
    # alone has no connectors row, and its sessions are shown without a "no such connector".
    unknown = _unknown_charger(args.charger, charger, sessions=True)
    return execute_sections(
        args, build, if_unknown=(lambda s: queries_chargers.known_connectors(s, charger), unknown)
    )


def _unknown_charger(ident: str, charger: Charger, *, sessions: bool = False) -> str:
    """What to say of a charger no connector matches (``queries_chargers.connectors``, or
    with ``sessions`` ``known_connectors``, which also asks charging_session_events)."""
    if charger.connector_id is not None:
        tables = (
            "charger_connectors, latest_state nor charging_session_events"
            if sessions
            else "charger_connectors nor latest_state"
        )
        return (
            f"no such connector {ident}: neither {tables} "
            "knows it (check the OPERATOR:CONNECTOR; query chargers --operator OP lists them)"
        )
    return f"no connector is registered under {ident} (charger_connectors)"


def _chargers(args: argparse.Namespace) -> int:
    return execute(
        args,
        lambda s: queries_chargers.by_status(
            s, operator_id=args.operator, status=args.status, limit=args.limit
        ),
    )


def _sessions(args: argparse.Namespace) -> int:
    if (args.vin is None) == (args.charger is None):
        raise UserError("give --vin VIN or --charger ID (one of them)")
    charger = (
        None if args.charger is None else _parse_charger(args.charger, args.operator, "--charger")
    )
    start, end = window(args, _SESSION_DAYS)
    return execute(
        args,
        lambda s: queries_chargers.sessions(
            s, start, end, charger=charger, vin=args.vin, limit=args.limit
        ),
        # no sessions of a mistyped connector: said, as `query charger` says it
        if_unknown=None
        if charger is None
        else (
            lambda s: queries_chargers.known_connectors(s, charger),
            _unknown_charger(args.charger, charger, sessions=True),
        ),
    )


def _online(args: argparse.Namespace) -> int:
    if not args.quality:
        if args.day or args.id or args.prefix:
            raise UserError("--day, --id and --prefix go with --quality")
        return execute_sections(
            args,
            lambda s: [
                ("summary", queries_online.summary(s, args.kind, args.stale)),
                ("offline", queries_online.offline(s, args.kind, args.stale, limit=args.limit)),
            ],
            # latest_state alone would show an OEM's login 0 packs and 0 connectors (its
            # row-level access hides them): refused, as --quality is, by the kind's table.
            reads=(queries_online.KINDS[args.kind].table,),
        )
    if args.id and args.prefix:
        raise UserError("give --id or --prefix, not both")
    tz = zone(args)
    the_day = day(args.day, tz, "--day") if args.day else datetime.now(tz).date()
    return execute(
        args,
        lambda s: queries_online.quality(
            s,
            args.kind,
            the_day,
            tz=args.tz,
            interval=args.interval,
            skew=args.skew,
            entity=args.id,
            prefix=args.prefix,
            limit=args.limit,
        ),
    )
