"""Grafana dashboards as code (grafana-foundation-sdk), exported to the JSON Grafana
provisions from deploy/grafana/dashboards/ (``./dev dashboards``; a test checks the committed
JSON equals a fresh export).

``DASHBOARDS`` maps a file name to its builder; ``render`` is the exact committed text."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from devtools.dashboards import ops, regulator

__all__ = ["DASHBOARDS", "OUT_DIR", "export", "panel_targets", "render"]

OUT_DIR: Final = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards"
DASHBOARDS: Final[dict[str, Callable[[], dashboard.Dashboard]]] = {
    "ops.json": ops.build,
    "regulator.json": regulator.build,
}


def render(builder: dashboard.Dashboard) -> str:
    """The dashboard's JSON as committed: sorted keys, 2-space indent, final newline.

    Panels (rows too) are numbered 1, 2, ... in grid order: the builders leave rows at id 0 and
    panels without one, and Grafana links and embeds a panel by its id."""
    model = builder.build()
    for number, panel in enumerate(model.panels or [], start=1):
        panel.id_val = number
    return json.dumps(model, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def export(out_dir: Path = OUT_DIR) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, build in DASHBOARDS.items():
        path = out_dir / name
        path.write_text(render(build()), encoding="utf-8")
        written.append(path)
    return written


def panel_targets(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(panel title, target) of every query of an exported dashboard, rows included."""
    for panel in doc.get("panels", []):
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                yield str(inner.get("title", "")), target
