"""``devstack prune-topics`` and the crowding count on a broker of the test's own (never the
shared dev broker: pruning there would take other runs' topics): it deletes the topics tests
and benchmarks left and nothing else, and ``up``/``status`` warn over the threshold. (The
broker's open-file limit says nothing about ``open_files_raised``: the JVM raises its soft limit
to the hard one by itself, -XX:+MaxFDLimit. tests/unit/test_devstack_topics.py tests it in a
child that lowered its soft limit to 256.)"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.devstack import kafka, topics
from devtools.devstack.cli import _warn_if_crowded
from devtools.devstack.state import StackState
from devtools.settings import load_dev_settings
from tests.conftest import run_async
from tests.integration.private_services import PrivateKafka

pytestmark = pytest.mark.integration

LEFT = [
    "veh_3f9a1c0e2b",
    "run_01234567ab.vehicle",
    "bench.pipeline.1a2b3c4d.vehicle",
    "scale.shards.1a2b3c4d.tcec",
    "fuzz.1a2b3c4d.1.dlq",
    "nev.smoke.1a2b3c4d",
]
KEPT = ["orders", "veh_notahexname", "mybench.pipeline", "orders_1765130000"]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateKafka]:
    """One broker for the module (each start costs the shared machine a JVM's start-up)."""
    kafka = PrivateKafka(tmp_path_factory.mktemp("prune") / "kafka")
    try:
        yield kafka
    finally:
        kafka.stop()


@pytest.fixture
def stack_dir(broker: PrivateKafka, tmp_path: Path) -> Path:
    """A state directory whose stack is the private broker, with the test's topics on it."""
    run_async(kafka.ensure_topics(broker.bootstrap, {n: 2 for n in LEFT + KEPT}, 1))
    state = StackState(tmp_path / "stack", {"kafka": broker.state})
    state.save()
    return state.state_dir


def _prune_topics(stack_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``nev-ingest devstack prune-topics`` on the stack of ``stack_dir``, in a process."""
    return subprocess.run(
        [sys.executable, "-m", "ingest", "devstack", "prune-topics", *args],
        env={**os.environ, "NEV_DEVSTACK_STATE_DIR": str(stack_dir)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_prune_deletes_what_tests_and_benchmarks_left_and_nothing_else(
    broker: PrivateKafka, stack_dir: Path
) -> None:
    before = run_async(topics.topic_partitions(broker.bootstrap))
    counted = topics.crowding(broker.state)
    assert (counted.leftover_topics, counted.leftover_partitions) == (6, 12)
    assert counted.partitions == sum(before.values())

    dry = _prune_topics(stack_dir, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.split() == sorted(LEFT)
    assert "would delete 6 topics" in dry.stderr
    assert run_async(topics.topic_partitions(broker.bootstrap)) == before

    done = _prune_topics(stack_dir)
    assert done.returncode == 0, done.stderr
    assert "deleted 6 topics" in done.stderr
    after = run_async(topics.topic_partitions(broker.bootstrap))
    assert after == {name: n for name, n in before.items() if name not in LEFT}
    assert set(KEPT) | set(broker.state.extra["topics"]) <= after.keys()


def test_status_warns_over_the_threshold(
    broker: PrivateKafka,
    stack_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = load_dev_settings(environ={"NEV_DEVSTACK_STATE_DIR": str(stack_dir)})
    _warn_if_crowded(settings)
    assert capsys.readouterr().err == ""  # a handful of partitions: nothing to say

    # The threshold, not the broker, is what this test changes: thousands of partitions
    # would cost the shared machine minutes.
    monkeypatch.setattr(topics, "CROWDED", 20)
    _warn_if_crowded(settings)
    err = capsys.readouterr().err
    assert "12 of them in 6 topics tests and benchmarks left" in err
    assert "nev-ingest devstack prune-topics" in err
