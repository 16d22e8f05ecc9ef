"""Every test is ``unit`` or ``integration``: ``pytest -m unit`` must not silently skip a module.

Both cases run pytest's real collection in a subprocess (collection only: nothing runs, no
service is needed).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def _collect(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH: the checkout under test, not whichever copy the virtualenv has installed.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_every_test_of_the_suite_is_unit_or_integration() -> None:
    result = _collect("-m", "not unit and not integration", "tests", cwd=ROOT)
    # Exit 5: pytest collected (selected) no test; anything else names what slipped through.
    assert result.returncode == 5, result.stdout[-3000:] + result.stderr[-3000:]


def test_a_module_without_a_marker_fails_collection(tmp_path: Path) -> None:
    # The hook of tests/conftest.py, in a tree of its own (its fixtures are not needed here).
    (tmp_path / "conftest.py").write_text(
        "from tests.conftest import pytest_collection_modifyitems  # noqa: F401\n"
    )
    (tmp_path / "test_marked.py").write_text(
        "import pytest\n\npytestmark = pytest.mark.unit\n\n\ndef test_a() -> None:\n    pass\n"
    )
    assert _collect(str(tmp_path), cwd=tmp_path).returncode == 0

    (tmp_path / "test_forgotten.py").write_text("def test_b() -> None:\n    pass\n")
    result = _collect(str(tmp_path), cwd=tmp_path)
    assert result.returncode != 0, result.stdout
    assert "test_forgotten.py" in result.stderr, result.stderr
    assert "test_marked.py" not in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
