"""``devstack down --purge`` without servers: what it deletes (the clusters ``home_of`` kept in
/tmp, the stack's entries of the state directory) and what it leaves (anything else, whatever
``state.json`` says), and when it refuses and deletes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.devstack import postgres, stack
from devtools.devstack.state import ServiceState, StackState
from devtools.settings import DevSettings, DevstackSettings
from ingest.errors import UserError

pytestmark = pytest.mark.unit


@pytest.fixture
def tmp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def cluster(home: Path, name: str) -> ServiceState:
    (home / "data").mkdir(parents=True)
    (home / "data" / "PG_VERSION").write_text("15\n")
    return ServiceState(name, 1, "", "", extra={"data_dir": str(home / "data")})


def fallback(state_dir: Path, name: str) -> Path:
    return postgres.home_of(state_dir, "nobody", name)  # nobody cannot reach tmp_path


def purge(state_dir: Path) -> None:
    settings = DevSettings(devstack=DevstackSettings(state_dir=str(state_dir)))
    stack.down(settings, report=False, purge=True)


def test_the_clusters_kept_in_tmp_go_and_their_directory_with_the_last(
    tmp_path: Path, tmp_root: Path
) -> None:
    state_dir = tmp_path / "ds"
    homes = [fallback(state_dir, n) for n in ("postgres", "postgres-1")]
    assert all(h.parent.parent == tmp_root for h in homes)
    for h, n in zip(homes, ("postgres", "postgres-1"), strict=True):
        cluster(h, n)
    assert postgres.remove_home(state_dir, "postgres") == homes[0]
    assert not homes[0].exists() and homes[1].exists()
    assert postgres.remove_home(state_dir, "postgres-1") == homes[1]
    assert list(tmp_root.iterdir()) == []


def test_a_cluster_is_found_where_state_json_put_it_under_another_tmpdir(
    tmp_path: Path, tmp_root: Path
) -> None:
    state_dir = tmp_path / "ds"
    home = fallback(state_dir, "postgres")
    moved = tmp_path / "other-tmp" / home.parent.name / "postgres"  # TMPDIR differed at up
    svc = cluster(moved, "postgres")
    assert postgres.remove_home(state_dir, "postgres", svc.extra["data_dir"]) == moved
    assert not moved.exists()


def test_nothing_else_is_deleted(tmp_path: Path, tmp_root: Path) -> None:
    state_dir = tmp_path / "ds"
    inside = cluster(state_dir / "postgres", "postgres")  # the caller's: in the state directory
    elsewhere = cluster(tmp_path / "mine" / "postgres", "postgres")  # state.json points anywhere
    escape = cluster(tmp_path / "victim", "postgres")
    crafted = str(fallback(state_dir, "postgres") / ".." / ".." / ".." / "victim" / "data")
    for data in (inside.extra["data_dir"], elsewhere.extra["data_dir"], crafted):
        assert postgres.remove_home(state_dir, "postgres", data) is None
    for svc in (inside, elsewhere, escape):
        assert Path(svc.extra["data_dir"], "PG_VERSION").is_file()
    other = cluster(fallback(state_dir, "postgres"), "postgres-1")  # another service's name
    assert postgres.remove_home(state_dir, "postgres-1", other.extra["data_dir"]) is None


def save(state_dir: Path, *services: ServiceState) -> None:
    state = StackState(state_dir=state_dir)
    state.services.update({s.name: s for s in services})
    state.save()


def test_purge_deletes_the_stacks_entries_and_its_clusters_in_tmp_only(
    tmp_path: Path, tmp_root: Path
) -> None:
    state_dir = tmp_path / "ds"
    shard = cluster(fallback(state_dir, "postgres-1"), "postgres-1")
    save(state_dir, cluster(state_dir / "postgres", "postgres"), shard)
    for entry in ("kafka/data", "tls/secrets", "demo"):
        (state_dir / entry).mkdir(parents=True)
    (state_dir / "notes.txt").write_text("mine")
    purge(state_dir)
    assert sorted(p.name for p in state_dir.iterdir()) == ["lock", "notes.txt"]
    assert list(tmp_root.iterdir()) == []


def test_purge_refuses_a_damaged_state_file(tmp_path: Path) -> None:
    state_dir = tmp_path / "ds"
    cluster(state_dir / "postgres", "postgres")
    (state_dir / "state.json").write_text(json.dumps({"version": 999}))
    with pytest.raises(UserError, match="damaged or from another version"):
        purge(state_dir)
    assert (state_dir / "postgres" / "data" / "PG_VERSION").is_file()


@pytest.fixture
def demo_process() -> Iterator[int]:
    # a process whose command line reads like the demo's service (`nev-ingest run`). Popen can
    # return before the kernel has set the new program's command line (/proc/PID/cmdline reads
    # empty for a moment after the exec), so the fixture waits for the child's own word.
    code = "import time; print('up', flush=True); time.sleep(60)"
    argv = [sys.executable, "-c", code, "ingest", "run"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE) as proc:  # closes the pipe, reaps
        try:
            assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
            yield proc.pid
        finally:
            proc.kill()


def test_purge_refuses_while_the_demo_runs(tmp_path: Path, demo_process: int) -> None:
    state_dir = tmp_path / "ds"
    save(state_dir, cluster(state_dir / "postgres", "postgres"))
    (state_dir / "demo").mkdir()
    (state_dir / "demo" / "run.pid").write_text(str(demo_process))
    with pytest.raises(UserError, match="demo --stop"):
        purge(state_dir)
    assert (state_dir / "postgres" / "data" / "PG_VERSION").is_file()


def test_purge_stops_nothing_short_of_the_whole_stack(tmp_path: Path) -> None:
    settings = DevSettings(devstack=DevstackSettings(state_dir=str(tmp_path / "ds")))
    with pytest.raises(ValueError, match="purge"):
        stack.down(settings, only=("kafka",), report=False, purge=True)


def test_purge_deletes_nothing_while_any_cluster_has_a_server(
    tmp_path: Path, tmp_root: Path
) -> None:
    # One cluster in /tmp, one in the state directory whose postmaster.pid names a live
    # process (this one): every cluster is checked before the first is deleted.
    state_dir = tmp_path / "ds"
    kept = cluster(fallback(state_dir, "postgres"), "postgres")
    live = cluster(state_dir / "postgres-1", "postgres-1")
    Path(live.extra["data_dir"], "postmaster.pid").write_text(f"{os.getpid()}\n")
    save(state_dir, kept, live)
    with pytest.raises(UserError, match=r"still runs in .*postgres-1.*nothing was deleted"):
        purge(state_dir)
    assert Path(kept.extra["data_dir"], "PG_VERSION").is_file()
    assert (state_dir / "state.json").is_file()
