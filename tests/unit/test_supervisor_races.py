"""Races between the supervisor's main loop and what else reads or signals its workers: the
HTTP thread's live pids while a worker exits, and a SIGHUP that reaches a worker after it
stopped (its loop's closing would restore the default action, which terminates)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from ingest.pipeline import process
from ingest.pipeline.multiproc_dir import prepare_multiproc_dir
from ingest.pipeline.supervisor import Supervisor, SupervisorOptions
from tests.unit.test_pipeline_supervisor import _always_crash

pytestmark = pytest.mark.unit


class _Alive:
    pid = 4242

    def is_alive(self) -> bool:
        return True


class _ExitingSlot:
    """A slot whose worker exits between the HTTP thread's first and second look at it (the
    main loop sets ``process`` to None when it reaps the worker)."""

    index = 0

    def __init__(self) -> None:
        self._looks = 0

    @property
    def process(self) -> Any:
        self._looks += 1
        return _Alive() if self._looks == 1 else None


def test_live_pids_reads_each_slot_once(tmp_path: Path) -> None:
    sup = Supervisor(
        SupervisorOptions(
            workers=1,
            metrics_host="127.0.0.1",
            metrics_port=0,
            multiproc_dir=prepare_multiproc_dir(tmp_path / "m"),
        ),
        _always_crash,
    )
    sup._slots = [_ExitingSlot()]  # type: ignore[list-item]
    # Read twice, the second look found None: AttributeError, and /readyz answered 500.
    assert sup.live_pids() == [4242]


def test_a_stopped_worker_ignores_a_late_sighup() -> None:
    old = signal.getsignal(signal.SIGHUP)
    heard: list[int] = []

    async def worker() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, lambda: heard.append(1))
        process._ignore_hup(loop)

    try:
        asyncio.run(worker())  # the loop closed, as a worker's when it returns
        # Without _ignore_hup SIGHUP's action is the default again here: this process ends.
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGHUP)
        assert heard == []
    finally:
        signal.signal(signal.SIGHUP, old)
