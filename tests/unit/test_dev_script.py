"""``./dev test`` and ``.ci/run`` fail whenever something failed: an empty pytest run (exit 5)
fails CI, and a failed or empty test run does not hide a lint or audit failure.

The real scripts run in bash; only what they call is a stub (setup, lint, audit, pytest, or
``./dev`` itself for ``.ci/run``), so no tool is installed and no service started.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def _exits(path: Path, code: int) -> None:
    path.write_text(f"#!/usr/bin/env bash\nexit {code}\n")
    path.chmod(0o755)


@pytest.mark.parametrize(("dev_rc", "ci_rc"), [(0, 0), (1, 1), (5, 5)])
def test_ci_run_fails_when_pytest_collected_nothing(
    tmp_path: Path, dev_rc: int, ci_rc: int
) -> None:
    (tmp_path / ".ci").mkdir()
    shutil.copy(ROOT / ".ci" / "run", tmp_path / ".ci" / "run")
    _exits(tmp_path / "dev", dev_rc)  # .ci/run runs ./dev test from the checkout's root
    result = subprocess.run(
        ["bash", str(tmp_path / ".ci" / "run")], capture_output=True, text=True, check=False
    )
    assert result.returncode == ci_rc, result.stderr
    assert ("collected no tests" in result.stderr) == (dev_rc == 5), result.stderr


LINT_FAILED = "dev: lint failed"
AUDIT_FAILED = "dev: a dependency has a known vulnerability"


@pytest.mark.parametrize(
    ("pytest_rc", "lint_rc", "audit_rc", "want_rc", "want_lines"),
    [
        (0, 0, 0, 0, ()),
        (0, 1, 0, 1, (LINT_FAILED,)),
        (0, 0, 1, 1, (AUDIT_FAILED,)),
        (5, 1, 0, 5, (LINT_FAILED,)),  # no tests collected: lint's failure still reported
        (1, 1, 1, 1, (LINT_FAILED, AUDIT_FAILED)),
        (5, 0, 0, 5, ()),
    ],
)
def test_dev_test_reports_lint_and_audit_whatever_pytest_says(
    tmp_path: Path,
    pytest_rc: int,
    lint_rc: int,
    audit_rc: int,
    want_rc: int,
    want_lines: tuple[str, ...],
) -> None:
    (tmp_path / "bin").mkdir()
    _exits(tmp_path / "bin" / "pytest", pytest_rc)
    # Sourced, ./dev defines its functions without running main; cmd_test then runs for real
    # with the steps it calls replaced.
    script = (
        f'source "{ROOT / "dev"}"\n'
        "setup() { :; }\n"
        f"lint() {{ return {lint_rc}; }}\n"
        f"audit() {{ return {audit_rc}; }}\n"
        f'VENV="{tmp_path}"\n'
        "rc=0\n"
        "cmd_test || rc=$?\n"
        'exit "$rc"\n'
    )
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == want_rc, result.stdout + result.stderr
    for line in (LINT_FAILED, AUDIT_FAILED):
        assert (line in result.stderr) == (line in want_lines), result.stderr
