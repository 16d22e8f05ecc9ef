"""``nev-ingest config check`` refuses what ``run`` and ``gateway`` refuse before connecting (the
rule file, the gateway's listeners, TLS files and T/CEC operators), without binding anything:
"configuration ok" means the commands start with it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit


# Neither service is asked: what is checked here is local.
CHECK = ["-m", "ingest", "config", "check", "--skip", "kafka", "--skip", "postgres"]


def _check(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *CHECK],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **env},
        timeout=60,
        check=False,
    )


def _garbage_pem(tmp_path: Path, name: str) -> str:
    path = tmp_path / name
    path.write_text("not a PEM file\n")
    return str(path)


def test_a_good_configuration_is_ok(tmp_path: Path) -> None:
    result = _check(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "configuration ok"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"NEV_ALERTS_RULES_FILE": "/nonexistent/rules.toml"},
            "alerts.rules_file = /nonexistent/rules.toml: cannot read it",
        ),
        (
            {"NEV_GATEWAY_LISTEN_VEHICLE": "garbage"},
            "gateway.listen_vehicle = 'garbage': expected host:port",
        ),
        (
            {"NEV_GATEWAY_LISTEN_BATTERY": "0.0.0.0:70000"},
            "gateway.listen_battery = '0.0.0.0:70000': expected host:port",
        ),
        ({"NEV_TCEC_LISTEN": "127.0.0.1:8090"}, "tcec.listen is set but no operator"),
        (
            {"NEV_STORAGE_WRITE_TIMEOUT_S": "60", "NEV_POSTGRES_STATEMENT_TIMEOUT_MS": "60000"},
            "storage.write_timeout_s (60 s) is not above postgres.statement_timeout_ms",
        ),
    ],
)
def test_what_the_commands_refuse_is_refused(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    result = _check(tmp_path, **env)
    assert result.returncode == 2, result.stdout
    assert result.stdout == ""
    assert result.stderr.strip() == result.stderr.strip().splitlines()[0]
    assert result.stderr.startswith("nev-ingest: error: ")
    assert message in result.stderr


def test_tls_files_that_do_not_load_are_refused(tmp_path: Path) -> None:
    env = {
        "NEV_GATEWAY_TLS_CERTFILE": _garbage_pem(tmp_path, "cert.pem"),
        "NEV_GATEWAY_TLS_KEYFILE": _garbage_pem(tmp_path, "key.pem"),
    }
    result = _check(tmp_path, **env)
    assert result.returncode == 2, result.stdout
    assert "gateway TLS files cannot be loaded" in result.stderr


def test_a_short_write_limit_refuses_run_but_not_read_only_commands(tmp_path: Path) -> None:
    # Only the commands that write are refused: `config show` (like the query CLI) is not.
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "NEV_STORAGE_WRITE_TIMEOUT_S": "30",
        "NEV_POSTGRES_STATEMENT_TIMEOUT_MS": "60000",
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ingest", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )

    shown = cli("config", "show")
    assert shown.returncode == 0, shown.stderr
    run = cli("run", "--skip-checks")
    assert run.returncode == 2, run.stderr
    assert "raise storage.write_timeout_s well above it" in run.stderr
