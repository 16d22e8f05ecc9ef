"""The workers' prometheus-client files in ``metrics.multiproc_dir``: scraped merged, and a
dead worker's counters folded into one archive file per type.

A worker's counter, histogram and summary files (``counter_<pid>.db``, ...) must outlive it:
the totals /metrics serves include what it counted, and a total that went down would read as a
counter reset. Left where they are, a crash loop adds files with every restart: each scrape
opens them all and the directory (a tmpfs sized per worker) fills. So when the supervisor
reaps a worker, ``archive`` adds the worker's values into ``<type>_archive.db`` (same file
format, a pid that is no number) and removes its files:

1. The new archive is written under a name the scrape's ``*.db`` glob skips
   (``<type>_archive.db.new``), with plain writes (not a memory map: a full tmpfs raises
   ENOSPC then, where a mapped page would kill the supervisor with SIGBUS).
2. Under the lock every scrape of this class holds while it lists and reads the files, the dead
   worker's file is renamed aside (``.db.archived``: no longer read) and the new archive
   renamed over the old one. A scrape sees both files before or both after, never one without
   the other (no total counted twice or missing); a failing rename puts the file back.
3. The aside file is removed.

Float totals (a histogram's ``_sum``) would otherwise change in their last bit when summed in
another grouping, and Prometheus takes any decrease for a reset: the scrape sums each series
exactly (``math.fsum``, correctly rounded whatever the order), and an archive value that is not
exact is rounded up, so the total a scrape reports never goes down across an archive. Integer
totals (every count) are exact either way. Gauges are prometheus-client's own merge
(``mark_process_dead`` removes a dead worker's live gauges).

A file that is not prometheus-client's format (damaged, or a key that is not its JSON in
UTF-8) cannot be counted nor folded: a scrape skips it, logs it once and counts it in
``unreadable`` (the supervisor's ``nev_ingest_metric_files_unreadable``), where the library's
collector failed the whole scrape; a fold leaves a dead worker's damaged file where it is
(``ArchiveError``) and still folds the worker's other files. A damaged archive would stop every
later fold of its type (and the dead workers' files pile up again): the fold renames it aside
(``<type>_archive.db.damaged-<n>``, no longer read, still counted in ``unreadable`` until the
operator removes it or the service restarts, ``remove_damaged``) and starts a new archive with
the dead worker's values. The totals the damaged archive held were already missing from the
scrapes that skipped it (a counter reset, to Prometheus); the new archive adds nothing twice nor
drops anything more. Only the format puts an archive aside: one the fold cannot read at that
moment (an OSError: EMFILE, ENFILE, EIO) may be sound, so the fold fails as when it cannot
write (``ArchiveError``; the dead worker's file stays, counted) and the next fold reads the
archive again; a scrape reads such a file once more and, failing again, fails
(``ScrapeError``: Prometheus records the target down, no total goes missing), never counting it
unreadable. A file of no bytes holds no values yet (a worker killed, or scraped,
between ``MmapedDict``'s open and its first truncate): read as empty, folded as such.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import math
import os
import struct
import threading
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Final

from prometheus_client.metrics_core import Metric
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.utils import floatToGoString

__all__ = ["ARCHIVE", "SUMMED_TYPES", "ArchiveError", "MetricFiles", "ScrapeError"]

# The file types whose values add up across processes (gauges merge by their mode).
SUMMED_TYPES: Final = ("counter", "histogram", "summary")
ARCHIVE: Final = "archive"  # in place of the pid: ``counter_archive.db``
# A damaged archive, renamed aside by a fold: ``counter_archive.db.damaged-1``, ... (not
# ``*.db``: no scrape reads it).
_DAMAGED_GLOB: Final = f"*_{ARCHIVE}.db.damaged-*"

log = logging.getLogger(__name__)

_Labels = tuple[tuple[str, str], ...]  # sorted
_Key = tuple[str, str, dict[str, str], str]  # metric, sample name, labels, help
# A file's entries: its key as written (the archive writes it back), the key parsed, the value.
_Entries = list[tuple[str, _Key, float]]


class ArchiveError(Exception):
    """A dead worker's files could not be archived; they stay (still counted if readable)."""


class _Unreadable(Exception):
    """A file that is not prometheus-client's format: its values can be neither counted nor
    archived (the message names it)."""


class _NotReadNow(_Unreadable):
    """A file that could not be read this time (EMFILE, ENFILE, EIO, ...): nothing says it is
    damaged, so a scrape never leaves it out nor counts it unreadable (it reads it once more,
    then fails: ``ScrapeError``) and a fold never puts it aside (the next read may well
    succeed)."""


class ScrapeError(Exception):
    """A metric file could not be read at this scrape (not a damaged one): the scrape fails
    rather than serve totals without its counts."""


class MetricFiles:
    """A collector of the files in ``path`` (register it on the serving registry), and the
    archive of a dead worker's files (see the module doc)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        # Held by each scrape while it reads, and by the swap of files in ``archive``.
        self._lock = threading.Lock()
        # The files the last scrape skipped (not prometheus-client's format), by name.
        self.unreadable: tuple[str, ...] = ()
        self._said_unreadable: set[str] = set()

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            files = glob.glob(os.path.join(self._path, "*.db"))
            read: dict[str, _Entries] = {}
            # Archives a fold found damaged and kept aside (it logged them).
            unreadable = [os.path.basename(f) for f in glob.glob(str(self._path / _DAMAGED_GLOB))]
            for f in files:
                try:
                    read[f] = self._read_or_fail(f)
                except _Unreadable as exc:
                    unreadable.append(os.path.basename(f))
                    self._say_unreadable(os.path.basename(f), str(exc))
            self.unreadable = tuple(sorted(unreadable))
            # Gauges: the library's merge, of the files just found readable and not empty
            # (it reads them again; a gauge file is small, one per live worker and mode).
            others = [f for f, v in read.items() if v and _type_of(f) not in SUMMED_TYPES]
            gauges = list(MultiProcessCollector.merge(others, accumulate=True))  # type: ignore[no-untyped-call]
        values = {
            t: _values_by_key([v for f, v in read.items() if _type_of(f) == t])
            for t in SUMMED_TYPES
        }
        return [*gauges, *(m for t, v in values.items() for m in _summed_metrics(t, v))]

    def gauges(self) -> list[Metric]:
        """The gauge files alone, merged as ``collect`` merges them: what /readyz reads. A
        counter, histogram or summary file that cannot be read fails a scrape, not readiness,
        which never uses them. ``ScrapeError`` as ``collect`` for a gauge file not read
        twice; a damaged one is left out (``collect`` logs and counts it)."""
        with self._lock:
            read = []
            for f in glob.glob(os.path.join(self._path, "gauge_*.db")):
                with contextlib.suppress(_Unreadable):  # _NotReadNow is a ScrapeError now
                    if self._read_or_fail(f):
                        read.append(f)
            return list(MultiProcessCollector.merge(read, accumulate=True))  # type: ignore[no-untyped-call]

    def _read_or_fail(self, path: str) -> _Entries:
        """``_read_now``; ``ScrapeError`` when it is not read twice (``_Unreadable`` when it
        is damaged)."""
        try:
            return _read_now(path)
        except _NotReadNow as exc:
            # Not read twice (out of file descriptors, an I/O error): nothing says it is
            # damaged. Leaving it out would drop its totals from this scrape (a counter reset,
            # then a spurious increase) and count it unreadable (an alert): this scrape fails
            # instead (Prometheus records up=0, the counters stay monotonic) and the next one
            # reads it again.
            raise ScrapeError(
                f"metrics.multiproc_dir = {self._path}: {exc} (twice); this scrape "
                "fails, the next reads it again; if it goes on, see the host's open "
                "files limit and its disk"
            ) from exc

    def _say_unreadable(self, name: str, why: str) -> None:
        """Log a file a scrape skips, once per file (every scrape finds it again)."""
        if name not in self._said_unreadable:
            self._said_unreadable.add(name)
            log.error(
                "metrics.multiproc_dir = %s: %s; /metrics leaves it out (its counts are "
                "missing) until the service restarts, which removes it",
                self._path,
                why,
            )

    def remove_damaged(self) -> None:
        """Remove the damaged archives an earlier fold kept aside (a new run's start: the
        previous run's files are gone, and these no longer belong to any total)."""
        for f in self._path.glob(_DAMAGED_GLOB):
            with contextlib.suppress(OSError):
                f.unlink()

    def archive(self, pid: int) -> int:
        """Fold the summed files of ``pid`` (dead, reaped: nothing writes them) into the
        archive; how many files went. ``ArchiveError`` (after the other types were folded):
        the files it names stayed where they were, still counted if readable."""
        gone, failed = 0, []
        for typ in SUMMED_TYPES:
            dead = self._path / f"{typ}_{pid}.db"
            if dead.exists():
                try:
                    self._archive_one(typ, dead)
                except ArchiveError as exc:  # one unreadable file must not keep the others
                    failed.append(str(exc))
                    continue
                gone += 1
        if failed:
            raise ArchiveError("; ".join(failed))
        return gone

    def _archive_one(self, typ: str, dead: Path) -> None:
        archive = self._path / f"{typ}_{ARCHIVE}.db"
        new = archive.with_name(archive.name + ".new")
        aside = dead.with_name(dead.name + ".archived")
        damaged: Path | None = None  # where a damaged archive goes
        why = ""
        try:
            files = [_read(str(dead))]
            try:
                files.append(_read(str(archive)))
            except _NotReadNow:
                # Maybe sound (out of file descriptors, an I/O error once): putting it aside
                # would drop its totals from /metrics for good. The fold fails instead, the
                # dead worker's file stays counted and the next fold reads the archive again.
                raise
            except _Unreadable as exc:
                # Not the format (the reader's ValueError, RuntimeError, struct.error): every
                # later fold of this type would stop on it: put it aside, start anew.
                damaged, why = self._damaged_name(archive), str(exc)
            values = _values_by_key(files)
            _write(new, {key: _sum_up(v) for key, (_, v) in values.items()})
            with self._lock:
                os.rename(dead, aside)
                try:
                    if damaged is not None:
                        os.rename(archive, damaged)
                        # The new archive gets its name: say so again if it is damaged too.
                        self._said_unreadable.discard(archive.name)
                    try:
                        os.replace(new, archive)
                    except BaseException:
                        if damaged is not None:
                            os.rename(damaged, archive)
                        raise
                except BaseException:
                    os.rename(aside, dead)  # its values are counted where they were
                    raise
        except (OSError, _Unreadable) as exc:
            with contextlib.suppress(OSError):
                new.unlink(missing_ok=True)
            if isinstance(exc, _NotReadNow):  # the scrapes read it as before
                raise ArchiveError(f"{exc}; still counted") from exc
            if isinstance(exc, _Unreadable):  # left for the operator to look at
                raise ArchiveError(f"{exc}; not counted; remove it") from exc
            raise ArchiveError(
                f"{dead.name}: {exc.strerror or exc}; still counted; "
                "give the directory room and make it writable"
            ) from exc
        # Not *.db any more: no scrape reads it, so a failure here only leaves the bytes (the
        # next run's start removes them).
        with contextlib.suppress(OSError):
            aside.unlink(missing_ok=True)
        if damaged is not None:
            log.error(
                "metrics.multiproc_dir = %s: %s; kept aside as %s (counted in "
                "nev_ingest_metric_files_unreadable) and a new %s started with the dead "
                "worker's counts: the totals it held stay missing from /metrics (a counter "
                "reset to Prometheus; docs/operations.md, 'Metrics'); remove %s once looked at",
                self._path,
                why,
                damaged.name,
                archive.name,
                damaged.name,
            )

    def _damaged_name(self, archive: Path) -> Path:
        """The first free ``<archive>.damaged-<n>``."""
        n = 1
        while (found := archive.with_name(f"{archive.name}.damaged-{n}")).exists():
            n += 1
        return found


def _type_of(path: str) -> str:
    return os.path.basename(path).split("_", 1)[0]


def _read(path: str) -> _Entries:
    """The keys (prometheus-client's JSON of metric, sample, labels, help), each also parsed
    (once: the scrape's merge takes the parsed one), and values of the file ``path``;
    ``_Unreadable`` when it is not that format (the library's reader raises struct.error,
    UnicodeDecodeError, RuntimeError, ... for a damaged file)."""
    name = os.path.basename(path)
    try:
        if os.stat(path).st_size == 0:  # created, not yet sized: nothing in it
            return []
        values = []
        for key, value, _, _ in MmapedDict.read_all_values_from_file(path):  # type: ignore[no-untyped-call]
            # As it comes: a negative length in a damaged file sends the library's reader
            # back, maybe for ever, yielding empty keys.
            values.append((key, _parse_key(key, _type_of(path)), value))
    except FileNotFoundError:  # gone since the listing: a live gauge of a reaped worker
        return []
    except OSError as exc:  # the file's bytes are not in question
        raise _NotReadNow(f"cannot read {name} ({exc.strerror or exc})") from exc
    except (ValueError, RuntimeError, struct.error) as exc:
        raise _Unreadable(f"{name} is not a prometheus-client metric file ({exc})") from exc
    return values


def _read_now(path: str) -> _Entries:
    """``_read``, tried once more after an error of the moment (``_NotReadNow``: a descriptor
    freed meanwhile, an I/O error once); ``_NotReadNow`` if it fails again."""
    try:
        return _read(path)
    except _NotReadNow:
        return _read(path)


def _parse_key(key: str, typ: str) -> _Key:
    """A key's metric, sample name, labels and help; ValueError when it is not such a key
    (a histogram's ``le`` a number too: the scrape sorts the buckets by it)."""
    parsed = json.loads(key)
    if isinstance(parsed, list) and len(parsed) == 4:
        metric_name, name, labels, help_text = parsed
        if (
            isinstance(metric_name, str)
            and isinstance(name, str)
            and isinstance(help_text, str)
            and isinstance(labels, dict)
            and all(isinstance(v, str) for v in labels.values())
        ):
            if typ == "histogram" and "le" in labels:
                float(labels["le"])
            return metric_name, name, labels, help_text
    raise ValueError(f"not a metric key: {key[:80]!r}")


def _values_by_key(files: Sequence[_Entries]) -> dict[str, tuple[_Key, list[float]]]:
    """Each key of the files read (``_read``): parsed, and its values file by file."""
    out: dict[str, tuple[_Key, list[float]]] = {}
    for entries in files:
        for key, parsed, value in entries:
            out.setdefault(key, (parsed, []))[1].append(value)
    return out


def _exact_sum(values: Sequence[float]) -> float:
    """The sum, correctly rounded (the same whatever the order and grouping)."""
    try:
        return math.fsum(values)
    except (OverflowError, ValueError):  # infinities, NaN: no exact sum to keep
        return sum(values)


def _sum_up(values: Sequence[float]) -> float:
    """The smallest float not below the exact sum: what the archive keeps, so that a total
    summed with it is never below the total summed with the files it replaces."""
    total = _exact_sum(values)
    finite = math.isfinite(total) and all(math.isfinite(v) for v in values)
    if finite and Fraction(total) < sum((Fraction(v) for v in values), Fraction(0)):
        total = math.nextafter(total, math.inf)
    return total


def _summed_metrics(typ: str, values: dict[str, tuple[_Key, list[float]]]) -> list[Metric]:
    """The merge prometheus-client's collector does for the files of ``typ`` (counter,
    histogram, summary): the same families, samples and sample order, each series summed
    exactly. The order is the library's: per label set (``le`` aside) as first seen, its
    samples together (its ``_sum``, then ``_bucket``s and ``_count``), as OpenMetrics requires
    of a family's samples (a parser refuses them interleaved)."""
    metrics: dict[str, Metric] = {}
    # Per metric: label set -> (sample name, labels) -> values; and the buckets apart.
    samples: dict[str, dict[_Labels, dict[tuple[str, _Labels], list[float]]]] = {}
    buckets: dict[str, dict[_Labels, dict[float, list[float]]]] = {}
    for (metric_name, name, labels, help_text), vals in values.values():
        if metric_name not in metrics:
            metrics[metric_name] = Metric(metric_name, help_text, typ)
            samples[metric_name], buckets[metric_name] = {}, {}
        sorted_labels = tuple(sorted(labels.items()))
        le = labels.get("le")
        if typ == "histogram" and le is not None:
            rest = tuple(item for item in sorted_labels if item[0] != "le")
            by_le = buckets[metric_name].setdefault(rest, {})
            by_le.setdefault(float(le), []).extend(vals)
        else:
            series = samples[metric_name].setdefault(sorted_labels, {})
            series.setdefault((name, sorted_labels), []).extend(vals)
    for metric_name, metric in metrics.items():
        totals = {
            labels: {sample: _exact_sum(vals) for sample, vals in series.items()}
            for labels, series in samples[metric_name].items()
        }
        for rest, by_le in buckets[metric_name].items():
            group, acc = totals.setdefault(rest, {}), 0.0
            for bound, vals in sorted(by_le.items()):
                acc += _exact_sum(vals)  # counts: integers, exact
                le_label = ("le", floatToGoString(bound))  # type: ignore[no-untyped-call]
                group[(metric_name + "_bucket", (*rest, le_label))] = acc
            group[(metric_name + "_count", rest)] = acc
        for group in totals.values():
            for (sample_name, sample_labels), total in group.items():
                metric.add_sample(sample_name, dict(sample_labels), total)
    return list(metrics.values())


def _write(path: Path, values: dict[str, float]) -> None:
    """``values`` as a prometheus-client file (``MmapedDict``'s format: the used length, 4
    bytes of padding, then per key its length, the key padded to 8 bytes, value, timestamp)."""
    body = bytearray()
    for key, value in values.items():
        encoded = key.encode("utf-8")
        padded = encoded + b" " * (8 - (len(encoded) + 4) % 8)
        body += struct.pack(f"i{len(padded)}sdd", len(encoded), padded, value, 0.0)
    data = struct.pack("i4x", 8 + len(body)) + bytes(body)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
