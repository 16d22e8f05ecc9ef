"""``devstack down --purge``'s deletion of a cluster kept in /tmp (``postgres.remove_home``):
exactly the directory ``home_of`` made for that state directory and service, nothing that
``state.json`` merely points at."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from devtools.devstack import postgres
from devtools.devstack.state import ServiceState

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


def test_the_clusters_kept_in_tmp_go_and_their_directory_with_the_last(
    tmp_path: Path, tmp_root: Path
) -> None:
    state_dir = tmp_path / "ds"
    homes = [postgres.home_of(state_dir, "nobody", n) for n in ("postgres", "postgres-1")]
    assert all(h.parent.parent == tmp_root for h in homes)  # nobody cannot reach tmp_path
    first, second = (cluster(h, n) for h, n in zip(homes, ("postgres", "postgres-1"), strict=True))
    assert postgres.remove_home(state_dir, first) == homes[0]
    assert not homes[0].exists() and homes[1].exists()
    assert postgres.remove_home(state_dir, second) == homes[1]
    assert list(tmp_root.iterdir()) == []


def test_nothing_else_is_deleted(tmp_path: Path, tmp_root: Path) -> None:
    state_dir = tmp_path / "ds"
    inside = cluster(state_dir / "postgres", "postgres")  # the caller's: in the state directory
    elsewhere = cluster(tmp_path / "mine", "postgres")  # a state.json pointing anywhere
    home = postgres.home_of(state_dir, "nobody", "postgres")
    wrong_name = cluster(home, "postgres-1")  # the fallback of another service
    for svc in (inside, elsewhere, wrong_name):
        assert postgres.remove_home(state_dir, svc) is None
        assert Path(svc.extra["data_dir"], "PG_VERSION").is_file()
    assert postgres.remove_home(state_dir, ServiceState("postgres", 1, "", "")) is None
