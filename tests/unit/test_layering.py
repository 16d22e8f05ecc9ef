"""The layers hold: every import points downwards, no cycles (devtools.layers reads the source).

The synthetic trees show that the check fails when someone adds an upward, sideways or
type-checking-only import, or a cycle: the guarantee is only as good as its ability to fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.layers import LAYERS, check, cycles, room_of

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        for parent in path.relative_to(tmp_path).parents:
            init = tmp_path / parent / "__init__.py"
            if parent != Path(".") and not init.exists():
                init.write_text("")
    return tmp_path


def test_the_tree_imports_only_downwards() -> None:
    assert [str(v) for v in check(ROOT)] == []


def test_the_tree_has_no_import_cycles() -> None:
    assert cycles(ROOT) == []


def test_every_shipped_package_has_a_room() -> None:
    for package in ("contract", "ingest.decoders", "ingest.config", "storage", "alerts"):
        assert room_of(package) is not None, package
    assert room_of("ingest.pipeline.worker") == (4, "ingest.pipeline")
    # A new module at the ingest root belongs to the bottom layer until it gets a room.
    assert room_of("ingest.newthing") == (0, "ingest")
    assert len({room for rooms in LAYERS for room in rooms}) == sum(map(len, LAYERS))


def test_an_upward_import_is_caught(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "contract/rows.py": "from ingest.pipeline.worker import Worker\n",
            "ingest/pipeline/worker.py": "class Worker: ...\n",
        },
    )
    [violation] = check(root)
    assert (violation.importer, violation.imported) == ("contract.rows", "ingest.pipeline.worker")
    assert "higher layer" in violation.why
    assert str(violation).startswith("contract/rows.py:1:")


def test_a_type_checking_or_local_import_is_caught_too(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "storage/writer.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from ingest.cli import main\n"
                "def f() -> None:\n"
                "    import devtools.sim.fleet\n"
            ),
            "ingest/cli/__init__.py": "def main() -> None: ...\n",
            "devtools/sim/fleet.py": "",
        },
    )
    assert sorted(v.imported for v in check(root)) == ["devtools.sim.fleet", "ingest.cli"]


def test_peers_of_one_layer_may_not_import_each_other(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"storage/x.py": "from alerts import y\n", "alerts/y.py": ""})
    [violation] = check(root)
    assert violation.imported == "alerts.y"
    assert "peers" in violation.why


def test_relative_imports_are_resolved(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "ingest/decoders/fast.py": "from ..pipeline import batch\n",
            "ingest/pipeline/batch.py": "",
        },
    )
    assert [v.imported for v in check(root)] == ["ingest.pipeline.batch"]


def test_a_cycle_is_caught(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "ingest/pipeline/worker.py": "from ingest.pipeline.lag import LagReporter\n",
            "ingest/pipeline/lag.py": "from ingest.pipeline.worker import Worker\n",
        },
    )
    assert check(root) == []  # one room: allowed by the layers, but still a cycle
    assert cycles(root) == [["ingest.pipeline.lag", "ingest.pipeline.worker"]]
