"""The rules in force: a refused file changes nothing the workers load; a worker that cannot
load its rules stops with one line naming the file and the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts import RuleFileError, RuleSet
from ingest.errors import UserError
from ingest.pipeline.process import _one_line_error
from ingest.pipeline.rule_snapshot import RuleSnapshot

pytestmark = pytest.mark.unit

_RULES = """version = 1

[[rule]]
id = "hot"
kind = "threshold"
severity = "major"
title = "Hot pack"
source = "test"
field = "max_temp_c"
op = ">="
value = 50
"""


def test_a_refused_file_leaves_the_rules_in_force_as_they_were(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(_RULES)
    models = tmp_path / "models.json"
    models.write_text('{"LSV1": "M1"}')
    snap = RuleSnapshot(tmp_path / "in-force", rules_file=str(rules), models_file=str(models))
    (tmp_path / "in-force").mkdir()
    assert snap.refresh() == f"rules accepted from {rules}: 1 rules"
    assert Path(snap.rules_path).read_text() == _RULES
    assert Path(snap.models_path).read_text() == '{"LSV1": "M1"}'

    rules.write_text(_RULES.replace("value = 50", "value = "))
    with pytest.raises(UserError, match=rf"alerts.rules_file = {rules}: .*rules.toml:11"):
        snap.refresh()
    models.write_text("[1, 2]")
    rules.write_text(_RULES.replace("50", "60"))
    with pytest.raises(UserError, match=r"alerts\.models_file"):
        snap.refresh()  # both files are checked before either copy changes
    assert Path(snap.rules_path).read_text() == _RULES
    assert Path(snap.models_path).read_text() == '{"LSV1": "M1"}'


def test_a_rule_file_a_worker_cannot_load_is_one_line() -> None:
    with pytest.raises(RuleFileError) as caught:
        RuleSet.from_toml(_RULES.replace("value = 50", "value = "), "/etc/nev/rules.toml")
    group = ExceptionGroup("worker", [ValueError("other"), caught.value])
    found = _one_line_error(group)
    assert found is caught.value
    assert "/etc/nev/rules.toml:11" in str(found)
