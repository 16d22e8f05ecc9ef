"""A crash loop with real worker processes: each dead worker's counter and histogram files are
folded into the archive when the supervisor reaps it, so /metrics keeps every count while the
metrics directory holds no more files than the live workers' and the archive's."""

from __future__ import annotations

import logging
import os
import re
import struct
import sys
import threading
import time
from functools import partial
from pathlib import Path

import pytest

from ingest.pipeline.metric_files import MetricFiles
from ingest.pipeline.multiproc_dir import prepare_multiproc_dir
from ingest.pipeline.supervisor import Supervisor, SupervisorOptions
from tests.unit.test_pipeline_supervisor import _get, _run_then_sigterm, _wait
from tests.unit.test_supervisor_failures import _options as _failures_options

pytestmark = pytest.mark.unit

CRASHES = 3
SERIES = 'nev_ingest_frames_written_total{kind="vehicle",topic="t"}'


def _starts(index: int, marker_dir: str) -> int:
    """How many times worker ``index`` has started, this start included."""
    marker = Path(marker_dir) / f"started-{index}"
    starts = int(marker.read_text()) + 1 if marker.exists() else 1
    marker.write_text(str(starts))
    return starts


def _options(mp_dir: Path) -> SupervisorOptions:
    """One worker restarted at once after each crash."""
    return _failures_options(mp_dir, restart_backoff_max_s=0.05)


def _counts_then_crashes(index: int, marker_dir: str) -> None:
    """Count 5 frames and a batch; crash (exit 3) the first CRASHES starts, then run."""
    import signal

    from ingest.pipeline.metrics import PipelineMetrics

    starts = _starts(index, marker_dir)
    m = PipelineMetrics()
    m.frames_written.labels(topic="t", kind="vehicle").inc(5)
    m.write_duration.observe(0.25)
    if starts <= CRASHES:
        sys.exit(3)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.is_set():
        m.heartbeat.set(time.time())
        stop.wait(0.05)
    sys.exit(0)


def _sample(metrics: str, series: str) -> float | None:
    for line in metrics.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def _every_count_served(sup: Supervisor) -> str:
    """Wait until ``sup``, its worker restarted CRASHES times, serves every start's count;
    its /metrics URL."""
    _wait(lambda: sup.server is not None and bool(sup.live_pids()))
    assert sup.server is not None
    url = f"http://127.0.0.1:{sup.server.port}/metrics"
    every = 5.0 * (CRASHES + 1)
    _wait(lambda: sup.restarts == CRASHES and _sample(_get(url)[1], SERIES) == every)
    return url


def test_a_crash_loop_leaves_no_files_behind_and_keeps_every_count(tmp_path: Path) -> None:
    mp_dir = prepare_multiproc_dir(tmp_path / "metrics")
    # A damaged archive an earlier run's fold kept aside (a pod's emptyDir outlives a container
    # restart): no total of this run holds it, so the run's start removes it, or
    # nev_ingest_metric_files_unreadable would count it for good.
    (mp_dir / "counter_archive.db.damaged-1").write_bytes(b"\x10\x00")
    markers = tmp_path / "markers"
    markers.mkdir()
    sup = Supervisor(_options(mp_dir), partial(_counts_then_crashes, marker_dir=str(markers)))
    seen: dict[str, str] = {}
    files: list[str] = []
    live: list[int] = []

    def drive() -> None:
        url = _every_count_served(sup)
        seen["metrics"] = _get(url)[1]
        files.extend(p.name for p in mp_dir.glob("*.db"))
        live.extend(sup.live_pids())

    assert _run_then_sigterm(sup, drive) == 0
    metrics = seen["metrics"]
    assert _sample(metrics, SERIES) == 5.0 * (CRASHES + 1)  # every start's count
    assert _sample(metrics, "nev_ingest_metric_files_unreadable") == 0
    assert not (mp_dir / "counter_archive.db.damaged-1").exists()
    assert _sample(metrics, "nev_ingest_batch_write_duration_seconds_count") == CRASHES + 1
    assert _sample(metrics, "nev_ingest_batch_write_duration_seconds_sum") == 0.25 * (CRASHES + 1)
    [pid] = live
    # The dead workers' counters live on in one archive per type; their files are gone.
    assert {f for f in files if f.startswith(("counter_", "histogram_"))} == {
        "counter_archive.db",
        f"counter_{pid}.db",
        "histogram_archive.db",
        f"histogram_{pid}.db",
    }
    assert not [f for f in files if not f.endswith((f"_{pid}.db", "_archive.db"))], files


def test_a_dead_workers_files_that_cannot_be_archived_stay_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mp_dir = prepare_multiproc_dir(tmp_path / "metrics")
    (mp_dir / "counter_archive.db.new").mkdir()  # the new archive cannot be written
    markers = tmp_path / "markers"
    markers.mkdir()
    sup = Supervisor(_options(mp_dir), partial(_counts_then_crashes, marker_dir=str(markers)))
    seen: list[str] = []

    def drive() -> None:
        _every_count_served(sup)
        seen.extend(p.name for p in mp_dir.glob("counter_*.db"))

    assert _run_then_sigterm(sup, drive) == 0  # the supervision went on
    assert len(seen) == CRASHES + 1, seen  # every worker's counter file, still counted
    logged = [r.getMessage() for r in caplog.records if "cannot fold" in r.getMessage()]
    assert len(logged) == 1, logged  # once, not per dead worker
    assert re.search(r"\(counter_\d+\.db: Is a directory; still counted;", logged[0]), logged[0]
    assert "give the directory room and make it writable" in logged[0]


def _dies_leaving_a_file_of_no_bytes(index: int, marker_dir: str) -> None:
    """The first CRASHES starts leave what a worker killed between MmapedDict's open and its
    truncate leaves (the supervisor's SIGKILL of a straggler, the OOM killer): a
    counter_<pid>.db of no bytes. Then count and run."""
    if _starts(index, marker_dir) <= CRASHES:
        Path(os.environ["PROMETHEUS_MULTIPROC_DIR"], f"counter_{os.getpid()}.db").touch()
        sys.exit(3)
    _counts_then_crashes(index, str(Path(marker_dir) / "run"))  # runs: see the test


def _counts_then_crashes_leaving_a_damaged_file(index: int, marker_dir: str) -> None:
    """``_counts_then_crashes``, and each start leaves a summary file no reader can parse (a
    key that is not UTF-8)."""
    key = b"\xff\xfe\xfd "  # with its 4-byte length: 8, no padding
    data = struct.pack("i4xi", 8 + 4 + len(key) + 16, 3) + key + struct.pack("dd", 1.0, 0.0)
    Path(os.environ["PROMETHEUS_MULTIPROC_DIR"], f"summary_{os.getpid()}.db").write_bytes(data)
    _counts_then_crashes(index, marker_dir)


def test_a_worker_killed_before_its_metric_file_was_sized_is_restarted(tmp_path: Path) -> None:
    # The file of no bytes holds nothing: read as empty, folded (removed) like any other.
    mp_dir = prepare_multiproc_dir(tmp_path / "metrics")
    markers = tmp_path / "markers"
    (markers / "run").mkdir(parents=True)
    # _counts_then_crashes crashes its own first CRASHES starts: counted as made, so the start
    # after the files of no bytes runs (else it crashed too, and a SIGTERM during its backoff
    # made the supervisor exit 1: a flaky test).
    (markers / "run" / "started-0").write_text(str(CRASHES))
    target = partial(_dies_leaving_a_file_of_no_bytes, marker_dir=str(markers))
    sup = Supervisor(_options(mp_dir), target)
    seen: dict[str, str] = {}
    files: list[str] = []
    live: list[int] = []

    def drive() -> None:
        _wait(lambda: sup.server is not None and sup.restarts == CRASHES and bool(sup.live_pids()))
        assert sup.server is not None
        url = f"http://127.0.0.1:{sup.server.port}/metrics"
        _wait(lambda: _sample(_get(url)[1], SERIES) == 5.0)
        seen["metrics"] = _get(url)[1]
        files.extend(p.name for p in mp_dir.glob("counter_*.db"))
        live.extend(sup.live_pids())

    assert _run_then_sigterm(sup, drive) == 0  # the supervisor died at the first reap before
    assert sup.restarts == CRASHES
    [pid] = live
    assert sorted(files) == sorted(["counter_archive.db", f"counter_{pid}.db"])
    assert _sample(seen["metrics"], "nev_ingest_metric_files_unreadable") == 0


def test_a_damaged_metric_file_neither_stops_supervision_nor_fails_the_scrape(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mp_dir = prepare_multiproc_dir(tmp_path / "metrics")
    markers = tmp_path / "markers"
    markers.mkdir()
    target = partial(_counts_then_crashes_leaving_a_damaged_file, marker_dir=str(markers))
    sup = Supervisor(_options(mp_dir), target)
    seen: dict[str, tuple[int, str]] = {}
    files: list[str] = []
    live: list[int] = []

    def drive() -> None:
        _wait(lambda: sup.server is not None and sup.restarts == CRASHES and bool(sup.live_pids()))
        assert sup.server is not None
        url = f"http://127.0.0.1:{sup.server.port}/metrics"
        every = 5.0 * (CRASHES + 1)
        _wait(lambda: _sample(_get(url)[1], SERIES) == every)
        seen["first"], seen["metrics"] = _get(url), _get(url)
        files.extend(p.name for p in mp_dir.glob("*.db") if not p.name.startswith("gauge_"))
        live.extend(sup.live_pids())

    assert _run_then_sigterm(sup, drive) == 0  # the supervision went on
    assert sup.restarts == CRASHES
    status, metrics = seen["metrics"]
    assert status == 200
    assert _sample(metrics, SERIES) == 5.0 * (CRASHES + 1)  # every count of the readable files
    assert _sample(metrics, "nev_ingest_metric_files_unreadable") == CRASHES + 1
    [pid] = live
    # The dead workers' readable files were folded; the damaged ones stay (and the live one's).
    damaged = sorted(f for f in files if f.startswith("summary_"))
    assert len(damaged) == CRASHES + 1 and f"summary_{pid}.db" in damaged
    assert sorted(f for f in files if not f.startswith("summary_")) == sorted(
        ["counter_archive.db", f"counter_{pid}.db", "histogram_archive.db", f"histogram_{pid}.db"]
    )
    folds = [r.getMessage() for r in caplog.records if "cannot fold" in r.getMessage()]
    assert len(folds) == 1, folds  # once, not per dead worker
    assert re.search(r"\(summary_\d+\.db is not a prometheus-client metric file \(", folds[0])
    assert "not counted" in folds[0]
    skipped = [r.getMessage() for r in caplog.records if "/metrics leaves it out" in r.getMessage()]
    assert sorted(m.split(": ")[1].split(" ")[0] for m in skipped) == damaged  # once per file


def test_a_fold_that_fails_unexpectedly_is_logged_once_and_supervision_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bug in the fold (no failure it expects): logged with its traceback, once.
    def broken(self: MetricFiles, pid: int) -> int:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(MetricFiles, "archive", broken)
    mp_dir = prepare_multiproc_dir(tmp_path / "metrics")
    markers = tmp_path / "markers"
    markers.mkdir()
    sup = Supervisor(_options(mp_dir), partial(_counts_then_crashes, marker_dir=str(markers)))

    def drive() -> None:
        _wait(lambda: sup.restarts == CRASHES and bool(sup.live_pids()))

    with caplog.at_level(logging.ERROR):
        assert _run_then_sigterm(sup, drive) == 0
    assert sup.restarts == CRASHES
    failed = [r for r in caplog.records if "failed unexpectedly" in r.getMessage()]
    assert len(failed) == 1, [r.getMessage() for r in failed]
    assert failed[0].exc_info is not None and failed[0].exc_info[0] is ZeroDivisionError
