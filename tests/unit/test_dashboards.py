"""The Grafana dashboards (devtools/dashboards -> deploy/grafana/dashboards): the committed JSON
is what the source exports now, it reads back into grafana-foundation-sdk's typed model (the
schema check the library offers) unchanged, and its panels are well-formed for provisioning:
unique ids, inside the 24-column grid, every query on a provisioned data source."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from devtools.dashboards import DASHBOARDS, OUT_DIR, panel_targets, render
from devtools.dashboards.__main__ import main

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "datasources.yml"
SCRAPE_JOBS = set(
    re.findall(
        r"^\s*- job_name: ([\w-]+)",
        (ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text(),
        flags=re.M,
    )
)


def _load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((OUT_DIR / name).read_text(encoding="utf-8"))
    return doc


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_committed_json_equals_a_fresh_export(name: str) -> None:
    assert (OUT_DIR / name).read_text(encoding="utf-8") == render(DASHBOARDS[name]()), (
        f"deploy/grafana/dashboards/{name} is stale: run ./dev dashboards"
    )


def test_check_mode_reports_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["--check"]) == 0
    stale = tmp_path / "dashboards"
    stale.mkdir()
    for name in DASHBOARDS:
        (stale / name).write_text((OUT_DIR / name).read_text().replace("p99", "p98"))
    monkeypatch.setattr("devtools.dashboards.__main__.OUT_DIR", stale)
    assert main(["--check"]) == 1


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_reads_back_into_the_sdk_model_unchanged(name: str) -> None:
    doc = _load(name)
    back = json.loads(json.dumps(Dashboard.from_json(doc), cls=JSONEncoder))
    assert back == doc
    assert doc["schemaVersion"] == 36  # Grafana 10.x/11.x dashboards; newer Grafana migrates up


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_panels_are_well_formed_for_provisioning(name: str) -> None:
    doc = _load(name)
    uids = set(re.findall(r"^\s+uid: (\S+)$", DATASOURCES.read_text(), flags=re.M))
    assert uids == {"nev-prometheus", "nev-postgres"}
    panels = doc["panels"]
    ids = [p["id"] for p in panels]
    assert ids == list(range(1, len(panels) + 1))
    assert len({doc["uid"] for doc in map(_load, DASHBOARDS)}) == len(DASHBOARDS)
    for p in panels:
        grid = p["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, p["title"]
        if p["type"] != "row":
            assert p["options"], f"{p['title']}: options null"
            assert p["description"], f"{p['title']}: say what the panel shows"
            assert p["datasource"]["uid"] in uids, p["title"]
    targets = list(panel_targets(doc))
    assert targets
    assert {"nev-ingest", "nev-gateway"} == SCRAPE_JOBS
    for title, target in targets:
        assert target["datasource"]["uid"] in uids, title
        if target["datasource"]["uid"] == "nev-prometheus":
            # Only our scrape jobs (kafka_exporter uses the same lag metric names): the
            # service's, or the gateway's, as deploy/prometheus/prometheus.yml names them.
            jobs = set(re.findall(r'job="([^"]+)"', target["expr"]))
            assert len(jobs) == 1 and jobs <= SCRAPE_JOBS, title
        else:
            assert target["rawSql"].startswith("SELECT"), title
