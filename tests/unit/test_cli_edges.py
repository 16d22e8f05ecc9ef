"""Hostile command lines as a person types them: one line on stderr, exit 2, never a traceback.

Each case of issue 9 item 5 runs the real console entry (``python -m ingest``) in a subprocess.
The database and the broker are closed loopback ports: a flag that slipped past its check would
end in a connection error instead, which the expected text tells apart.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

DEFAULT_RULES = Path(__file__).parents[2] / "alerts" / "default_rules.toml"


def _closed_port() -> int:
    # Bound and closed again: nothing listens there for the moment the test needs.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(Path.home()),
        "NEV_POSTGRES_DSN": f"postgresql://nev@127.0.0.1:{_closed_port()}/nev",
        "NEV_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{_closed_port()}",
        "NEV_KAFKA_REQUEST_TIMEOUT_MS": "1000",
    }
    return subprocess.run(
        [sys.executable, "-m", "ingest", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=60,
        check=False,
    )


def _one_line(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


RANGE_CASES = [
    (("query", "pack", "VIN", "--every", "0m"), ("argument --every", "from 1s to 366d")),
    (("query", "pack", "VIN", "--every", "99999999999999d"), ("argument --every",)),
    (
        ("query", "track", "VIN", "--from", "10000000000000000000000d"),
        ("--from '10000000000000000000000d': expected a time from 1970 to 2199",),
    ),
    (("query", "track", "VIN", "--to", "0001-01-01"), ("--to '0001-01-01'",)),
    (("query", "daily", "--to", "0001-01-01"), ("--to '0001-01-01'",)),
    (("query", "track", "VIN", "--limit", "-1"), ("argument --limit", "from 1 to 10000000")),
    (("query", "latest", "VIN", "--limit", "99999999999999999999"), ("argument --limit",)),
    (
        ("query", "track", "VIN", "--schema", "nev; drop table x"),
        ("argument --schema: expected a plain SQL name",),
    ),
    (("query", "alarms", "--level", "9"), ("argument --level", "from 1 to 4")),
    (("query", "pack", "VIN", "--pack", "0"), ("argument --pack", "from 1 to 255")),
    (("query", "latest", "--prefix", "\udcff"), ("argument --prefix", "printable")),
    (("query", "latest", "VIN", "--kind", "truck"), ("argument --kind",)),
    (
        ("query", "pack", "ABCPE01TRACE01ZA10000001"),
        ("is not a GB/T 34014 pack code (bad_date at position 15", "a VIN has 17 characters"),
    ),
    (("query", "pack", "abc"), ("not a GB/T 34014 pack code (wrong_length",)),
    (("query", "charger", "MA01H3BQ1PILE"), ("ID 'MA01H3BQ1PILE': give OPERATOR:CONNECTOR",)),
    (("query", "charger", "OP:C1"), ("9-character OperatorID",)),
    (("query", "charger", "X", "--operator", "MA01H3BQ1X"), ("argument --operator",)),
    (("query", "sessions", "--from", "7d"), ("give --vin VIN or --charger ID",)),
    (("query", "sessions", "--charger", "short"), ("--charger 'short': give",)),
    (("query", "chargers", "--status", "7"), ("argument --status", "charging (3)")),
    (("query", "swaps", "--lookback", "0s"), ("argument --lookback", "from 1m to 366d")),
    (("query", "online", "--kind", "pile"), ("argument --kind",)),
    (("query", "online", "--day", "2025-06-01"), ("--day, --id and --prefix go with --quality",)),
    (("query", "online", "--quality", "--day", "June"), ("--day 'June'",)),
    (("query", "online", "--quality", "--id", "A", "--prefix", "B"), ("--id or --prefix",)),
    (("migrate", "--schema", "Nev"), ("argument --schema",)),
    (  # ignored, it said nothing: --dsn migrates one database, outside the map
        ("migrate", "--dsn", "postgresql://nev@127.0.0.1:1/nev", "--reshard"),
        ("--reshard records the storage.shards map", "drop --dsn"),
    ),
    (("alerts", "list", "--limit", "0"), ("argument --limit", "from 1 to 100000")),
    (("alerts", "ack", "99999999999999999999", "--by", "me"), ("argument ID",)),
    (
        ("config", "show", "--set", "kafka.sasl_mechanism=OAUTHBEARER"),
        ("kafka.sasl_mechanism = 'OAUTHBEARER': expected one of PLAIN",),
    ),
    (
        ("config", "show", "--set", "pipeline.workers=99999999999999999999999"),
        ("pipeline.workers = 99999999999999999999999: expected an integer from 1 to 256",),
    ),
    (("config", "check", "--timeout", "-1"), ("argument --timeout",)),
    (
        ("alerts", "list", "--dsn", "postgresql://nev:s\udcffcret@127.0.0.1/nev"),
        ("command line: postgres.dsn: not UTF-8 text",),
    ),
    (("query", "track", "VIN", "--tz", "\udcff"), ("--tz",)),
    (("run", "--workers", "0"), ("argument --workers", "from 1 to 256")),
    (("run", "--metrics-port", "70000"), ("argument --metrics-port", "from 1 to 65535")),
    (("demo", "--vehicles", "0"), ("argument --vehicles",)),
    (("loadgen", "--share-2025", "5"), ("argument --share-2025", "from 0 to 1")),
    (("loadgen", "--bad-ratio", "-1"), ("argument --bad-ratio", "from 0 to 1")),
    (("loadgen", "--rate", "-5"), ("argument --rate",)),
    (("loadgen", "--interval-s", "0"), ("argument --interval-s",)),
    (("loadgen", "--max-seconds", "0"), ("argument --max-seconds",)),
    (("loadgen", "--chargers", "-1"), ("argument --chargers", "from 0 to 1000000")),
    (("loadgen", "--packs", "1000001"), ("argument --packs", "from 0 to 1000000")),
    (("loadgen", "--packs", "many"), ("argument --packs",)),
    (("loadgen", "--tcec-share", "1.5"), ("argument --tcec-share", "from 0 to 1")),
    (("demo", "--chargers", "-3"), ("argument --chargers",)),
    (("demo", "--packs", "100001"), ("argument --packs",)),
    (
        ("loadgen", "--topic", "bad topic!"),
        ("argument --topic: expected a Kafka topic name", "'bad topic!'"),
    ),
]


@pytest.mark.parametrize(("argv", "expected"), RANGE_CASES, ids=lambda v: " ".join(v)[:60])
def test_a_bad_value_is_one_line_naming_the_flag(
    argv: tuple[str, ...], expected: tuple[str, ...]
) -> None:
    _one_line(_cli(*argv), *expected)


def test_loadgen_with_an_unreachable_broker(tmp_path: Path) -> None:
    # A real closed loopback port; the producer's start is bounded by kafka.request_timeout_ms.
    servers = f"127.0.0.1:{_closed_port()}"
    result = _cli(
        "loadgen",
        "--vehicles",
        "1",
        "--minutes",
        "1",
        env={"NEV_KAFKA_BOOTSTRAP_SERVERS": servers},
    )
    _one_line(
        # The topic check at start is the first to reach for the broker.
        result,
        f"kafka.bootstrap_servers = {servers}: could not list the topics",
    )
    assert "Unclosed" not in result.stderr
    assert result.stdout == ""


def test_rules_check_of_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_bytes(b'\xff\xfe[[rule]]\nid = "x"\n')
    _one_line(_cli("rules", "check", str(rules)), "not UTF-8 text (byte 0xff at offset 0)")


def test_rules_check_of_deeply_nested_toml(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    _one_line(_cli("rules", "check", str(rules)), "nested too deeply")


def test_rules_check_of_an_invalid_file_exits_2(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nid = "x"\n')
    result = _cli("rules", "check", str(rules))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    # Every problem with its line, then the summary (the listing is the point of `check`).
    assert result.stderr.splitlines()[-1].endswith("error(s): fix them and run the check again")


def test_run_refuses_an_invalid_rule_file_before_starting(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nid = "x"\n')
    result = _cli("run", "--skip-checks", "--set", f"alerts.rules_file={rules}")
    _one_line(result, f"alerts.rules_file = {rules}:", "nev-ingest rules check")


def test_rules_test_skips_a_frames_line_that_is_not_utf8(tmp_path: Path) -> None:
    frames = tmp_path / "frames.txt"
    frames.write_bytes(b"\xff\xfe\n")
    result = _cli("rules", "test", str(DEFAULT_RULES), "--frames", str(frames))
    assert "Traceback" not in result.stderr
    assert result.returncode == 1  # some input skipped, as `decode` reports rejected frames
    assert f"{frames}:1: skipped" in result.stderr
