"""The dev broker's topic count: the warning when it holds too many partitions, and
``devstack prune-topics``, which deletes the topics tests and benchmarks left.

Each partition is a directory of segment and index files the broker keeps open: ~20,000
partitions of leftover test topics once took the dev broker to its open-file limit, where it
died ("Too many open files"). Tests and benchmarks delete their topics now
(tests/conftest.py, ``BenchEnv.close``); a run killed half-way still leaves some.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from devtools.devstack import kafka
from devtools.devstack.state import ServiceState
from ingest.wiring import quiet_aiokafka

# Over this many partitions `up` and `status` warn: a day of test runs without cleanup made
# ~20,000; the stack's own topics have 54.
CROWDED: Final = 5000
PRUNE_TIMEOUT_S: Final = 300.0

# A test's topic is named by unique_name (``veh_3f9a1c0e2b``, maybe with a suffix:
# ``run_3f9a1c0e2b.vehicle``): "_", ten lower-case hex digits, then "." or the end. At least one
# of the ten must be a letter a-f: ten decimal digits there are a Unix time in seconds
# (``orders_1765130000``), a name people give their own topics; the ~1% of unique names drawn
# all digits are left to ``down --purge``. A benchmark's starts with bench., scale. or fuzz.
# (loadtest/); ``devstack smoke``'s is nev.smoke.<8 hex> (it deletes it; older ones did not).
_LEFT_BY_RUNS: Final = re.compile(
    r"_(?=[0-9]{0,9}[a-f])[0-9a-f]{10}(?:\.|$)"
    r"|^(?:bench|scale|fuzz)\."
    r"|^nev\.smoke\.[0-9a-f]{8}$"
)
# What prune-topics takes, for its --help and the docs.
MATCHES: Final = (
    'names with "_" and then ten lower-case hex digits, at least one of them a letter a-f, at '
    'the end or before a "." (a test\'s unique_name: veh_3f9a1c0e2b, run_3f9a1c0e2b.vehicle); '
    "names beginning with bench., scale. or fuzz. (a benchmark's); nev.smoke. and eight hex "
    "digits (devstack smoke's)"
)


def left_by_runs(name: str, own: Collection[str]) -> bool:
    """Whether ``name`` is a topic a test or a benchmark made: never an internal topic
    (``__consumer_offsets``) nor one of the stack's own (``own``, created by ``up``)."""
    return not name.startswith("__") and name not in own and bool(_LEFT_BY_RUNS.search(name))


async def topic_partitions(bootstrap: str, options: dict[str, Any] | None = None) -> dict[str, int]:
    """Each topic of the broker (internal ones too) and its partition count."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=10000, **(options or {})
    )
    try:
        await admin.start()
        # list_topics sends the same request but keeps only the names
        answer = (await admin._get_cluster_metadata(topics=None)).to_object()
    finally:
        await admin.close()
    return {t["topic"]: len(t["partitions"]) for t in answer["topics"]}


def open_files_limit(pid: int | None) -> int | None:
    """The soft open-file limit of the running process ``pid`` (/proc/<pid>/limits), or None."""
    try:
        lines = Path(f"/proc/{pid}/limits").read_text().splitlines()
    except (OSError, TypeError):
        return None
    for line in lines:
        if line.startswith("Max open files"):
            soft = line.split()[3]
            return int(soft) if soft.isdigit() else None
    return None


@dataclass(frozen=True, slots=True)
class Crowding:
    topics: int
    partitions: int
    leftover_topics: int
    leftover_partitions: int
    open_files: int | None

    def warning(self) -> str | None:
        """What to do when the broker holds more than ``CROWDED`` partitions, else None."""
        if self.partitions <= CROWDED:
            return None
        limit = f"{self.open_files:,}" if self.open_files is not None else "unknown"
        return (
            f"devstack: Kafka holds {self.partitions:,} partitions in {self.topics:,} topics, "
            f"{self.leftover_partitions:,} of them in {self.leftover_topics:,} topics tests and "
            'benchmarks left; each partition keeps files open and the broker dies of "Too many '
            f'open files" near its limit ({limit}). When no test or benchmark runs: '
            "nev-ingest devstack prune-topics (deletes those topics), or nev-ingest devstack "
            "down --purge, then up (deletes all the stack's data, PostgreSQL's too)"
        )


def crowding(svc: ServiceState) -> Crowding:
    """How many topics and partitions the running broker ``svc`` holds, and how many of them
    tests and benchmarks left."""
    with quiet_aiokafka():
        sizes = asyncio.run(topic_partitions(svc.url, kafka.admin_options(svc)))
    own = svc.extra.get("topics", {})
    left = {name: n for name, n in sizes.items() if left_by_runs(name, own)}
    return Crowding(
        topics=len(sizes),
        partitions=sum(sizes.values()),
        leftover_topics=len(left),
        leftover_partitions=sum(left.values()),
        open_files=open_files_limit(svc.pid),
    )


def prune(svc: ServiceState, *, dry_run: bool) -> list[str]:
    """Delete (``dry_run``: only name) the topics tests and benchmarks left on the running
    broker ``svc``; returns their names. A topic a running test still uses goes too: run it
    when none runs."""
    own = svc.extra.get("topics", {})
    options = kafka.admin_options(svc)
    with quiet_aiokafka():
        if dry_run:
            sizes = asyncio.run(topic_partitions(svc.url, options))
            return sorted(name for name in sizes if left_by_runs(name, own))
        # thousands of topics after a day of leaks: more time than a test's few
        doomed = kafka.delete_topics(
            svc.url, lambda name: left_by_runs(name, own), options, timeout_s=PRUNE_TIMEOUT_S
        )
        return asyncio.run(doomed)
