"""The topics a test creates on the dev broker are deleted after it (tests/conftest.py's
``pytest_runtest_teardown``), after every fixture of the test is torn down, and a failed
delete does not fail the test. Each case runs a small test session of its own in a subprocess
with tests/conftest.py as its plugin, on the same broker, and looks at the broker afterwards.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from devtools.devstack import ENV_KAFKA, StackState, stack
from devtools.devstack.topics import topic_partitions
from devtools.settings import load_dev_settings
from tests.conftest import run_async

pytestmark = pytest.mark.integration

# Three ways a test makes topics: unique_topic; ensure_topics with a derived name (as
# make_env's and the benchmarks' "<name>.<role>"); and a fixture set up BEFORE unique_topic
# (a service reading the topic) that must still find its topic when it is torn down.
INNER = """
import json, os
from pathlib import Path

import pytest

from devtools.devstack.kafka import ensure_topics
from devtools.devstack.topics import topic_partitions
from tests.conftest import run_async

pytestmark = pytest.mark.integration


def _made(*names):
    with open(os.environ["MADE_TOPICS"], "a") as out:
        for name in names:
            out.write(json.dumps(name) + "\\n")


@pytest.fixture
def reader(kafka_bootstrap):
    box = []
    yield box
    # torn down after unique_topic (set up before it): the topic must still be there
    listed = set(run_async(topic_partitions(kafka_bootstrap)))
    assert set(box) <= listed, "deleted under its reader"


def test_made_by_the_fixture_and_directly(unique_topic, unique_name, kafka_bootstrap):
    derived = unique_name("leak") + ".veh"
    run_async(ensure_topics(kafka_bootstrap, {derived: 1}, replication_factor=1))
    _made(unique_topic(2, "leak"), derived)


def test_read_by_an_earlier_fixture(reader, unique_topic):
    topic = unique_topic(1, "held")
    reader.append(topic)
    _made(topic)
"""

# The broker cannot be reached: the delete fails, is logged, and the test still passes.
INNER_AWAY = """
import pytest

pytestmark = pytest.mark.integration


def test_uses_the_broker(kafka_bootstrap, unique_name):
    unique_name("away")
"""

# The session starts a broker of its own (kafka_bootstrap without NEV_KAFKA_BOOTSTRAP_SERVERS)
# and stops it at its end: within the teardown of its last (here: only) test.
INNER_OWN_BROKER = """
import json, os

import pytest

pytestmark = pytest.mark.integration


def test_the_last_one(unique_topic):
    with open(os.environ["MADE_TOPICS"], "a") as out:
        out.write(json.dumps(unique_topic(1, "last")) + "\\n")
"""

ARGS = ["-p", "tests.conftest", "-p", "no:cacheprovider", "-q"]
# The cleanup's WARNING on stdout, for the failed-delete case to read.
LOG = ["-o", "log_cli=true", "-o", "log_cli_level=WARNING"]

INI = """[pytest]
markers =
    unit: pure
    integration: services
"""


def _session(tmp: Path, source: str, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    (tmp / "pytest.ini").write_text(INI)
    (tmp / "test_inner.py").write_text(textwrap.dedent(source))
    return subprocess.run(
        [sys.executable, "-m", "pytest", *ARGS, *LOG, "test_inner.py"],
        cwd=tmp,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


async def test_a_tests_topics_are_deleted_after_its_fixtures(
    kafka_bootstrap: str, unique_topic: Callable[..., str], tmp_path: Path
) -> None:
    ours = unique_topic(1, "outer")  # another test's topic, which the inner run must not touch
    made = tmp_path / "made.jsonl"
    environ = {**os.environ, ENV_KAFKA: kafka_bootstrap, "MADE_TOPICS": str(made)}

    result = _session(tmp_path, INNER, environ)

    assert result.returncode == 0, result.stdout + result.stderr
    names = [json.loads(line) for line in made.read_text().splitlines()]
    assert len(names) == 3, names
    listed = set(await topic_partitions(kafka_bootstrap))
    assert not set(names) & listed, f"left behind: {sorted(set(names) & listed)}"
    assert ours in listed


def test_a_failed_delete_is_logged_and_the_test_passes(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        away = f"127.0.0.1:{s.getsockname()[1]}"
    environ = {**os.environ, ENV_KAFKA: away}

    result = _session(tmp_path, INNER_AWAY, environ)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "could not delete the topics of test_inner.py::test_uses_the_broker" in result.stdout


def test_the_last_tests_topics_go_before_the_broker_the_session_started_stops(
    tmp_path: Path,
) -> None:
    made = tmp_path / "made.jsonl"
    # A stack of the test's own (never the shared one, which a test must not stop).
    own = {"NEV_DEVSTACK_STATE_DIR": str(tmp_path / "stack"), "NEV_DEVSTACK_KAFKA_HEAP": "512m"}
    environ = {k: v for k, v in os.environ.items() if k != ENV_KAFKA}
    settings = load_dev_settings(environ={**environ, **own})
    inner = tmp_path / "inner"
    inner.mkdir()
    try:
        result = _session(inner, INNER_OWN_BROKER, {**environ, **own, "MADE_TOPICS": str(made)})
        assert result.returncode == 0, result.stdout + result.stderr
        stopped = StackState.load(stack.Paths.from_settings(settings).state_dir)
        assert stopped.running("kafka") is None, "the session stopped the broker it started"
        # The same broker again (its data kept): what the session left on it.
        state = stack.up(settings, only=("kafka",), report=False)
        listed = set(run_async(topic_partitions(state.services["kafka"].url)))
    finally:
        stack.down(settings, only=("kafka",), report=False)
    names = [json.loads(line) for line in made.read_text().splitlines()]
    assert len(names) == 1, names
    assert not set(names) & listed, f"left behind: {sorted(set(names) & listed)}"
