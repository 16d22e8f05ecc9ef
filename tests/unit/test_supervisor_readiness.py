"""/readyz with real worker processes: one entry per worker slot, saying why it is not ready when
it is not running (a crash loop's backoff) or has just been spawned."""

from __future__ import annotations

import multiprocessing
import os
import re
import threading
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest

from ingest.pipeline.multiproc_dir import prepare_multiproc_dir
from ingest.pipeline.supervisor import Supervisor, SupervisorOptions
from tests.unit.test_pipeline_supervisor import _always_crash, _get, _run_then_sigterm, _wait

pytestmark = pytest.mark.unit


def _no_metrics(index: int, marker_dir: str) -> None:
    """A worker still importing and reading its settings: alive, no gauges written yet."""
    (Path(marker_dir) / f"ready-{index}").write_text("1")
    threading.Event().wait(60)


def _readyz_workers(sup: Supervisor) -> tuple[int, list[dict[str, Any]]]:
    assert sup.server is not None
    status, body = _get(f"http://127.0.0.1:{sup.server.port}/readyz")
    workers: list[dict[str, Any]] = orjson.loads(body)["workers"]
    return status, workers


def test_a_crashed_worker_waiting_for_its_restart_says_so(tmp_path: Path) -> None:
    sup = Supervisor(
        SupervisorOptions(
            workers=1,
            metrics_host="127.0.0.1",
            metrics_port=0,
            multiproc_dir=prepare_multiproc_dir(tmp_path / "metrics"),
            restart_backoff_initial_s=600,
        ),
        _always_crash,
    )
    seen: list[tuple[int, list[dict[str, Any]]]] = []

    def drive() -> None:
        _wait(lambda: sup.restarts == 1)
        seen.append(_readyz_workers(sup))

    assert _run_then_sigterm(sup, drive) == 0
    [(status, workers)] = seen
    assert status == 503
    assert len(workers) == 1, workers  # an entry for the slot, though no worker runs in it
    [entry] = workers
    assert (entry["worker"], entry["pid"], entry["ok"]) == (0, None, False)
    [problem] = entry["problems"]
    assert re.fullmatch(r"crashed \(exit code 1\), restarting in \d+s", problem), problem


def test_a_worker_without_gauges_yet_is_starting_not_failing(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    sup = Supervisor(
        SupervisorOptions(
            workers=1,
            metrics_host="127.0.0.1",
            metrics_port=0,
            multiproc_dir=prepare_multiproc_dir(tmp_path / "metrics"),
        ),
        partial(_no_metrics, marker_dir=str(markers)),
    )
    seen: list[tuple[int, list[dict[str, Any]]]] = []

    def drive() -> None:
        _wait(lambda: (markers / "ready-0").exists())
        seen.append(_readyz_workers(sup))

    assert _run_then_sigterm(sup, drive) == 0
    [(status, workers)] = seen
    assert status == 503
    assert [w["problems"] for w in workers] == [["starting"]]
    assert workers[0]["worker"] == 0


def test_slots_not_spawned_yet_are_starting_not_crashed(tmp_path: Path) -> None:
    # /readyz is served before the loop spawns the workers (one at a time): a slot without a
    # process yet has not crashed. It used to say "crashed (exited), restarting in 0s".
    sup = Supervisor(
        SupervisorOptions(
            workers=2,
            metrics_host="127.0.0.1",
            metrics_port=0,
            multiproc_dir=prepare_multiproc_dir(tmp_path / "metrics"),
        ),
        _always_crash,
    )
    try:
        ok, body = sup.readiness()
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    assert not ok
    workers: list[dict[str, Any]] = body["workers"]  # type: ignore[assignment]
    assert [w["problems"] for w in workers] == [["starting (no process yet)"]] * 2


def test_a_dead_worker_not_reaped_yet_says_its_exit_and_the_restart(tmp_path: Path) -> None:
    # Between a worker's death and the loop's next reap its process object is still in the
    # slot. A process object without an exit code (one that never ran) used to read
    # "exited (exited)".
    sup = Supervisor(
        SupervisorOptions(
            workers=1, metrics_host="127.0.0.1", metrics_port=0, multiproc_dir=tmp_path
        ),
        _always_crash,
    )
    ctx = multiprocessing.get_context("spawn")
    dead = ctx.Process(target=_always_crash, args=(0,))
    dead.start()
    dead.join()
    slot = sup._slots[0]
    assert sup._not_running(slot, dead) == "exited (exit code 1); restart pending"
    never_ran = ctx.Process(target=_always_crash, args=(0,))
    assert sup._not_running(slot, never_ran) == "exited (exit code not known yet); restart pending"
    sup._stopping = True
    assert sup._not_running(slot, dead) == "stopped (exit code 1)"
