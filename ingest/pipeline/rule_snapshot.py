"""The rules in force: the last ``alerts.rules_file`` (and ``alerts.models_file``) the service
accepted, kept as a copy the workers read.

Workers used to read the operator's files themselves, at their start and on SIGHUP. A file
refused on SIGHUP left the old rules in the running workers, but every worker started after
that (a crash, a kill) read the broken file, failed, and was restarted into the same failure:
ingestion stopped. Now the supervisor reads and checks the files (at start, on SIGHUP) and, when
they are good, copies them here; the workers load the copies. A refused file changes nothing,
for running and restarted workers alike, until a good one is accepted.
"""

from __future__ import annotations

import os
from pathlib import Path

from alerts import RuleFileError, RuleSet
from ingest.errors import UserError, not_utf8
from ingest.pipeline.vehicle_models import check_model_scopes, parse_models

__all__ = ["RuleSnapshot", "accepted_rules"]


def accepted_rules(rules_file: str, models_file: str) -> tuple[bytes, bytes, RuleSet]:
    """The content of both files (empty for a file not configured) and the rule set, once both
    were read and checked together; else a one-line ``UserError`` naming the file (and, for
    a rule file, the line)."""
    rules_text = _read(rules_file, "alerts.rules_file") if rules_file else b""
    try:
        rules = (
            RuleSet.from_toml(rules_text.decode("utf-8"), rules_file)
            if rules_file
            else RuleSet.default()
        )
    except UnicodeDecodeError as exc:
        raise not_utf8(f"alerts.rules_file = {rules_file}", exc) from None
    except RecursionError:
        # tomllib parses nested arrays and inline tables recursively; no rule nests deeply.
        raise UserError(
            f"alerts.rules_file = {rules_file}: arrays or tables nested too deeply"
        ) from None
    except RuleFileError as exc:
        raise UserError(
            f"alerts.rules_file = {rules_file}: {exc}; see `nev-ingest rules check {rules_file}`"
        ) from None
    check_model_scopes(rules, models_file)
    models = _read(models_file, "alerts.models_file") if models_file else b""
    if models_file:
        parse_models(models, models_file)
    return rules_text, models, rules


def _read(path: str, key: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UserError(f"{key} = {path}: cannot read it ({exc.strerror})") from None


class RuleSnapshot:
    """Copies of the accepted files in ``directory`` (the service's own, removed at exit)."""

    def __init__(self, directory: Path, rules_file: str, models_file: str) -> None:
        self._dir = directory
        self._rules_file = rules_file
        self._models_file = models_file
        # The copies keep the files' names: a worker's log lines name them.
        self.rules_path = str(directory / Path(rules_file).name) if rules_file else ""
        self.models_path = str(directory / Path(models_file).name) if models_file else ""
        if self.rules_path and self.rules_path == self.models_path:
            self.models_path = str(directory / f"models-{Path(models_file).name}")

    def refresh(self) -> str:
        """Read and check the operator's files; when good, make them the ones in force (each
        copy replaced whole: a worker starting meanwhile reads the old or the new file, never
        half of one). Returns what was accepted; ``UserError`` when refused."""
        rules_text, models, rules = accepted_rules(self._rules_file, self._models_file)
        if self.rules_path:
            _replace(Path(self.rules_path), rules_text)
        if self.models_path:
            _replace(Path(self.models_path), models)
        source = self._rules_file or "the built-in default set"
        return f"rules accepted from {source}: {len(rules.rules)} rules"


def _replace(path: Path, content: bytes) -> None:
    tmp = path.with_name(f".{path.name}.new")
    tmp.write_bytes(content)
    os.replace(tmp, path)
