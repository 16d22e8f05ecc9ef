"""The Prometheus alert rules (deploy/prometheus/alerts.yml) with the Debian ``prometheus``
package's promtool (installed by ./dev setup): the rules and the example configuration load,
every alert has unit tests that see it fire and see it not fire, the unit tests pass, and every
alert's runbook_url points at an existing runbook entry of docs/operations.md."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROM_DIR = ROOT / "deploy" / "prometheus"
RULES = PROM_DIR / "alerts.yml"
RULE_TESTS = sorted((PROM_DIR / "tests").glob("*.yml"))
OPERATIONS = ROOT / "docs" / "operations.md"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool not found: run ./dev setup (installs the Debian prometheus package)"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=120, check=False)


def _alert_names() -> list[str]:
    return re.findall(r"^\s*- alert: (\w+)\s*$", RULES.read_text(), flags=re.M)


def test_rules_and_example_config_are_valid() -> None:
    rules = _promtool("check", "rules", str(RULES))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert f"SUCCESS: {len(_alert_names())} rules found" in rules.stdout
    config = _promtool("check", "config", str(PROM_DIR / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for name, empty in re.findall(
            r"alertname: (\w+)\n\s+exp_alerts:( \[\])?", path.read_text()
        ):
            (quiet if empty else firing).add(name)
    names = set(_alert_names())
    assert len(names) >= 10, names
    assert names - firing == set(), "alerts without a test where they fire"
    assert names - quiet == set(), "alerts without a test where they must not fire"
    assert (firing | quiet) - names == set(), "tests of alerts that do not exist"


def test_rule_unit_tests_pass() -> None:
    assert RULE_TESTS, "no promtool unit tests in deploy/prometheus/tests"
    result = _promtool("test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS), result.stdout


def test_promtool_catches_a_broken_rule(tmp_path: Path) -> None:
    # The unit tests must be able to fail: the same tests against rules whose lag threshold
    # moved (60 s -> 600 s) report the lag alert missing.
    broken = tmp_path / "alerts.yml"
    text = RULES.read_text()
    assert 'kafka_consumergroup_lag_seconds{job="nev-ingest"}) > 60' in text
    broken.write_text(
        text.replace('lag_seconds{job="nev-ingest"}) > 60', 'lag_seconds{job="nev-ingest"}) > 600')
    )
    tests_dir = tmp_path / "tests"
    tests_dir.mkdir()
    for path in RULE_TESTS:
        shutil.copy(path, tests_dir / path.name)
    result = _promtool("test", "rules", *(str(tests_dir / p.name) for p in RULE_TESTS))
    assert result.returncode != 0
    assert "NevIngestLagGrowing" in result.stdout + result.stderr


def _slug(heading: str) -> str:
    """The anchor a Markdown renderer (GitHub's rules) gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_every_alert_links_an_existing_runbook_entry() -> None:
    text = RULES.read_text()
    urls = re.findall(r"runbook_url: (\S+)", text)
    assert len(urls) == len(_alert_names()), "every alert needs a runbook_url"
    anchors = {_slug(h) for h in re.findall(r"^#{2,4} (.+)$", OPERATIONS.read_text(), flags=re.M)}
    for name, url in zip(_alert_names(), urls, strict=True):
        path, _, anchor = url.partition("#")
        assert path == "docs/operations.md", url
        assert anchor == name.lower(), f"{name}: runbook_url {url} is not its own entry"
        assert anchor in anchors, f"{name}: no heading '{name}' in docs/operations.md"
