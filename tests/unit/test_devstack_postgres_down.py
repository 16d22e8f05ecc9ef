"""``postgres.down`` says a server is stopped only when its process is gone: a postmaster that
outlives a successful ``pg_ctl stop`` is an error, so ``devstack down`` keeps its pid (and
``--purge`` never deletes the data under it). ``pg_ctl`` here is a script that exits 0, the
way the real one does once postmaster.pid is gone; the process is a real one."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.devstack import postgres
from devtools.devstack.process import is_running, start_time
from devtools.devstack.state import ServiceState
from ingest.errors import UserError

pytestmark = pytest.mark.unit


@pytest.fixture
def lingering() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def service(tmp_path: Path, pid: int) -> ServiceState:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pg_ctl = bin_dir / "pg_ctl"
    pg_ctl.write_text("#!/bin/sh\nexit 0\n")
    pg_ctl.chmod(0o755)
    (tmp_path / "data").mkdir()
    extra = {"bin_dir": str(bin_dir), "data_dir": str(tmp_path / "data")}
    return ServiceState(
        "postgres", 1, "", str(tmp_path / "postgres.log"), pid, start_time(pid), extra
    )


def test_a_server_that_outlives_pg_ctl_is_an_error(
    tmp_path: Path, lingering: subprocess.Popen[bytes]
) -> None:
    svc = service(tmp_path, lingering.pid)
    with pytest.raises(UserError, match=rf"pid {lingering.pid}\) still runs"):
        postgres.down(svc, 0.2)
    assert is_running(svc.pid, svc.started)


def test_a_server_gone_after_pg_ctl_is_stopped(
    tmp_path: Path, lingering: subprocess.Popen[bytes]
) -> None:
    svc = service(tmp_path, lingering.pid)
    lingering.kill()
    lingering.wait()
    postgres.down(svc, 5.0)  # no error: the process is gone
