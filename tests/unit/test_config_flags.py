"""A subcommand's own flags and ``--set``: a flag not given leaves the key's ``--set`` alone, a
flag given wins over it."""

from __future__ import annotations

import pytest

from ingest.cli import build_parser
from ingest.cli.gateway import gateway_settings
from ingest.cli.run import run_settings

pytestmark = pytest.mark.unit


def test_run_keeps_set_of_keys_with_their_own_flag() -> None:
    argv = "run --set kafka.group_id=replay --set pipeline.workers=4 --set metrics.port=9999"
    args = build_parser("run").parse_args(argv.split())
    settings = run_settings(args)
    assert settings.kafka.group_id == "replay"
    assert settings.pipeline.workers == 4
    assert settings.metrics.port == 9999


def test_run_flag_given_wins_over_set() -> None:
    argv = "run --set kafka.group_id=replay --group other --workers 2 --set pipeline.workers=4"
    args = build_parser("run").parse_args(argv.split())
    settings = run_settings(args)
    assert settings.kafka.group_id == "other"
    assert settings.pipeline.workers == 2


@pytest.mark.parametrize("action", [[], ["run"]])
def test_gateway_keeps_set_of_keys_with_their_own_flag(action: list[str]) -> None:
    sets = ["--set", "gateway.listen_vehicle=127.0.0.1:1", "--set", "gateway.metrics_port=1234"]
    args = build_parser("gateway").parse_args(["gateway", *action, *sets])
    settings = gateway_settings(args)
    assert settings.gateway.listen_vehicle == "127.0.0.1:1"
    assert settings.gateway.metrics_port == 1234


def test_gateway_flag_given_wins_over_set() -> None:
    args = build_parser("gateway").parse_args(
        ["gateway", "--set", "gateway.listen_vehicle=127.0.0.1:1", "--listen", "127.0.0.1:2"]
    )
    assert gateway_settings(args).gateway.listen_vehicle == "127.0.0.1:2"
