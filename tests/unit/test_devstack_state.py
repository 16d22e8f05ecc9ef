"""The dev stack's state file: a damaged or foreign ``state.json`` reads as "nothing known"
(so ``status`` and ``down`` still work), and a good one round-trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.devstack.kafka import new_cluster_id
from devtools.devstack.state import ServiceState, StackState

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[1, 2]",
        '{"version": 1}',
        '{"version": 1, "services": []}',
        '{"version": 1, "services": {"kafka": {"name": "kafka"}}}',
        '{"version": 1, "services": {"kafka": {"name": "kafka", "port": 1, "url": "u",'
        ' "log": "l", "colour": "red"}}}',
    ],
)
def test_a_damaged_state_file_reads_as_empty(tmp_path: Path, text: str) -> None:
    (tmp_path / "state.json").write_text(text)
    assert StackState.load(tmp_path).services == {}


def test_state_round_trips(tmp_path: Path) -> None:
    state = StackState(tmp_path)
    state.services["kafka"] = ServiceState("kafka", 9092, "127.0.0.1:9092", "k.log", extra={"a": 1})
    state.save()
    assert StackState.load(tmp_path).services == state.services


def test_kafka_cluster_ids_never_look_like_an_option() -> None:
    # One random id in 64 starts with "-" and the storage tool then refuses it ("--cluster-id:
    # expected one argument"): a dev stack or test broker failed to start now and then.
    ids = [new_cluster_id() for _ in range(2000)]
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(i) == 22 for i in ids) and len(set(ids)) == len(ids)
