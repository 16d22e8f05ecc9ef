"""A crash loop with real worker processes: each dead worker's counter and histogram files are
folded into the archive when the supervisor reaps it, so /metrics keeps every count while the
metrics directory holds no more files than the live workers' and the archive's."""

from __future__ import annotations

import re
import sys
import threading
import time
from functools import partial
from pathlib import Path

import pytest

from ingest.pipeline.multiproc_dir import prepare_multiproc_dir
from ingest.pipeline.supervisor import Supervisor, SupervisorOptions
from tests.unit.test_pipeline_supervisor import _get, _run_then_sigterm, _wait

pytestmark = pytest.mark.unit

CRASHES = 3
SERIES = 'nev_ingest_frames_written_total{kind="vehicle",topic="t"}'


def _counts_then_crashes(index: int, marker_dir: str) -> None:
    """Count 5 frames and a batch; crash (exit 3) the first CRASHES starts, then run."""
    import signal

    from ingest.pipeline.metrics import PipelineMetrics

    marker = Path(marker_dir) / f"started-{index}"
    starts = int(marker.read_text()) + 1 if marker.exists() else 1
    marker.write_text(str(starts))
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


def test_a_crash_loop_leaves_no_files_behind_and_keeps_every_count(tmp_path: Path) -> None:
    mp_dir = prepare_multiproc_dir(tmp_path / "metrics")
    markers = tmp_path / "markers"
    markers.mkdir()
    sup = Supervisor(
        SupervisorOptions(
            workers=1,
            metrics_host="127.0.0.1",
            metrics_port=0,
            multiproc_dir=mp_dir,
            restart_backoff_initial_s=0.05,
            restart_backoff_max_s=0.05,
        ),
        partial(_counts_then_crashes, marker_dir=str(markers)),
    )
    seen: dict[str, str] = {}
    files: list[str] = []
    live: list[int] = []

    def drive() -> None:
        _wait(lambda: sup.server is not None and bool(sup.live_pids()))
        assert sup.server is not None
        url = f"http://127.0.0.1:{sup.server.port}/metrics"
        every = 5.0 * (CRASHES + 1)
        _wait(lambda: sup.restarts == CRASHES and _sample(_get(url)[1], SERIES) == every)
        seen["metrics"] = _get(url)[1]
        files.extend(p.name for p in mp_dir.glob("*.db"))
        live.extend(sup.live_pids())

    assert _run_then_sigterm(sup, drive) == 0
    metrics = seen["metrics"]
    assert _sample(metrics, SERIES) == 5.0 * (CRASHES + 1)  # every start's count
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
    sup = Supervisor(
        SupervisorOptions(
            workers=1,
            metrics_host="127.0.0.1",
            metrics_port=0,
            multiproc_dir=mp_dir,
            restart_backoff_initial_s=0.05,
            restart_backoff_max_s=0.05,
        ),
        partial(_counts_then_crashes, marker_dir=str(markers)),
    )
    seen: list[str] = []

    def drive() -> None:
        _wait(lambda: sup.server is not None and bool(sup.live_pids()))
        assert sup.server is not None
        url = f"http://127.0.0.1:{sup.server.port}/metrics"
        every = 5.0 * (CRASHES + 1)
        _wait(lambda: sup.restarts == CRASHES and _sample(_get(url)[1], SERIES) == every)
        seen.extend(p.name for p in mp_dir.glob("counter_*.db"))

    assert _run_then_sigterm(sup, drive) == 0  # the supervision went on
    assert len(seen) == CRASHES + 1, seen  # every worker's counter file, still counted
    logged = [r.getMessage() for r in caplog.records if "cannot fold" in r.getMessage()]
    assert len(logged) == 1, logged  # once, not per dead worker
    assert re.search(r"\(counter_\d+\.db: Is a directory\)", logged[0]), logged[0]
    assert "they stay (still counted)" in logged[0]
