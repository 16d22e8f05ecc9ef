"""Services of one test's own, to stop and start in the middle of a run: a PostgreSQL cluster
and a single-node Kafka broker, both started by the devstack code (the shared dev stack's
services are never stopped by a test)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

from devtools.devstack import Paths, ServiceState
from devtools.devstack import kafka as kafkadev
from devtools.devstack import postgres as pgdev
from devtools.settings import load_dev_settings
from ingest.errors import UserError

__all__ = ["PrivateCluster", "PrivateKafka"]


class PrivateCluster:
    """A PostgreSQL cluster of this test's own (initdb'd by the devstack code), to stop."""

    def __init__(self, home: Path) -> None:
        self.home = home
        try:
            self.state: ServiceState = pgdev.up(home, None, "", 120)
        except BaseException:
            with contextlib.suppress(UserError):  # a server still starting: keep the error
                pgdev.remove_home(home, pgdev.NAME)  # a cluster made before the start failed
            raise

    @property
    def dsn(self) -> str:
        return self.state.url

    def stop(self) -> None:
        if self.state.running:  # a test may have stopped it already
            pgdev.down(self.state, 60)

    def remove(self) -> None:
        """Delete the stopped cluster where it lives outside ``home`` (/tmp, when the server's
        user cannot reach pytest's directories); pytest removes ``home`` itself."""
        pgdev.remove_home(self.home, self.state.name, self.state.extra.get("data_dir"))

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """The server suspended (SIGSTOP to the postmaster and every backend), not gone:
        connections stay open, new ones are taken by the kernel, and nothing answers, as with
        a database that stalls (a long pause, an overloaded host). Resumed on leaving."""
        assert self.state.pid is not None, "the cluster is not running"
        pids = [self.state.pid, *_children(self.state.pid)]
        try:
            # Inside the try: a backend that exited since it was listed must not leave the
            # ones stopped before it (the postmaster first) stopped for the rest of the run.
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
            yield
        finally:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

    def start(self) -> None:
        port = self.state.port
        self.state = pgdev.up(self.home, self.state, "", 120)
        assert self.state.port == port, "restarted on another port; the service cannot follow"


# PrivateKafka mirrors PrivateCluster's dsn/stop/start (``duplicates`` pairs them by shape): the
# same small lifecycle over two devstack modules with different parameters.
class PrivateKafka:
    """A single-node KRaft broker of this test's own (started by the devstack code)."""

    def __init__(self, home: Path) -> None:
        settings = load_dev_settings()
        self._home = home
        self._cache = Paths.from_settings(settings).cache_dir
        self._version = settings.devstack.kafka_version
        self.state = self._up(None)

    def _up(self, previous: ServiceState | None) -> ServiceState:
        return kafkadev.up(
            self._home,
            previous,
            cache_dir=self._cache,
            version=self._version,
            heap="512m",
            topics={"veh": 4, "chg": 1, "tcec": 1, "bat": 1, "dlq": 1, "alerts": 1},
            replication_factor=1,
            timeout_s=180.0,
        )

    @property
    def bootstrap(self) -> str:
        return self.state.url

    def stop(self) -> None:
        kafkadev.down(self.state, 60)

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """The broker suspended (SIGSTOP), not gone: connections to it open and stay open, and
        nothing answers, as with a broker that hangs (a long pause, an overloaded host).
        Resumed on leaving the block."""
        assert self.state.pid is not None, "the broker is not running"
        os.kill(self.state.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.state.pid, signal.SIGCONT)

    def start(self) -> None:
        port = self.state.port
        self.state = self._up(self.state)
        assert self.state.port == port, "restarted on another port; clients cannot follow"


def _children(parent: int) -> list[int]:
    """The processes whose parent is ``parent`` (the postmaster's backends and workers)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")".
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[1]) == parent:
                out.append(int(stat.parent.name))
    return out
