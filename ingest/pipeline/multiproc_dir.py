"""``metrics.multiproc_dir``: where the workers' prometheus-client files live. The supervisor
prepares it for a run (claims it, removes a previous run's files) and watches its free space
(a full one kills workers with SIGBUS: ``metrics_room_problem``)."""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path
from typing import Final

from ingest.errors import UserError

__all__ = ["WORKER_METRICS_ROOM", "free_bytes", "metrics_room_problem", "prepare_multiproc_dir"]


def prepare_multiproc_dir(path: Path) -> Path:
    """Remove the metric files of a previous run from ``path`` (they must not be summed into
    this one) and point prometheus-client's multi-process mode at it for this process and its
    children. Only prometheus-client's own files go (``counter_<pid>.db``,
    ``gauge_livesum_<pid>.db``, ...), with the dead workers' archive (``counter_archive.db``)
    and what an archive interrupted by a crash left (``.db.new``, ``.db.archived``): a
    ``metrics.multiproc_dir`` naming a directory with anything else in it (a typo for
    /var/lib, $HOME, SQLite files) loses nothing."""
    path.mkdir(parents=True, exist_ok=True)
    _claim(path)
    for stale in path.glob("*.db*"):
        if _METRIC_FILE.fullmatch(stale.name) and stale.is_file():
            stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path


# Free space a worker's metric files may need in metrics.multiproc_dir: prometheus-client maps
# each of them (counters, histograms, a gauge file per mode: 4-6 per worker) at 64 KiB and
# doubles it as series come, and a page the file system cannot give (a full tmpfs) kills the
# worker with SIGBUS instead of raising. A dead worker's counter and histogram files are folded
# into one archive file per type when it is reaped (metric_files): restarts leave no files
# behind, and the archive holds one worker's worth of series.
WORKER_METRICS_ROOM: Final = 4 << 20


def metrics_room_problem(path: Path, workers: int) -> str | None:
    """What to tell the operator when ``path`` has less free space than ``workers`` workers'
    metric files may need (None when it has enough, or cannot be asked)."""
    free = free_bytes(path)
    need = workers * WORKER_METRICS_ROOM
    if free is None or free >= need:
        return None
    return (
        f"metrics.multiproc_dir = {path}: {free} bytes free, less than the {need} the metric "
        f"files of {workers} worker(s) may need; workers die of SIGBUS when it is full: give it "
        "more room (docs/operations.md, 'Metrics')"
    )


def free_bytes(path: Path) -> int | None:
    """Bytes an unprivileged process may still write under ``path`` (None: cannot tell)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


# prometheus-client's multi-process files: "<type>[_<gauge mode>]_<pid>.db" (its values.py);
# the archive of dead workers' ones, "<type>_archive.db", and its temporary names
# (metric_files).
_METRIC_FILE: Final = re.compile(
    r"(counter|histogram|summary|gauge_(?:live)?(?:all|min|max|sum|mostrecent))"
    r"_(?:\d+|archive)\.db(?:\.new|\.archived)?"
)
# The claims of this process's metric directories: open (and so locked) until it exits.
_CLAIMS: list[int] = []


def _claim(path: Path) -> None:
    """Lock ``path`` for this run: a second ``run`` with the same metrics.multiproc_dir would
    remove the running one's metric files, and its /metrics and /readyz would go blind."""
    fd = os.open(path / ".nev-ingest.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UserError(
            f"metrics.multiproc_dir = {path}: another nev-ingest run is using it (its metric "
            "files would be lost); give each run a directory of its own"
        ) from None
    _CLAIMS.append(fd)
