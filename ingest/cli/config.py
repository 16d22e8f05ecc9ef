"""``nev-ingest config show|check|docs``: see, verify and document the effective configuration."""

from __future__ import annotations

import argparse
import asyncio
import sys

from ingest.cli.args import float_range
from ingest.config.docs import render_docs, show_json, show_toml
from ingest.config.load import add_config_arguments, settings_from_args
from ingest.wiring import check_kafka, check_postgres, databases


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "config",
        help="show, check or document the configuration",
        description="Show, check or document the configuration "
        "(defaults < TOML file < NEV_<SECTION>_<KEY> < flags).",
    )
    sub = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)

    show = sub.add_parser("show", help="print the effective configuration, secrets masked")
    show.add_argument("--format", choices=("toml", "json"), default="toml")
    add_config_arguments(show)
    show.set_defaults(func=_show)

    check = sub.add_parser(
        "check", help="validate the configuration and connect to Kafka and PostgreSQL"
    )
    check.add_argument(
        "--timeout",
        type=float_range(0.1, 600),
        default=10.0,
        metavar="SECONDS",
        help="per service, 0.1..600 (default 10)",
    )
    check.add_argument(
        "--skip", choices=("kafka", "postgres"), action="append", default=[], help="skip a check"
    )
    add_config_arguments(check)
    check.set_defaults(func=_check)

    docs = sub.add_parser("docs", help="print the configuration reference (docs/configuration.md)")
    docs.set_defaults(func=_docs)


def _show(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    sys.stdout.write(show_json(settings) + "\n" if args.format == "json" else show_toml(settings))
    return 0


def _check(args: argparse.Namespace) -> int:
    from ingest.cli.run import check_rules, check_write_timeout
    from ingest.gateway.checks import check_settings

    settings = settings_from_args(args)
    # What `run` and `gateway` refuse before they connect (nothing is bound or started here):
    # the write limit against the statement timeout, the rule file, the gateway's listener
    # addresses, its TLS files, the T/CEC operators.
    check_write_timeout(settings)
    check_rules(settings)
    check_settings(settings)

    async def run() -> list[str]:
        lines = []
        if "kafka" not in args.skip:
            lines.append(await check_kafka(settings.kafka, args.timeout))
        if "postgres" not in args.skip:
            # Every database the service and the query CLI use (with shards, postgres.dsn
            # itself is none of them).
            for key, pg in databases(settings, reads=True):
                lines.append(await check_postgres(pg, args.timeout, key))
        return lines

    for line in asyncio.run(run()):
        print(line)
    print("configuration ok")
    return 0


def _docs(args: argparse.Namespace) -> int:
    sys.stdout.write(render_docs())
    return 0
