"""The supervisor when something fails under it: a metric file it cannot remove, its own loop
raising. Real worker processes; the workers never outlive a failed supervisor."""

from __future__ import annotations

import os
import signal
import sys
import threading
from functools import partial
from pathlib import Path

import pytest

from ingest.pipeline.multiproc_dir import (
    WORKER_METRICS_ROOM,
    metrics_room_problem,
    prepare_multiproc_dir,
)
from ingest.pipeline.supervisor import Supervisor, SupervisorOptions
from tests.unit.test_pipeline_supervisor import _run_then_sigterm, _wait

pytestmark = pytest.mark.unit


def _until_stopped(index: int, marker_dir: str) -> None:
    """Write ``ready-<index>``, run until SIGTERM, exit 0."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    (Path(marker_dir) / f"ready-{index}").write_text(str(os.getpid()))
    stop.wait(120)
    sys.exit(0)


def _unremovable_gauge_then_run(index: int, marker_dir: str, metrics_dir: str) -> None:
    """First start: leave a gauge "file" mark_process_dead cannot remove (a directory: no
    permission bits stop root, and the tests may run as root), then crash. Then: run."""
    marker = Path(marker_dir) / "crashed"
    if not marker.exists():
        marker.write_text("1")
        (Path(metrics_dir) / f"gauge_livesum_{os.getpid()}.db").mkdir()
        sys.exit(3)
    _until_stopped(index, marker_dir)


def _stop_once_ready(sup: Supervisor, markers: Path) -> int:
    """``sup.run()``, stopped with SIGTERM once its worker wrote ``ready-0``; its exit code."""
    return _run_then_sigterm(sup, lambda: _wait(lambda: (markers / "ready-0").exists()))


def _options(mp_dir: Path, **kw: float) -> SupervisorOptions:
    return SupervisorOptions(
        workers=1,
        metrics_host="127.0.0.1",
        metrics_port=0,
        multiproc_dir=mp_dir,
        restart_backoff_initial_s=0.05,
        **kw,
    )


def test_a_dead_workers_gauge_file_that_cannot_go_does_not_stop_the_supervision(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # As with metrics.multiproc_dir on a file system gone read-only: mark_process_dead's
    # OSError used to end the supervisor's loop, leaving the worker running unwatched.
    mp_dir = prepare_multiproc_dir(tmp_path / "metrics")
    markers = tmp_path / "markers"
    markers.mkdir()
    sup = Supervisor(
        _options(mp_dir),
        partial(_unremovable_gauge_then_run, marker_dir=str(markers), metrics_dir=str(mp_dir)),
    )
    outcome: list[object] = []

    def drive() -> None:
        try:
            _wait(lambda: (markers / "ready-0").exists() or bool(outcome))
        finally:
            if not outcome:  # the loop still runs (and handles SIGTERM): stop it
                os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=drive)
    thread.start()
    try:
        outcome.append(sup.run())
    except BaseException as exc:
        outcome.append(exc)
    finally:
        thread.join()
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    assert outcome == [0]
    assert sup.restarts == 1
    assert [r.getMessage() for r in caplog.records if "gauge files" in r.getMessage()] != []


class _FailingSupervisor(Supervisor):
    """A supervisor whose loop raises once its worker is ready (an unexpected error)."""

    def __init__(self, marker: Path, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self._marker = marker

    def _reap(self) -> None:
        if self._marker.exists():
            raise RuntimeError("a bug in the loop")
        super()._reap()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_failing_supervisor_stops_its_workers_before_the_error_propagates(
    tmp_path: Path,
) -> None:
    mp_dir = prepare_multiproc_dir(tmp_path / "metrics")
    markers = tmp_path / "markers"
    markers.mkdir()
    sup = _FailingSupervisor(
        markers / "ready-0",
        _options(mp_dir, shutdown_timeout_s=30),
        partial(_until_stopped, marker_dir=str(markers)),
    )
    try:
        with pytest.raises(RuntimeError, match="a bug in the loop"):
            sup.run()
        pid = int((markers / "ready-0").read_text())
        assert not _alive(pid), "the worker outlived its supervisor"
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        for slot in sup._slots:  # a worker left by a regression must not outlive the test
            if slot.process is not None and slot.process.is_alive():
                slot.process.kill()
                slot.process.join()


def test_too_little_room_for_the_metric_files_is_named() -> None:
    here = Path(__file__).parent
    problem = metrics_room_problem(here, 10**12)  # more workers than any disk has room for
    assert problem is not None
    assert problem.startswith(f"metrics.multiproc_dir = {here}: ")
    assert f"{WORKER_METRICS_ROOM * 10**12} the metric files" in problem
    assert " bytes free" in problem and "SIGBUS" in problem


def _sigbus_then_run(index: int, marker_dir: str) -> None:
    """First start: die as a worker touching a page of a full tmpfs does. Then: run."""
    marker = Path(marker_dir) / "crashed"
    if not marker.exists():
        marker.write_text("1")
        os.kill(os.getpid(), signal.SIGBUS)
    _until_stopped(index, marker_dir)


def test_a_worker_killed_by_sigbus_points_at_the_metrics_directory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mp_dir = prepare_multiproc_dir(tmp_path / "metrics")
    markers = tmp_path / "markers"
    markers.mkdir()
    sup = Supervisor(_options(mp_dir), partial(_sigbus_then_run, marker_dir=str(markers)))
    assert _stop_once_ready(sup, markers) == 0
    (crash,) = [r.getMessage() for r in caplog.records if "crashed" in r.getMessage()]
    assert f"killed by SIGBUS; metrics.multiproc_dir {mp_dir} full? " in crash
    assert crash.split(" full? ")[1].split(" bytes free")[0].isdigit()


def _ignores_sigterm(index: int, marker_dir: str) -> None:
    """A worker stuck in its stop (SIGTERM does nothing): only the kill ends it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    (Path(marker_dir) / f"ready-{index}").write_text(str(os.getpid()))
    threading.Event().wait(120)


def test_a_worker_killed_at_the_stop_deadline_is_warned_of_once_with_both_figures(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    sup = Supervisor(
        _options(
            prepare_multiproc_dir(tmp_path / "metrics"), shutdown_timeout_s=1, stop_grace_s=0.5
        ),
        partial(_ignores_sigterm, marker_dir=str(markers)),
    )
    assert _stop_once_ready(sup, markers) == 1  # killed: not a clean stop
    warned = [r.getMessage() for r in caplog.records if "did not stop" in r.getMessage()]
    assert len(warned) == 1, warned
    assert warned[0].startswith(
        "worker did not stop within 1.5s (pipeline.shutdown_timeout_s 1s + 0.5s to leave"
    )


def _realtime_signal_then_run(index: int, marker_dir: str) -> None:
    """First start: die of a real-time signal (no name in ``signal.Signals``). Then: run."""
    marker = Path(marker_dir) / "crashed"
    if not marker.exists():
        marker.write_text("1")
        signal.signal(signal.SIGRTMIN + 2, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGRTMIN + 2)
    _until_stopped(index, marker_dir)


def test_a_worker_killed_by_a_real_time_signal_is_restarted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # signal.Signals(-code) raises for such a signal: the crash line must not stop supervision.
    mp_dir = prepare_multiproc_dir(tmp_path / "metrics")
    markers = tmp_path / "markers"
    markers.mkdir()
    sup = Supervisor(_options(mp_dir), partial(_realtime_signal_then_run, marker_dir=str(markers)))
    assert _stop_once_ready(sup, markers) == 0
    (crash,) = [r.getMessage() for r in caplog.records if "crashed" in r.getMessage()]
    assert f"killed by signal {int(signal.SIGRTMIN) + 2}" in crash
