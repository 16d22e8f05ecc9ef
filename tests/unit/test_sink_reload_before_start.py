"""SIGHUP reaching a worker whose sink has not started (it waits for its databases): the reload
says what is true, not that alerts are disabled."""

from __future__ import annotations

import pytest

from ingest.config.load import load_settings
from ingest.pipeline.metrics import PipelineMetrics
from ingest.pipeline.storage_sink import StorageSink

pytestmark = pytest.mark.unit


def _sink(enabled: str) -> StorageSink:
    settings = load_settings(environ={"NEV_ALERTS_ENABLED": enabled})
    return StorageSink.from_settings(settings, metrics=PipelineMetrics())


def test_a_reload_before_the_start_says_the_worker_is_starting() -> None:
    said = _sink("true").reload_rules()
    assert "disabled" not in said, said
    assert said.startswith("rules not loaded yet (the worker is still starting)"), said
    assert "loads the rules in force when it starts" in said


def test_a_reload_with_alerts_off_says_they_are_off() -> None:
    said = _sink("false").reload_rules()
    assert said == "alerts are disabled (alerts.enabled = false): nothing to reload"
