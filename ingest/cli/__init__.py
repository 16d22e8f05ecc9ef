"""The ``nev-ingest`` console script: one entry point, one module per subcommand.

Each module in ``COMMANDS`` exposes ``register(subparsers)``, which adds its subparser and sets
``func`` (a callable taking the parsed ``argparse.Namespace`` and returning the exit code).
Register a command only when it works end to end: no placeholders.

``DEV_COMMANDS`` come from the ``devtools`` package (dev stack, demo, load generator), which a
source checkout has and the wheel does not: they are looked up by name when it is importable, so
the service never imports the dev tools.

A command line that names its command imports that command's module only: ``nev-ingest
decode`` must not pay for importing the database driver, the writer and the rule engine of
the other commands (~0.25 s of CPU, most of a short decode run).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import select
import sys
from collections.abc import Sequence

from ingest.cli.args import OneLineParser
from ingest.errors import UserError

__all__ = ["COMMANDS", "DEV_COMMANDS", "build_parser", "dev_commands", "main"]

# Import paths of the subcommand modules, in the order ``--help`` lists them.
COMMANDS: tuple[str, ...] = (
    "ingest.cli.decode",
    "ingest.cli.rules",
    "ingest.cli.alerts",
    "ingest.cli.config",
    "ingest.cli.migrate",
    "ingest.cli.query",
    "ingest.cli.run",
    "ingest.cli.gateway",
    "ingest.cli.dlq",
    "ingest.cli.keys",
    "ingest.cli.roles",
)

# The dev tools' commands, in the order ``--help`` lists them after the service's.
DEV_COMMANDS: tuple[str, ...] = (
    "devtools.devstack.cli",
    "devtools.demo.cli",
    "devtools.loadgen",
)


def dev_commands() -> tuple[str, ...]:
    """The dev tools' command modules, when the ``devtools`` package is installed (a checkout)."""
    return DEV_COMMANDS if importlib.util.find_spec("devtools") is not None else ()


def _command_name(path: str) -> str:
    """The command a module registers: its last name (``ingest.cli.decode``: ``decode``), or
    its package's when the module is a package's ``cli`` (``devtools.demo.cli``: ``demo``)."""
    parts = path.split(".")
    return parts[-2] if parts[-1] == "cli" else parts[-1]


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of command ``only`` alone (when it is one)."""
    modules = COMMANDS + dev_commands()
    if only is not None:
        modules = tuple(p for p in modules if _command_name(p) == only) or modules
    # OneLineParser: a bad flag is one line naming it and what it accepts (exit 2), like a
    # UserError, instead of argparse's usage block.
    parser = OneLineParser(
        prog="nev-ingest",
        description="GB/T 32960 NEV telemetry: Kafka -> decode -> TimescaleDB, with safety alerts.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for path in modules:
        importlib.import_module(path).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else list(argv)
    # The first word is the command unless it is an option (--help: every command is listed).
    first = args_list[0] if args_list and not args_list[0].startswith("-") else None
    parser = build_parser(first)
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        # What is still buffered goes now, inside this try: at exit, a reader that went away
        # would be reported as "Exception ignored ... BrokenPipeError" and exit code 120.
        sys.stdout.flush()
    except UserError as exc:
        # One line, no traceback: the message already says what to do next.
        print(f"nev-ingest: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        if not _stdout_gone():
            raise  # a socket's, not the output's: a failure to report
        # The reader of the output went away (``| head``): stop quietly, as filters do. Point
        # stdout at /dev/null, or Python's flush at exit would report the pipe again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    return code


def _stdout_gone() -> bool:
    """Whether stdout is a pipe whose reader closed it (poll reports an error on it)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & (select.POLLERR | select.POLLHUP) for _, event in poller.poll(0))
    except (OSError, ValueError):  # no such descriptor (replaced, closed)
        return False


if __name__ == "__main__":
    sys.exit(main())
