"""`devstack up` is idempotent, `down` stops by pid what `up` started, and both repeat cleanly.

Uses PostgreSQL alone in a private state directory (a second Kafka would cost a JVM); Kafka and
PGlite go through the same up/down code in every test session via the conftest fixtures.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from devtools.devstack import stack
from devtools.devstack.process import is_running
from devtools.devstack.state import StackState
from devtools.settings import DevSettings, DevstackSettings
from ingest.errors import UserError

pytestmark = pytest.mark.integration


def test_up_twice_is_a_no_op_and_down_up_repeats(tmp_path: Path) -> None:
    settings = DevSettings(devstack=DevstackSettings(state_dir=str(tmp_path / "ds")))
    data_dirs: set[str] = set()
    try:
        pids = []
        for _ in range(2):
            state = stack.up(settings, only=("postgres",), report=False)
            first = state.services["postgres"]
            assert first.running
            data_dirs.add(first.extra["data_dir"])
            again = stack.up(settings, only=("postgres",), report=False).services["postgres"]
            assert (again.pid, again.started) == (first.pid, first.started)  # a no-op
            with psycopg.connect(first.url) as conn:
                assert conn.execute("SELECT current_database()").fetchone() == ("nev",)
            saved = StackState.load(tmp_path / "ds").services["postgres"]
            assert saved.pid == first.pid
            assert [name for name, running, _ in stack.status(settings) if running] == ["postgres"]
            with pytest.raises(UserError, match="kafka not running"):
                stack.env_lines(settings)

            stack.down(settings, report=False)
            assert first.pid is not None and first.started is not None
            assert not is_running(first.pid, first.started)
            assert StackState.load(tmp_path / "ds").services["postgres"].pid is None
            pids.append(first.pid)
        assert pids[0] != pids[1]
        # The cluster survives down/up: the second round found the first round's data.
        assert len(data_dirs) == 1
    finally:
        stack.down(settings, report=False, purge=True)


def test_down_purge_deletes_the_cluster_wherever_it_lives(tmp_path: Path) -> None:
    # As root, with the state directory in pytest's tmp_path (0700), the cluster lives in /tmp
    # (postgres.home_of): removing the state directory alone would leave it there, and the next
    # up of this state directory would start it again.
    state_dir = tmp_path / "ds"
    settings = DevSettings(devstack=DevstackSettings(state_dir=str(state_dir)))
    try:
        first = stack.up(settings, only=("postgres",), report=False).services["postgres"]
        data = Path(first.extra["data_dir"])
        with psycopg.connect(first.url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE left_behind")
        stack.down(settings, report=False, purge=True)
        root = data.parent.parent  # the state directory, or /tmp/nev-devstack-<hash>
        assert not data.exists() and (root == state_dir or not root.exists())
        assert [p.name for p in state_dir.iterdir()] == ["lock"]
        again = stack.up(settings, only=("postgres",), report=False).services["postgres"]
        with psycopg.connect(again.url) as conn:
            names = conn.execute("SELECT datname FROM pg_database").fetchall()
        assert ("left_behind",) not in names  # a new cluster, not the old one again
    finally:
        stack.down(settings, report=False, purge=True)


def test_down_with_nothing_running_is_fine(tmp_path: Path) -> None:
    settings = DevSettings(devstack=DevstackSettings(state_dir=str(tmp_path / "none")))
    assert stack.down(settings, report=False).services == {}
    with pytest.raises(UserError, match=r"no dev stack in .*none"):  # never started there
        stack.env_lines(settings)
