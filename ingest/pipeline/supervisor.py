"""The supervisor: N worker processes, restarted when they crash, and the HTTP endpoint.

Why processes: decoding is CPU-bound Python; one process per core is how ``--workers N`` uses
the host. Each worker is its own consumer in the group, so Kafka spreads the partitions.

- A worker that exits while the service is not stopping is a crash: it is logged (exit code or
  signal), counted, and restarted after a backoff (1 s doubling to 30 s; reset once a worker
  has run for a minute), so a crash loop does not hammer the broker and the database.
- SIGTERM / SIGINT: forwarded to the workers as SIGTERM (they stop fetching, flush, commit and
  exit 0), and again every second until they are gone (a signal can be lost while a worker
  starts); a worker killed by that SIGTERM (it came before the worker installed its handler,
  so nothing was in flight) stopped cleanly; a worker still running after the deadline is
  killed (its uncommitted frames are read again after the restart: nothing is lost). The
  supervisor exits 0 when every worker did; a worker waiting out its restart backoff when the
  signal comes holds nothing in flight, so it is simply not restarted (its crash was logged
  and counted already) and does not make the stop fail.
- SIGHUP: ``reload`` checks the change (the rule files: ``rule_snapshot``); accepted, it is
  forwarded to the workers, which reload (a worker still starting ignores it: it has not
  loaded its rules yet); refused, it is logged and the workers are not told.
- The supervisor failing (a bug, an unexpected OS error): its workers are stopped as by
  SIGTERM (then killed after the stop deadline) before the error propagates, and each worker
  asked the kernel for a SIGTERM when the supervisor dies (``PR_SET_PDEATHSIG``, Linux), so a
  supervisor killed outright (SIGKILL, the OOM killer) leaves no worker consuming unwatched.
- Metrics: workers write multi-process files into ``multiproc_dir``; the supervisor serves them
  merged on one port with /healthz (this loop is turning) and /readyz (every worker is in the
  group, reaches the database, and is not stalled: see ``readiness``). A reaped worker's
  counter and histogram files are folded into one archive file (``metric_files``), so a crash
  loop does not pile them up; its live gauges are removed.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Final

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import mark_process_dead

from ingest.errors import UserError
from ingest.pipeline.metric_files import ArchiveError, MetricFiles, ScrapeError
from ingest.pipeline.metrics import MetricsServer, worker_gauges
from ingest.pipeline.multiproc_dir import free_bytes, metrics_room_problem

__all__ = ["Supervisor", "SupervisorOptions"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SupervisorOptions:
    workers: int
    metrics_host: str
    metrics_port: int
    multiproc_dir: Path
    shutdown_timeout_s: float = 30.0
    # After shutdown_timeout_s (the workers' flush deadline): time to leave the group and close.
    # A worker still running after both is killed.
    stop_grace_s: float = 0.0
    stall_after_s: float = 60.0
    restart_backoff_initial_s: float = 1.0
    restart_backoff_max_s: float = 30.0
    healthy_run_s: float = 60.0


@dataclass
class _Slot:
    index: int
    process: Any = None  # multiprocessing.Process
    started: float = 0.0
    restart_at: float = 0.0
    backoff: float = 0.0
    exit_code: int | None = None
    killed: bool = False  # by _kill_stragglers (said once: it may take a while to die)


class _SupervisorCollector:
    """The supervisor's own series, computed at scrape time (not multi-process files)."""

    def __init__(self, sup: Supervisor) -> None:
        self._sup = sup

    def collect(self) -> Any:
        restarts = CounterMetricFamily(
            "nev_ingest_worker_restarts", "Workers restarted after a crash."
        )
        restarts.add_metric([], self._sup.restarts)
        alive = GaugeMetricFamily("nev_ingest_workers_alive", "Worker processes running.")
        alive.add_metric([], len(self._sup.live_pids()))
        wanted = GaugeMetricFamily("nev_ingest_workers_wanted", "Worker processes configured.")
        wanted.add_metric([], self._sup.options.workers)
        # Counted by the scrape of the files just before (MetricFiles is registered first).
        unreadable = GaugeMetricFamily(
            "nev_ingest_metric_files_unreadable",
            "Metric files /metrics skipped as damaged (their counts missing; the log names them).",
        )
        unreadable.add_metric([], len(self._sup.metric_files.unreadable))
        return [restarts, alive, wanted, unreadable]


# During a stop, SIGTERM is forwarded again this often to the workers still running.
_REFORWARD_S = 1.0
_PR_SET_PDEATHSIG: Final = 1  # <linux/prctl.h>
# How old /readyz's last good read of the gauges may be to answer when a read fails. The
# shipped readiness probe comes every 10 s (deploy/k8s/ingest-deployment.yaml, periodSeconds):
# one failed read finds the previous probe's read 10 s old, and 5 s more absorb the probe's
# jitter and a slow answer. Two failures in a row (20 s) answer 503: a failure that persists
# is said by the next probe. While reads fail, a worker's Kafka or database connection lost
# is seen up to that much later; the heartbeat and commit ages are measured from now, so a
# stalled worker is never called ready longer for it.
_GAUGES_STALE_OK_S: Final = 15.0


def _worker_main(target: Callable[[int], None], index: int, supervisor_pid: int) -> None:
    """What a worker process runs: ``target(index)``, bound to the supervisor's life.

    SIGHUP comes blocked from ``Supervisor._start`` (a forwarded reload would otherwise kill a
    worker still importing: its default action terminates). It is ignored, then unblocked,
    until the target installs its own handler: nothing is lost, as the rules a reload would
    bring are the ones the worker loads when it gets to them."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # drops one pending since the start, too
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
    _stop_with_parent(supervisor_pid)
    target(index)


def _stop_with_parent(supervisor_pid: int) -> None:
    """Ask the kernel for SIGTERM when the supervisor dies (Linux; elsewhere nothing), so a
    supervisor killed with SIGKILL or by the OOM killer does not leave this worker consuming
    with nobody to restart, stop or scrape it. SIGTERM is the graceful stop: what the worker
    has in flight is flushed and committed. A supervisor that died before the request was
    made sends nothing: then the parent is already someone else, and the worker does not run."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != supervisor_pid:
        sys.exit(0)


class Supervisor:
    """Runs ``target(index)`` in ``options.workers`` spawned processes; see the module doc."""

    def __init__(
        self,
        options: SupervisorOptions,
        target: Callable[[int], None],
        *,
        reload: Callable[[], str] | None = None,
    ) -> None:
        """``reload``: run on SIGHUP before the workers hear of it; a ``UserError`` from it
        refuses the reload (logged; the workers are not told)."""
        self.options = options
        self._target = target
        self._reload = reload
        self._restarts_dropped = False
        self._ctx = multiprocessing.get_context("spawn")
        self._slots = [_Slot(i) for i in range(options.workers)]
        self._stopping = False
        self._stop_deadline = 0.0
        self._forwarded_at = 0.0  # when SIGTERM was last forwarded during the stop
        self._hup = False
        self._turn = time.monotonic()
        self._mark_dead_failed = False  # mark_process_dead failed once (logged once)
        self._archive_failed = False  # MetricFiles.archive failed once (logged once)
        self._archive_crashed = False  # ... with an exception it does not expect (a bug)
        self.metric_files = MetricFiles(options.multiproc_dir)
        self._gauges_unread = False  # /readyz could not read the metric files (logged once)
        # /readyz's last good read of the gauges: when (monotonic) and what (None: none yet).
        self._last_gauges: tuple[float, dict[str, dict[str, float]] | None] = (0.0, None)
        self.restarts = 0
        self.server: MetricsServer | None = None

    # -- what the HTTP thread reads ----------------------------------------------------------
    def live_pids(self) -> list[int]:
        # Each slot's process read once: the main loop sets it to None when the worker exits,
        # between a test and a use of it here (a scrape's AttributeError, /readyz a 500).
        procs = [s.process for s in self._slots]
        return [p.pid for p in procs if p is not None and p.is_alive()]

    def readiness(self) -> tuple[bool, dict[str, object]]:
        """Ready when every wanted worker runs, is in the group, reaches the database, and
        either has nothing to do or committed within ``stall_after_s``. One entry per worker
        slot: a slot whose worker crashed says so and when it restarts; a worker that has not
        written its gauges yet (just spawned) is "starting", not blamed on Kafka or the
        database. Only the gauge files are read (``MetricFiles.gauges``). One not read (a
        read failing twice: ``ScrapeError``): the last good read's gauges answer for up to
        ``_GAUGES_STALE_OK_S`` (``gauges_age_s`` and ``read_error`` say so); after that, not
        ready, ``reason`` saying why, each running worker "metric files not read" (a probe
        answers 503 with that, not a 500 from the exception)."""
        now = time.time()
        detail: dict[str, object] = {}
        gauges: dict[str, dict[str, float]] | None
        try:
            gauges = worker_gauges(self.metric_files.gauges())
            self._last_gauges = (time.monotonic(), gauges)
            self._gauges_unread = False
        except ScrapeError as exc:
            read_at, last = self._last_gauges  # one read of the pair: other probes replace it
            age = time.monotonic() - read_at
            if last is not None and age <= _GAUGES_STALE_OK_S:
                # One read failing at one probe (a descriptor short a moment) is no sign of
                # the workers': a 503 would count against the probe's failureThreshold.
                gauges = last
                detail.update(gauges_age_s=round(age, 1), read_error=str(exc))
            else:
                # Nothing known of the running workers now; the next probe reads again.
                gauges, detail["reason"] = None, str(exc)
                if not self._gauges_unread:  # once until a read succeeds: probes come often
                    self._gauges_unread = True
                    log.warning("/readyz answers 503: %s", exc)
        workers: list[dict[str, object]] = []
        ok = not self._stopping
        for slot in self._slots:
            proc = slot.process  # read once: the main loop replaces it meanwhile
            pid = proc.pid if proc is not None else None
            if proc is None or not proc.is_alive():
                problems = [self._not_running(slot, proc)]
            elif gauges is None:
                problems = ["metric files not read"]
            else:
                problems = self._worker_problems(gauges.get(str(pid)), now)
            ok = ok and not problems
            workers.append(
                {"worker": slot.index, "pid": pid, "ok": not problems, "problems": problems}
            )
        detail.update(workers=workers, wanted=self.options.workers, stopping=self._stopping)
        return ok, detail

    def _not_running(self, slot: _Slot, proc: Any) -> str:
        """Why the slot has no live worker, in words an operator can act on: not spawned yet
        (the service is starting), dead but not reaped yet (the loop restarts it on its next
        turn), waiting out its restart backoff, or stopped (the service stops)."""
        if proc is not None:
            # Dead, not reaped yet. A dead process's exit code is known; "not known yet" only
            # covers a process object that never ran, which the loop never holds.
            code = proc.exitcode
            how = "exit code not known yet" if code is None else _exit_text(code)
            return f"stopped ({how})" if self._stopping else f"exited ({how}); restart pending"
        if self._stopping:
            if slot.exit_code is None:
                return "stopped"
            return f"stopped ({_exit_text(slot.exit_code)})"
        if slot.exit_code is None:
            # Never started (the first start of the slots is under way), or being restarted
            # just now: no crash to report.
            return "starting (no process yet)"
        wait = max(0.0, slot.restart_at - time.monotonic())
        return f"crashed ({_exit_text(slot.exit_code)}), restarting in {wait:.0f}s"

    def _worker_problems(self, g: dict[str, float] | None, now: float) -> list[str]:
        if not g:
            # Spawned, but not one gauge yet (imports and settings come first): a restarted
            # worker's files are new (its pid is), so nothing says it failed at anything.
            return ["starting"]
        stall = self.options.stall_after_s
        problems = []
        kafka = g.get("kafka_connected")
        if kafka != kafka:  # NaN: not tried yet, the worker waits for its database first
            problems.append("starting: Kafka not tried yet")
        elif kafka != 1:
            problems.append("not connected to Kafka")
        elif g.get("in_group") != 1:
            # Kafka answers, but the group has not assigned this worker yet (joining, or a
            # rebalance held up by a member that died without leaving): it consumes nothing.
            # Not said beside a Kafka problem above, which is the cause then.
            problems.append("not in the consumer group yet")
        if g.get("db_connected") != 1:
            problems.append("database unreachable")
        if now - g.get("heartbeat", 0) > stall:
            problems.append("consumer loop stalled")
        if g.get("backlog", 0) > 0 and now - g.get("last_commit", 0) > stall:
            problems.append(f"backlog but no commit for {stall:.0f}s")
        return problems

    # -- main loop ---------------------------------------------------------------------------
    def run(self) -> int:
        o = self.options
        registry = CollectorRegistry()
        # An earlier run's damaged archives (kept aside in a directory that outlived it, such
        # as a pod's emptyDir across a container restart): no total of this run holds them,
        # and nev_ingest_metric_files_unreadable would count them for good.
        self.metric_files.remove_damaged()
        registry.register(self.metric_files)
        registry.register(_SupervisorCollector(self))
        try:
            self.server = MetricsServer(
                o.metrics_host,
                o.metrics_port,
                registry=registry,
                ready=self.readiness,
                alive=lambda: time.monotonic() - self._turn < 10,
            )
        except OSError as exc:
            raise UserError(
                f"metrics endpoint {o.metrics_host}:{o.metrics_port}: {exc.strerror}; "
                "choose another port (--metrics-port or metrics.port)"
            ) from None
        self.server.start()
        log.info(
            "supervisor started",
            extra={"workers": o.workers, "metrics": f"http://{o.metrics_host}:{self.server.port}"},
        )
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        old[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_signal)
        try:
            self._loop()
        except BaseException as exc:
            # Workers never outlive a failed supervisor: nobody would restart, stop or scrape
            # them, and a process manager restarting the service would start a second set.
            log.error("supervisor failed (%r): stopping the workers", exc)
            self._stop_workers()
            raise
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
            self.server.stop()
        codes = [s.exit_code for s in self._slots]
        log.info("supervisor stopped", extra={"exit_codes": codes})
        return 0 if all(c in (0, None) for c in codes) else 1

    def _loop(self) -> None:
        self._check_room(len(self._slots))
        for slot in self._slots:
            self._start(slot)
        while True:
            self._turn = time.monotonic()
            if self._stopping and not self._restarts_dropped:
                # Once, when the stop begins: later, a slot without a process is a worker
                # that exited during the stop, and its exit code must count.
                self._drop_pending_restarts()
                self._restarts_dropped = True
            self._reap()
            # Reaped, not merely dead: a worker that exits between the reap and this
            # check is reaped (and its exit code recorded) on the next turn.
            if self._stopping and all(slot.process is None for slot in self._slots):
                break
            if self._stopping and time.monotonic() > self._stop_deadline:
                self._kill_stragglers()
            elif self._stopping and time.monotonic() - self._forwarded_at >= _REFORWARD_S:
                # Again, until they are gone: a SIGTERM that reaches a worker between its
                # fork and its exec is taken by the parent's inherited handler and lost
                # with the exec; workers treat a second SIGTERM like the first.
                self._forward(signal.SIGTERM)
            if self._hup:
                self._hup = False
                # Not while stopping: the workers are flushing to exit, a reload has nothing
                # to do there (and the rules a restart would load are checked at the next run).
                if not self._stopping and self._reloaded():
                    self._forward(signal.SIGHUP)
            if not self._stopping:
                for slot in self._slots:
                    if slot.process is None and time.monotonic() >= slot.restart_at:
                        self._check_room(1)
                        self._start(slot)
            sentinels = [s.process.sentinel for s in self._slots if s.process is not None]
            multiprocessing.connection.wait(sentinels, timeout=0.5)

    def _check_room(self, workers: int) -> None:
        """Before starting workers: say so when their metric files may not fit (the SIGBUS
        that follows says nothing by itself)."""
        problem = metrics_room_problem(self.options.multiproc_dir, workers)
        if problem is not None:
            log.error(problem)

    def _reloaded(self) -> bool:
        """SIGHUP: whether the workers are to reload (``reload`` accepted the change)."""
        if self._reload is None:
            return True
        try:
            log.info("SIGHUP: %s", self._reload())
        except UserError as exc:
            log.error(
                "SIGHUP refused: %s; the previous rules stay in force (in restarted workers too)",
                exc,
            )
            return False
        return True

    def _stop_workers(self) -> None:
        """After a failure of the loop: SIGTERM the workers (again every second, as a stop
        does), wait until the stop deadline, kill the ones still running, reap them all."""
        self._stopping = True
        deadline = time.monotonic() + self._stop_after_s()
        procs = [s.process for s in self._slots if s.process is not None]
        while alive := [p for p in procs if p.is_alive()]:
            left = deadline - time.monotonic()
            if left <= 0:
                for p in alive:
                    log.warning("worker did not stop: killing it", extra={"worker_pid": p.pid})
                    p.kill()
                break
            self._forward(signal.SIGTERM)
            multiprocessing.connection.wait([p.sentinel for p in alive], min(_REFORWARD_S, left))
        for p in procs:
            p.join()

    def _drop_pending_restarts(self) -> None:
        """Before reaping: a slot without a process is waiting to restart after a crash (a
        worker that exited since is still in ``process`` until reaped)."""
        for slot in self._slots:
            if slot.process is None and slot.exit_code is not None:
                log.info(
                    "worker %d was waiting to restart after a crash: not restarted",
                    slot.index,
                    extra={"worker": slot.index, "exit_code": slot.exit_code},
                )
                slot.exit_code = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self._hup = True
            return
        if not self._stopping:
            self._stopping = True
            self._stop_deadline = time.monotonic() + self._stop_after_s()
            log.info("stopping: %s received", signal.Signals(signum).name)
            self._forward(signal.SIGTERM)

    def _forward(self, sig: int) -> None:
        if sig == signal.SIGTERM:
            self._forwarded_at = time.monotonic()
        for pid in self.live_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def _start(self, slot: _Slot) -> None:
        proc = self._ctx.Process(
            target=_worker_main,
            args=(self._target, slot.index, os.getpid()),
            name=f"nev-ingest-worker-{slot.index}",
        )
        # Blocked from the fork to the worker's first statement (_worker_main): the
        # interpreter's start and the unpickling of the target take a while, and the child
        # inherits the mask through the exec.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
        try:
            proc.start()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
        slot.process = proc
        slot.started = time.monotonic()
        slot.exit_code = None
        slot.killed = False
        log.info("worker started", extra={"worker": slot.index, "worker_pid": proc.pid})
        if self._stopping and proc.pid is not None:  # a SIGTERM came while it started:
            with contextlib.suppress(ProcessLookupError):  # the forward did not reach it
                os.kill(proc.pid, signal.SIGTERM)

    def _reap(self) -> None:
        o = self.options
        for slot in self._slots:
            proc = slot.process
            if proc is None or proc.is_alive():
                continue
            proc.join()
            code = proc.exitcode
            slot.exit_code = code
            slot.process = None
            self._forget_gauges(proc.pid)
            self._archive(proc.pid)
            if self._stopping:
                if code == -signal.SIGTERM:
                    # Killed by the forwarded SIGTERM itself: it came before the worker had
                    # installed its handler, i.e. before it consumed anything - a clean stop.
                    slot.exit_code = code = 0
                log.info("worker exited", extra={"worker": slot.index, "exit_code": code})
                continue
            ran = time.monotonic() - slot.started
            if ran >= o.healthy_run_s:
                slot.backoff = 0.0
            slot.backoff = min(
                max(slot.backoff * 2, o.restart_backoff_initial_s), o.restart_backoff_max_s
            )
            slot.restart_at = time.monotonic() + slot.backoff
            self.restarts += 1
            how = _exit_text(code)
            if code == -signal.SIGBUS:  # what a full metrics file system does to a worker
                free = free_bytes(o.multiproc_dir)
                how += f"; metrics.multiproc_dir {o.multiproc_dir} full? {free} bytes free"
            log.error(
                "worker crashed (%s) after %.1fs; restarting in %.1fs",
                how,
                ran,
                slot.backoff,
                extra={"worker": slot.index, "worker_pid": proc.pid, "exit_code": code},
            )

    def _forget_gauges(self, pid: int) -> None:
        """Remove a dead worker's live gauges from the metric files. Failing that (the
        directory gone read-only, say) is no reason to stop supervising: its last gauge values
        stay in /metrics (/readyz looks at live workers only)."""
        try:
            mark_process_dead(pid, str(self.options.multiproc_dir))  # type: ignore[no-untyped-call]
        except OSError as exc:
            if not self._mark_dead_failed:  # once: it fails again with each dead worker
                self._mark_dead_failed = True
                log.error(
                    "metrics.multiproc_dir = %s: cannot remove a dead worker's gauge files "
                    "(%s); its last gauge values stay in /metrics until the service restarts; "
                    "make the directory writable",
                    self.options.multiproc_dir,
                    exc.strerror or exc,
                )

    def _archive(self, pid: int) -> None:
        """Fold a dead worker's counter and histogram files into the archive (metric_files),
        so that a crash loop does not pile up files. Failing that (the directory full or gone
        read-only, a damaged file), the files stay: a fold of metrics is never a reason to
        stop supervising, whatever it raised."""
        try:
            self.metric_files.archive(pid)
        except ArchiveError as exc:
            if not self._archive_failed:  # once: it fails again with each dead worker
                self._archive_failed = True
                log.error(
                    "metrics.multiproc_dir = %s: cannot fold a dead worker's metric files "
                    "into the archive (%s); they stay until the service restarts",
                    self.options.multiproc_dir,
                    exc,
                )
        except Exception:  # a bug in the fold: say where (once), and go on supervising
            if not self._archive_crashed:
                self._archive_crashed = True
                log.exception(
                    "metrics.multiproc_dir = %s: folding a dead worker's metric files failed "
                    "unexpectedly; they stay until the service restarts",
                    self.options.multiproc_dir,
                )

    def _stop_after_s(self) -> float:
        return self.options.shutdown_timeout_s + self.options.stop_grace_s

    def _kill_stragglers(self) -> None:
        o = self.options
        for slot in self._slots:
            if slot.process is not None and not slot.killed and slot.process.is_alive():
                slot.killed = True  # once: it is called each turn until the worker is reaped
                log.warning(
                    "worker did not stop within %gs (pipeline.shutdown_timeout_s %gs + %gs to "
                    "leave the group and close): killing it (uncommitted frames will be read "
                    "again; nothing is lost)",
                    self._stop_after_s(),
                    o.shutdown_timeout_s,
                    o.stop_grace_s,
                    extra={"worker": slot.index, "worker_pid": slot.process.pid},
                )
                slot.process.kill()


def _exit_text(code: int | None) -> str:
    """A worker's exit for logs and /readyz: its exit code, or the signal that killed it."""
    if code is None or code >= 0:
        return f"exit code {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:  # a real-time signal has no name: the supervisor must not stop on it
        return f"killed by signal {-code}"
