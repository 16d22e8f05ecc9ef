"""The dev broker's topic hygiene without a broker: which names ``prune-topics`` takes for a
test's or a benchmark's, when ``up``/``status`` warn, and the open-file limit the broker
starts with (``open_files_raised``)."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import textwrap

import pytest

from devtools.devstack.process import hard_limit_wanted
from devtools.devstack.topics import CROWDED, Crowding, left_by_runs

pytestmark = pytest.mark.unit

OWN = {"nev.vehicle.raw": 12, "nev.dlq": 3}


@pytest.mark.parametrize(
    "name",
    [
        "veh_3f9a1c0e2b",  # unique_name / unique_topic
        "run_3f9a1c0e2b.vehicle",  # a unique name with a role suffix (make_env, BenchEnv)
        "bench.pipeline.1a2b3c4d.vehicle",
        "bench.storm1733600000.vehicle",
        "scale.shards.1a2b3c4d.tcec",
        "fuzz.1a2b3c4d.1.dlq",
        "veh_012345678a",  # one letter among the ten is enough
        "nev.smoke.1a2b3c4d",  # devstack smoke's, from before it deleted its topic
    ],
)
def test_names_tests_and_benchmarks_give_are_pruned(name: str) -> None:
    assert left_by_runs(name, OWN)


@pytest.mark.parametrize(
    "name",
    [
        "nev.vehicle.raw",  # the stack's own
        "nev.dlq",
        "__consumer_offsets",
        "__cluster_metadata",
        "orders",  # a developer's
        "veh_3f9a1c0e2",  # nine hex digits: not a unique name
        "veh_3f9a1c0e2bcd",  # twelve
        "veh_3F9A1C0E2B",  # unique_name gives lower case
        "mybench.pipeline",
        "orders_1765130000",  # a Unix time: ten digits, no letter
        "orders_1765130000.v2",
        "nev.smoke.1a2b3c4d.mine",
    ],
)
def test_other_names_are_kept(name: str) -> None:
    assert not left_by_runs(name, OWN)


def test_no_warning_up_to_the_threshold() -> None:
    assert Crowding(10, CROWDED, 5, CROWDED - 100, 20_000).warning() is None


def test_the_warning_says_how_many_and_what_to_run() -> None:
    text = Crowding(2_400, 21_034, 2_390, 20_980, 20_000).warning()
    assert text is not None
    assert "Kafka holds 21,034 partitions in 2,400 topics" in text
    assert "20,980 of them in 2,390 topics tests and benchmarks left" in text
    assert "(20,000)" in text
    assert "nev-ingest devstack prune-topics" in text
    assert "nev-ingest devstack down --purge" in text


# A child lowers its soft limit (as many systems start it: 1,024 or less), spawns a grandchild
# inside open_files_raised and prints both processes' limits.
CHILD = """
    import json, resource, subprocess, sys
    from devtools.devstack.process import open_files_raised

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
    show = "import json, resource; print(json.dumps(resource.getrlimit(resource.RLIMIT_NOFILE)))"
    with open_files_raised(int(sys.argv[1])) as promised:
        out = subprocess.run(
            [sys.executable, "-c", show], capture_output=True, text=True, check=True
        ).stdout
    print(json.dumps({
        "promised": promised,
        "grandchild": json.loads(out),
        "after": resource.getrlimit(resource.RLIMIT_NOFILE),
        "hard": hard,
    }))
"""


def test_a_spawned_child_gets_the_most_open_files_allowed() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard  # never more than the hard limit: the same for root and everyone else
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(want)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    got = json.loads(out)
    assert got["grandchild"] == [hard, hard]
    assert got["promised"] == hard
    assert got["after"] == [min(256, hard), hard], "the caller's own limits are restored"


@pytest.mark.parametrize(
    ("hard", "want", "nr_open", "asked"),
    [
        (20_000, 1_048_576, 1_048_576, 1_048_576),  # raised where permitted
        (20_000, 2_000_000, 1_048_576, 1_048_576),  # at most fs.nr_open: the kernel refuses more
        (20_000, 2_000_000, None, 2_000_000),  # fs.nr_open unknown: ask, the OS may refuse
        (2_000_000, 1_048_576, 1_048_576, None),  # already higher: never lowered
        (resource.RLIM_INFINITY, 1_048_576, 1_048_576, None),  # unlimited stays unlimited
        (1_048_576, 2_000_000, 1_048_576, None),  # at fs.nr_open already
    ],
)
def test_the_hard_limit_asked_for(
    hard: int, want: int, nr_open: int | None, asked: int | None
) -> None:
    assert hard_limit_wanted(hard, want, nr_open) == asked
