"""What ships: the wheel built from pyproject.toml holds the service and nothing of the dev tools,
simulators, benchmarks or tests, and its command line works without them."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = {"contract", "ingest", "storage", "alerts"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    [built] = out.glob("*.whl")
    return built


def test_the_wheel_ships_the_service_only(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == SHIPPED
    assert not [n for n in names if "devstack" in n or "/sim/" in n or "loadgen" in n]
    # Data the service reads at run time travels with it.
    assert "alerts/default_rules.toml" in names
    assert any(n.startswith("storage/migrations/") and n.endswith(".sql") for n in names)
    assert {f"{p}/py.typed" for p in SHIPPED} <= set(names)


def test_the_shipped_command_line_runs_without_the_dev_tools(wheel: Path, tmp_path: Path) -> None:
    zipfile.ZipFile(wheel).extractall(tmp_path)
    # The checkout is on sys.path of this virtualenv (editable install): take it off, so only
    # the unpacked wheel (and the third-party packages) can be imported.
    probe = (
        "import sys\n"
        f"sys.path = [{str(tmp_path)!r}] + [p for p in sys.path if p not in ('', {str(ROOT)!r})]\n"
        "import importlib.util\n"
        "assert importlib.util.find_spec('devtools') is None\n"
        "from ingest.cli import build_parser\n"
        "sub = build_parser()._subparsers._group_actions[0]\n"
        "print(' '.join(sub.choices))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, check=True, capture_output=True, text=True
    )
    commands = done.stdout.split()
    assert commands == [
        "decode",
        "rules",
        "alerts",
        "config",
        "migrate",
        "query",
        "run",
        "gateway",
        "dlq",
        "keys",
        "roles",
    ]
