"""A command line that names its command imports that command's modules only: ``nev-ingest
decode`` starts without the database drivers, the writer and the rule engine."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

_PROBE = """
import sys
from ingest.cli import build_parser
parser = build_parser({only!r})
sub = parser._subparsers._group_actions[0]
print(" ".join(sub.choices))
heavy = ("asyncpg", "psycopg", "aiokafka", "storage.writer", "alerts.engine")
print(" ".join(m for m in heavy if m in sys.modules))
"""


def _probe(only: str | None) -> tuple[list[str], list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(only=only)],
        check=True,
        capture_output=True,
        text=True,
    )
    commands, heavy = [*done.stdout.splitlines(), "", ""][:2]
    return commands.split(), heavy.split()


def test_decode_alone_imports_no_database_or_rule_engine() -> None:
    commands, heavy = _probe("decode")
    assert commands == ["decode"]
    assert heavy == []


def test_no_command_or_an_unknown_one_gets_every_command() -> None:
    for only in (None, "nosuch"):
        commands, heavy = _probe(only)
        assert commands[:7] == ["decode", "rules", "alerts", "config", "migrate", "query", "run"]
        # The whole parser imports the other commands' modules: what the probe detects.
        assert "asyncpg" in heavy
