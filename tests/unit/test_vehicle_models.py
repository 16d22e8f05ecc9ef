"""Rules scoped by vehicle model: the models file (``alerts.models_file``) reaches the pipeline's
engines, and a rule set scoped by model without it is refused at start, not left silent."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest

from alerts.frames import build_frame
from ingest.cli.run import check_rules
from ingest.config.load import load_settings
from ingest.errors import UserError
from ingest.pipeline.metrics import PipelineMetrics
from ingest.pipeline.storage_sink import StorageSink

pytestmark = pytest.mark.unit

VIN = "LTEST000000000001"
SCOPED = """
[[rule]]
id = "hot_han"
kind = "threshold"
severity = "major"
field = "max_temp_c"
value = 60
model = "BYD-HAN"
"""


def files(tmp_path: Path, models: object | None) -> dict[str, str]:
    rules = tmp_path / "rules.toml"
    rules.write_text(SCOPED)
    env = {"NEV_ALERTS_RULES_FILE": str(rules)}
    if models is not None:
        path = tmp_path / "models.json"
        path.write_bytes(orjson.dumps(models))
        env["NEV_ALERTS_MODELS_FILE"] = str(path)
    return env


def test_the_pipelines_engine_applies_a_rule_scoped_by_model(tmp_path: Path) -> None:
    env = files(tmp_path, {VIN: "BYD-HAN", "LOTHER00000000001": "OTHER"})
    check_rules(load_settings(environ=env))
    sink = StorageSink.from_settings(load_settings(environ=env), metrics=PipelineMetrics())
    sink._build_engines(sink._load_rules())
    engine = sink._engines["vehicle"]
    hot = [build_frame(v, 1_782_835_200_000, max_temp_c=80) for v in (VIN, "LOTHER00000000001")]
    changes = engine.evaluate(hot)
    assert [(c.type, c.alert.entity_id) for c in changes] == [("raised", VIN)]


def test_a_rule_scoped_by_model_without_a_models_file_is_refused_at_start(
    tmp_path: Path,
) -> None:
    with pytest.raises(UserError, match=r"hot_han.*alerts\.models_file"):
        check_rules(load_settings(environ=files(tmp_path, None)))


@pytest.mark.parametrize("models", [[VIN], {VIN: 5}])
def test_a_models_file_of_the_wrong_shape_is_one_line(tmp_path: Path, models: object) -> None:
    with pytest.raises(UserError, match="expected a JSON object of VIN -> model"):
        check_rules(load_settings(environ=files(tmp_path, models)))


MIXED = """
[[rule]]
id = "hot_lfv_or_han"
kind = "threshold"
severity = "major"
field = "max_temp_c"
value = 60
vin_prefix = "LFV"
model = "BYD-HAN"
"""


def test_a_rule_scoped_by_prefix_and_model_applies_by_prefix_without_a_models_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Any scope match applies a rule (docs/alerts.md): the prefix part works without models,
    # so the rule is taken, with one warning that its model part matches nothing. It was
    # refused as if it could never apply.
    rules = tmp_path / "rules.toml"
    rules.write_text(MIXED)
    env = {"NEV_ALERTS_RULES_FILE": str(rules)}
    with caplog.at_level(logging.WARNING, logger="ingest.pipeline.vehicle_models"):
        check_rules(load_settings(environ=env))
        sink = StorageSink.from_settings(load_settings(environ=env), metrics=PipelineMetrics())
        sink._build_engines(sink._load_rules())  # a worker's load: warned already
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "hot_lfv_or_han" in warnings[0], warnings
    assert "alerts.models_file" in warnings[0]
    lfv = "LFV00000000000001"
    hot = [build_frame(v, 1_782_835_200_000, max_temp_c=80) for v in (lfv, VIN)]
    changes = sink._engines["vehicle"].evaluate(hot)
    assert [(c.type, c.alert.entity_id) for c in changes] == [("raised", lfv)]
