"""The supervisor with real processes: a crashed worker is restarted, SIGTERM stops all, /metrics
and /readyz are served from the workers' multi-process files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from ingest.errors import UserError
from ingest.pipeline.multiproc_dir import prepare_multiproc_dir
from ingest.pipeline.supervisor import Supervisor, SupervisorOptions

pytestmark = pytest.mark.unit


def _worker(index: int, marker_dir: str) -> None:
    """Crash (exit 3) on the first start; then publish metrics and run until SIGTERM."""
    from ingest.pipeline.metrics import PipelineMetrics

    marker = Path(marker_dir) / f"started-{index}"
    starts = int(marker.read_text()) + 1 if marker.exists() else 1
    marker.write_text(str(starts))
    if starts == 1:
        sys.exit(3)
    m = PipelineMetrics()
    m.frames_written.labels(topic="t", kind="vehicle").inc(5)
    m.kafka_connected.set(1)
    m.in_group.set(1)
    m.db_connected.set(1)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.is_set():
        m.heartbeat.set(time.time())
        stop.wait(0.05)
    sys.exit(0)


def _wait(cond: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 (http to loopback)
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _run_then_sigterm(sup: Supervisor, drive: Callable[[], None]) -> int:
    """Run ``sup`` here (the main thread: it installs signal handlers) while ``drive`` watches it
    from a thread; then SIGTERM, as an operator stops the service. Returns the exit code."""

    def driver() -> None:
        try:
            drive()
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=driver)
    thread.start()
    try:
        return sup.run()
    finally:
        thread.join()
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)


def test_restarts_a_crashed_worker_then_stops_on_sigterm(tmp_path: Path) -> None:
    mp_dir = prepare_multiproc_dir(tmp_path / "metrics")
    markers = tmp_path / "markers"
    markers.mkdir()
    sup = Supervisor(
        SupervisorOptions(
            workers=2,
            metrics_host="127.0.0.1",
            metrics_port=0,
            multiproc_dir=mp_dir,
            shutdown_timeout_s=20,
            restart_backoff_initial_s=0.05,
        ),
        partial(_worker, marker_dir=str(markers)),
    )
    seen: dict[str, object] = {}

    def drive() -> None:
        _wait(lambda: all((markers / f"started-{i}").exists() for i in range(2)))
        _wait(lambda: sup.restarts == 2 and len(sup.live_pids()) == 2)
        assert sup.server is not None
        base = f"http://127.0.0.1:{sup.server.port}"
        _wait(lambda: _get(base + "/readyz")[0] == 200)
        seen["metrics"] = _get(base + "/metrics")[1]
        seen["healthz"] = _get(base + "/healthz")

    code = _run_then_sigterm(sup, drive)
    assert code == 0
    assert sup.restarts == 2
    assert [(markers / f"started-{i}").read_text() for i in range(2)] == ["2", "2"]
    metrics = str(seen["metrics"])
    assert (
        'nev_ingest_frames_written_total{kind="vehicle",topic="t"} 10.0' in metrics
    )  # merged: 2 workers
    assert "nev_ingest_worker_restarts_total 2.0" in metrics
    assert seen["healthz"] == (200, "ok\n")


def _always_crash(index: int) -> None:
    sys.exit(1)


def test_sigterm_while_a_crashed_worker_waits_for_its_restart_exits_0(tmp_path: Path) -> None:
    # E.g. a worker that crashed during an outage: its restart backoff is running when the
    # operator stops the service. Nothing of it is in flight: the stop is clean.
    mp_dir = prepare_multiproc_dir(tmp_path / "metrics")
    sup = Supervisor(
        SupervisorOptions(
            workers=1,
            metrics_host="127.0.0.1",
            metrics_port=0,
            multiproc_dir=mp_dir,
            restart_backoff_initial_s=600,
        ),
        _always_crash,
    )

    code = _run_then_sigterm(sup, lambda: _wait(lambda: sup.restarts == 1))
    assert sup.restarts == 1
    assert code == 0


def _fails_to_stop_cleanly(index: int, marker_dir: str) -> None:
    """Worker 0 exits 1 on SIGTERM (say its final flush failed); worker 1 takes a second to
    stop cleanly, so the supervisor reaps worker 0 turns before the stop is over."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    (Path(marker_dir) / f"ready-{index}").write_text("1")
    stop.wait()
    if index == 0:
        sys.exit(1)
    time.sleep(1.0)  # the slow, clean stop of the other worker
    sys.exit(0)


def test_a_worker_failing_during_the_stop_makes_the_supervisor_exit_1(tmp_path: Path) -> None:
    mp_dir = prepare_multiproc_dir(tmp_path / "metrics")
    markers = tmp_path / "markers"
    markers.mkdir()
    sup = Supervisor(
        SupervisorOptions(
            workers=2, metrics_host="127.0.0.1", metrics_port=0, multiproc_dir=mp_dir
        ),
        partial(_fails_to_stop_cleanly, marker_dir=str(markers)),
    )

    def drive() -> None:
        _wait(lambda: all((markers / f"ready-{i}").exists() for i in range(2)))

    code = _run_then_sigterm(sup, drive)
    assert sup.restarts == 0
    assert code == 1  # worker 0's exit code 1 counts, though worker 1 stopped later


def _needs_two_sigterms(index: int, marker_dir: str) -> None:
    """A worker whose first SIGTERM is lost (as one reaching it between fork and exec is)."""
    got: list[int] = []
    stop = threading.Event()

    def on_term(*_: object) -> None:
        got.append(1)
        if len(got) >= 2:
            stop.set()

    signal.signal(signal.SIGTERM, on_term)
    (Path(marker_dir) / f"ready-{index}").write_text("1")
    stop.wait(60)
    sys.exit(0 if stop.is_set() else 5)


def _stop_one_ready_worker(tmp_path: Path, target: Callable[..., None]) -> tuple[int, Supervisor]:
    """Run one worker ``target(index, marker_dir)``; SIGTERM once it wrote ``ready-0``."""
    markers = tmp_path / "markers"
    markers.mkdir()
    sup = Supervisor(
        SupervisorOptions(
            workers=1,
            metrics_host="127.0.0.1",
            metrics_port=0,
            multiproc_dir=prepare_multiproc_dir(tmp_path / "metrics"),
            shutdown_timeout_s=15,  # far more than the re-forward interval; a kill exits 1
        ),
        partial(target, marker_dir=str(markers)),
    )
    code = _run_then_sigterm(sup, lambda: _wait(lambda: (markers / "ready-0").exists()))
    return code, sup


def test_sigterm_is_forwarded_again_until_the_workers_are_gone(tmp_path: Path) -> None:
    code, sup = _stop_one_ready_worker(tmp_path, _needs_two_sigterms)
    assert code == 0
    assert sup.restarts == 0


def _no_handler_yet(index: int, marker_dir: str) -> None:
    """A worker the stop reaches before it installed its SIGTERM handler (default: die)."""
    (Path(marker_dir) / f"ready-{index}").write_text("1")
    threading.Event().wait(60)
    sys.exit(5)


def test_a_worker_killed_by_the_forwarded_sigterm_before_its_handler_stopped_cleanly(
    tmp_path: Path,
) -> None:
    code, _ = _stop_one_ready_worker(tmp_path, _no_handler_yet)
    assert code == 0


def test_the_metrics_directory_loses_only_its_old_metric_files(tmp_path: Path) -> None:
    # metrics.multiproc_dir naming a directory with other things in it (a typo for /var/lib or
    # $HOME) must lose nothing but a previous run's prometheus-client files.
    d = tmp_path / "shared"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "keep.db").write_text("x")
    (d / "notes.txt").write_text("keep")
    (d / "notes.db").write_text("an SQLite file of the user's")
    (d / "counter_123.db").write_bytes(b"old")
    (d / "gauge_livesum_9.db").write_bytes(b"old")
    (d / "histogram_77.db").write_bytes(b"old")
    assert prepare_multiproc_dir(d) == d
    kept = sorted(p.relative_to(d).as_posix() for p in d.rglob("*"))
    assert kept == [".nev-ingest.lock", "notes.db", "notes.txt", "sub", "sub/keep.db"]


def test_a_second_run_on_the_same_metrics_directory_is_refused(tmp_path: Path) -> None:
    # Another process holds the directory (a run in progress): its metric files must stay.
    d = tmp_path / "metrics"
    d.mkdir()
    (d / "counter_1.db").write_bytes(b"live")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT);"
            " fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()",
            str(d / ".nev-ingest.lock"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(UserError, match="another nev-ingest run is using it"):
            prepare_multiproc_dir(d)
        assert (d / "counter_1.db").read_bytes() == b"live"
    finally:
        holder.communicate("")
