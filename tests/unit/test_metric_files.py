"""Dead workers' counter and histogram files folded into the archive (ingest/pipeline/metric_files):
real files written by prometheus-client in other processes, real scrapes (the exposition text
/metrics serves) before and after."""

from __future__ import annotations

import errno
import os
import shutil
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from ingest.pipeline.metric_files import ArchiveError, MetricFiles, ScrapeError
from ingest.pipeline.multiproc_dir import prepare_multiproc_dir

pytestmark = pytest.mark.unit

# What a worker counts, in a process of its own: a labelled counter, a histogram whose _sum is
# a float (OBSERVE), a summary and a live gauge (not archived: mark_process_dead's).
_WORKER = """
import os, sys
from prometheus_client import Counter, Gauge, Histogram, Summary
frames = Counter("frames_total", "Frames.", ["kind"])
latency = Histogram("latency_seconds", "Latency.", buckets=(0.1, 1.0))
sizes = Summary("sizes", "Sizes.")
alive = Gauge("alive", "Alive.", multiprocess_mode="liveall")
for value in map(float.fromhex, sys.argv[1:]):
    frames.labels(kind="vehicle").inc()
    latency.observe(value)
    sizes.observe(3)
alive.set(1)
print(os.getpid())
"""


def _worker(path: Path, *observations: float) -> int:
    """Run a worker process that counts ``observations`` into ``path``; its pid."""
    done = subprocess.run(
        [sys.executable, "-c", _WORKER, *(v.hex() for v in observations)],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(path)},
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def _scrape(collector: object) -> dict[str, float]:
    """The samples of a scrape (the text /metrics serves), by series."""
    registry = CollectorRegistry()
    registry.register(collector)  # type: ignore[arg-type]
    out: dict[str, float] = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            out[series] = float(value)
    return out


def _summed_files(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.name.split("_")[0] != "gauge")


@pytest.fixture
def metrics_dir(tmp_path: Path) -> Path:
    path = tmp_path / "metrics"
    path.mkdir()
    return path


def test_a_dead_workers_files_fold_into_the_archive_and_the_scrape_stays_the_same(
    metrics_dir: Path,
) -> None:
    # Observations of few binary digits: every total is exact, so equal means equal (a float
    # total that is not exact may go up by its last bit: the next test).
    pids = [_worker(metrics_dir, 0.0625 * (i + 1), 0.25, 2.5) for i in range(3)]
    files = MetricFiles(metrics_dir)
    before = _scrape(files)
    # What prometheus-client's own collector reports.
    assert before == _scrape(MultiProcessCollector(None, path=str(metrics_dir)))  # type: ignore[no-untyped-call]
    assert before['frames_total{kind="vehicle"}'] == 9
    assert before["latency_seconds_count"] == 9
    assert len(_summed_files(metrics_dir)) == 9  # counter, histogram, summary per worker

    for pid in pids[:2]:  # two of them died
        assert files.archive(pid) == 3
    assert _scrape(files) == before
    assert _summed_files(metrics_dir) == sorted(
        [f"{t}_archive.db" for t in ("counter", "histogram", "summary")]
        + [f"{t}_{pids[2]}.db" for t in ("counter", "histogram", "summary")]
    )
    assert files.archive(pids[2]) == 3  # the last one too: the archive grows, no new file
    assert _scrape(files) == before
    assert len(_summed_files(metrics_dir)) == 3


def test_a_float_total_never_goes_down_across_an_archive(metrics_dir: Path) -> None:
    # 1 + 2**-53 + 2**-53: the exact total is 1 + 2**-52. The archive of the first two workers
    # alone rounds 1 + 2**-53 to 1.0 (to even), and 1.0 + 2**-53 is 1.0 again: a _sum a hair
    # lower, which Prometheus would take for a counter reset (a rate spike). The archive keeps
    # the value rounded up, and the scrape sums exactly.
    tiny = 2.0**-53
    pids = [_worker(metrics_dir, 1.0), _worker(metrics_dir, tiny), _worker(metrics_dir, tiny)]
    files = MetricFiles(metrics_dir)
    before = _scrape(files)["latency_seconds_sum"]
    assert before == 1.0 + 2.0**-52
    files.archive(pids[0])
    files.archive(pids[1])
    after = _scrape(files)["latency_seconds_sum"]
    assert after >= before


def test_a_scrape_during_archives_never_counts_a_dead_worker_twice_or_not_at_all(
    metrics_dir: Path,
) -> None:
    # Many dead workers (copies of one worker's real files under other pids), archived one by
    # one while another thread scrapes as fast as it can: every scrape sees the same totals.
    pid = _worker(metrics_dir, 0.5)
    dead = range(1_000_000, 1_000_150)
    for other in dead:
        for typ in ("counter", "histogram", "summary"):
            shutil.copy(metrics_dir / f"{typ}_{pid}.db", metrics_dir / f"{typ}_{other}.db")
    files = MetricFiles(metrics_dir)
    expected = _scrape(files)
    assert expected['frames_total{kind="vehicle"}'] == 151
    seen: list[dict[str, float]] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def scrape() -> None:
        try:
            while not done.is_set():
                seen.append(_scrape(files))
        except BaseException as exc:  # a file gone between the listing and the read
            errors.append(exc)

    thread = threading.Thread(target=scrape)
    thread.start()
    try:
        for other in dead:
            files.archive(other)
    finally:
        done.set()
        thread.join()
    assert errors == []
    assert seen, "no scrape ran during the archives"
    wrong = [s['frames_total{kind="vehicle"}'] for s in seen if s != expected]
    assert wrong == [], f"{len(wrong)} of {len(seen)} scrapes differ: {wrong[:5]}"
    assert len(_summed_files(metrics_dir)) == 6


def test_a_new_run_removes_the_archive_and_what_an_interrupted_one_left(tmp_path: Path) -> None:
    d = tmp_path / "metrics"
    d.mkdir()
    for name in ("counter_archive.db", "histogram_archive.db.new", "counter_12.db.archived"):
        (d / name).write_bytes(b"old")
    (d / "notes.db.new").write_text("the user's")
    try:
        prepare_multiproc_dir(d)
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    assert sorted(p.name for p in d.iterdir()) == [".nev-ingest.lock", "notes.db.new"]


def test_an_archive_that_cannot_be_written_leaves_the_files_counted(metrics_dir: Path) -> None:
    # As with a full or read-only directory: the new archive cannot be written (a directory
    # is in its way; no permission bits stop root, and the tests may run as root).
    pids = [_worker(metrics_dir, 0.5) for _ in range(2)]
    files = MetricFiles(metrics_dir)
    before = _scrape(files)
    (metrics_dir / "histogram_archive.db.new").mkdir()
    with pytest.raises(ArchiveError, match=f"histogram_{pids[0]}.db: "):
        files.archive(pids[0])
    assert _scrape(files) == before
    assert (metrics_dir / f"histogram_{pids[0]}.db").exists()
    assert not (metrics_dir / "histogram_archive.db").exists()
    assert (metrics_dir / "counter_archive.db").exists()  # the type before it went


# Files prometheus-client's reader cannot parse (struct.error, RuntimeError,
# UnicodeDecodeError), and keys that are not its JSON.
_DAMAGED = {
    "short": b"\x10\x00",
    "used beyond the size": struct.pack("i4x", 200) + b"\x05\x00\x00\x00abc",
    "length beyond the used": struct.pack("i4xi", 16, 400) + b"\0" * 8,
    "key not utf-8": struct.pack("i4xi", 8 + 4 + 4 + 16, 3) + b"\xff\xfe\xfd " + b"\0" * 16,
    "key not json": struct.pack("i4xi", 8 + 4 + 4 + 16, 3) + b"abc " + b"\0" * 16,
}


@pytest.mark.parametrize("damage", sorted(_DAMAGED))
def test_a_damaged_file_is_left_out_of_the_scrape_and_of_the_fold_and_blocks_nothing(
    metrics_dir: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    live = _worker(metrics_dir, 0.5)
    dead = _worker(metrics_dir, 0.25)
    files = MetricFiles(metrics_dir)
    before = _scrape(files)
    (metrics_dir / f"counter_{dead}.db").write_bytes(_DAMAGED[damage])
    (metrics_dir / "gauge_all_1.db").write_bytes(_DAMAGED[damage])
    without = _scrape(files)  # the library's collector raised: no /metrics at all
    assert without == {**before, 'frames_total{kind="vehicle"}': 1.0}  # the live one's
    assert files.unreadable == tuple(sorted([f"counter_{dead}.db", "gauge_all_1.db"]))
    assert _scrape(files) == without
    skipped = [r.getMessage() for r in caplog.records if "leaves it out" in r.getMessage()]
    assert len(skipped) == 2, skipped  # once per file, not per scrape
    assert f"counter_{dead}.db is not a prometheus-client metric file (" in "".join(skipped)

    # The fold: the damaged file stays, the worker's other files go all the same.
    with pytest.raises(ArchiveError, match=rf"^counter_{dead}\.db is not a prom.*; remove it$"):
        files.archive(dead)
    assert _summed_files(metrics_dir) == sorted(
        [f"counter_{dead}.db", "histogram_archive.db", "summary_archive.db"]
        + [f"{t}_{live}.db" for t in ("counter", "histogram", "summary")]
    )
    assert _scrape(files) == without


def test_a_file_of_no_bytes_holds_nothing_and_is_folded(metrics_dir: Path) -> None:
    # What a worker killed (or scraped) between MmapedDict's open and its truncate leaves.
    _worker(metrics_dir, 0.5)
    files = MetricFiles(metrics_dir)
    before = _scrape(files)
    (metrics_dir / "counter_7.db").touch()
    (metrics_dir / "gauge_all_7.db").touch()
    assert _scrape(files) == before
    assert files.unreadable == ()
    assert files.archive(7) == 1
    assert not (metrics_dir / "counter_7.db").exists()
    assert _scrape(files) == before


# Several label sets per family, first seen in an order that is not sorted.
_LABELLED = """
import os
from prometheus_client import Counter, Histogram, Summary
lat = Histogram("lat_seconds", "Latency.", ["stage", "kind"], buckets=(0.1, 1.0))
sizes = Summary("sizes", "Sizes.", ["kind"])
frames = Counter("frames", "Frames.", ["kind"])
for stage, kind, value in (("write", "b", 0.5), ("decode", "a", 2.0), ("write", "a", 0.05)):
    lat.labels(stage=stage, kind=kind).observe(value)
    sizes.labels(kind=kind).observe(value)
    frames.labels(kind=kind).inc()
print(os.getpid())
"""


def _openmetrics(collector: object) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """The OpenMetrics exposition of a scrape (what Prometheus asks for), parsed by the
    reference parser (which refuses a family whose label sets' samples interleave): each
    family's samples in the order served."""
    registry = CollectorRegistry()
    registry.register(collector)  # type: ignore[arg-type]
    text = openmetrics_latest(registry).decode()  # type: ignore[no-untyped-call]
    families = text_string_to_metric_families(text)  # type: ignore[no-untyped-call]
    return {f.name: [(s.name, s.labels, s.value) for s in f.samples] for f in families}


def test_the_openmetrics_scrape_keeps_each_label_sets_samples_together(metrics_dir: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    pids = [
        int(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout)
        for cmd in [[sys.executable, "-c", _LABELLED]] * 2
    ]
    files = MetricFiles(metrics_dir)
    ours = _openmetrics(files)  # it raised "Invalid metric grouping" with them interleaved
    # The order of prometheus-client's own collector, sample for sample.
    assert ours == _openmetrics(MultiProcessCollector(None, path=str(metrics_dir)))  # type: ignore[no-untyped-call]
    lat = [
        (name, labels.get("stage"), labels.get("kind")) for name, labels, _ in ours["lat_seconds"]
    ]
    assert lat[:5] == [("lat_seconds_sum", "write", "b")] + [
        (f"lat_seconds_{s}", "write", "b") for s in ("bucket", "bucket", "bucket", "count")
    ]
    assert len(ours["lat_seconds"]) == 15 and len(ours["sizes"]) == 4

    def order(samples: dict[str, list[tuple[str, dict[str, str], float]]]) -> object:
        return {family: [(n, lb) for n, lb, _ in s] for family, s in samples.items()}

    files.archive(pids[0])  # the archive, read first or not, changes nothing of the order
    assert order(_openmetrics(files)) == order(ours)


def test_a_damaged_archive_is_put_aside_and_the_folds_go_on(
    metrics_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A damaged archive stopped every later fold of its type: the dead workers' files piled up
    again (the tmpfs fills, every scrape reads them all). The fold now renames it aside, still
    counted in ``unreadable`` (it is no longer read), and starts a new archive with the dead
    worker's values: its own totals were already missing from the scrape (a counter reset)."""
    pids = [_worker(metrics_dir, 0.5) for _ in range(4)]
    files = MetricFiles(metrics_dir)
    assert files.archive(pids[0]) == 3
    (metrics_dir / "counter_archive.db").write_bytes(_DAMAGED["length beyond the used"])
    damaged = _scrape(files)
    assert damaged['frames_total{kind="vehicle"}'] == 3  # the three files not archived
    assert list(files.unreadable) == ["counter_archive.db"]

    assert files.archive(pids[1]) == 3  # folded: not stopped by the archive
    assert _scrape(files) == damaged  # nothing counted twice, nothing more missing
    assert list(files.unreadable) == ["counter_archive.db.damaged-1"]
    assert files.archive(pids[2]) == 3
    assert _scrape(files) == damaged
    assert f"counter_{pids[1]}.db" not in _summed_files(metrics_dir)
    assert sorted(p.name for p in metrics_dir.glob("counter_*")) == [
        f"counter_{pids[3]}.db",
        "counter_archive.db",
        "counter_archive.db.damaged-1",
    ]
    said = [r.getMessage() for r in caplog.records if "kept aside as" in r.getMessage()]
    assert len(said) == 1 and "counter_archive.db is not a prometheus-client" in said[0], said
    assert "counter reset" in said[0] and "remove counter_archive.db.damaged-1" in said[0]

    # Damaged again: the second one goes beside the first, and the scrape says so again.
    (metrics_dir / "counter_archive.db").write_bytes(_DAMAGED["short"])
    again = _scrape(files)
    assert list(files.unreadable) == ["counter_archive.db", "counter_archive.db.damaged-1"]
    assert files.archive(pids[3]) == 3
    assert _scrape(files) == again
    assert list(files.unreadable) == [
        "counter_archive.db.damaged-1",
        "counter_archive.db.damaged-2",
    ]
    skipped = [r.getMessage() for r in caplog.records if "leaves it out" in r.getMessage()]
    assert len(skipped) == 2, skipped  # once per damaged archive, not once per name

    # The operator removes them (or the next run's start does): the count goes back to 0.
    files.remove_damaged()
    _scrape(files)
    assert list(files.unreadable) == []


def test_a_scrape_parses_each_key_once(metrics_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each key's JSON was parsed twice per scrape (checked as the file was read, then again
    for the merge): the merge now takes the key parsed when it was read."""
    import ingest.pipeline.metric_files as mf

    for _ in range(2):
        _worker(metrics_dir, 0.5, 0.25)
    files = MetricFiles(metrics_dir)
    before = _scrape(files)
    parsed: list[str] = []
    real = mf._parse_key

    def counting(key: str, typ: str) -> tuple[str, str, dict[str, str], str]:
        parsed.append(key)
        return real(key, typ)

    monkeypatch.setattr(mf, "_parse_key", counting)
    assert _scrape(files) == before
    entries = 0
    for f in metrics_dir.glob("*.db"):
        entries += len(list(MmapedDict.read_all_values_from_file(str(f))))  # type: ignore[no-untyped-call]
    assert len(parsed) == entries, "each key of each file parsed once"


@pytest.mark.parametrize("code", [errno.EMFILE, errno.ENFILE, errno.EIO])
def test_an_archive_not_read_this_time_is_not_put_aside(
    metrics_dir: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """An open or read error (out of file descriptors, an I/O error once) says nothing of an
    archive's bytes: the fold took it for damaged, renamed it aside and its totals left /metrics
    for good (a counter reset). Now the fold fails as when it cannot write: the archive and the
    dead worker's file stay where they are, counted, and the next fold reads the archive."""
    pids = [_worker(metrics_dir, 0.5) for _ in range(3)]
    files = MetricFiles(metrics_dir)
    assert files.archive(pids[0]) == 3
    before = _scrape(files)
    # the archive's next open fails, as with EMFILE
    _failing_reads(monkeypatch, str(metrics_dir / "counter_archive.db"), 1, code)
    with pytest.raises(ArchiveError, match=r"^cannot read counter_archive\.db \(.*\); still"):
        files.archive(pids[1])
    assert not list(metrics_dir.glob("*.damaged-*"))
    assert f"counter_{pids[1]}.db" in _summed_files(metrics_dir)
    assert _scrape(files) == before  # nothing left out: no counter reset
    assert files.unreadable == ()
    assert files.archive(pids[2]) == 3  # the next fold reads the archive again
    assert _scrape(files) == before


def _failing_reads(monkeypatch: pytest.MonkeyPatch, path: str, times: int, code: int) -> list[int]:
    """The next ``times`` reads of ``path`` fail with ``code`` (EMFILE, ...); the list counts
    the reads that failed."""
    real = MmapedDict.read_all_values_from_file
    failed: list[int] = []

    def flaky(p: str) -> object:
        if p == path and len(failed) < times:
            failed.append(code)
            raise OSError(code, os.strerror(code))
        return real(p)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(MmapedDict, "read_all_values_from_file", staticmethod(flaky))
    return failed


@pytest.mark.parametrize("code", [errno.EMFILE, errno.ENFILE, errno.EIO])
def test_a_file_not_read_this_time_never_leaves_the_scrape_nor_counts_unreadable(
    metrics_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, code: int
) -> None:
    """A scrape that could not read the archive at that moment left its totals out (a counter
    reset, then a spurious increase), counted it in nev_ingest_metric_files_unreadable (an alert
    firing at once) and logged it as damaged. Now it reads it once more; failing again, the
    scrape fails (Prometheus: up=0, the counters stay monotonic) and the next reads it."""
    pids = [_worker(metrics_dir, 0.5) for _ in range(3)]
    files = MetricFiles(metrics_dir)
    assert files.archive(pids[0]) == 3
    assert files.archive(pids[1]) == 3
    before = _scrape(files)
    archive = str(metrics_dir / "counter_archive.db")
    failed = _failing_reads(monkeypatch, archive, 1, code)
    assert _scrape(files) == before  # read again: all there
    assert failed == [code]
    assert files.unreadable == ()
    failed = _failing_reads(monkeypatch, archive, 2, code)
    with pytest.raises(ScrapeError, match=r"cannot read counter_archive\.db .*\(twice\)"):
        _scrape(files)
    assert files.unreadable == ()
    assert _scrape(files) == before
    assert "until the service restarts" not in caplog.text
