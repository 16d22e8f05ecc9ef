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
import sys
from collections.abc import Sequence

from ingest.cli.args import OneLineParser
from ingest.cli.output import discard_stdout, flushed, note, open_closed_streams, stdout_gone
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
    open_closed_streams()  # before argparse, whose errors go to stderr
    args_list = sys.argv[1:] if argv is None else list(argv)
    # The first word is the command unless it is an option (--help: every command is listed).
    first = args_list[0] if args_list and not args_list[0].startswith("-") else None
    parser = build_parser(first)
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except UserError as exc:
        # One line, no traceback: the message already says what to do next.
        note(f"nev-ingest: error: {exc}")
        code = exc.exit_code
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        if not stdout_gone():
            raise  # a socket's, not the output's: a failure to report
        # The reader of the output went away (``| head``): stop quietly, as filters do.
        discard_stdout()
        return 0
    # What stdout still buffers goes now, not at exit, where a reader that went away would be
    # reported as "Exception ignored ... BrokenPipeError" with exit status 120.
    return flushed(code)


if __name__ == "__main__":
    sys.exit(main())
