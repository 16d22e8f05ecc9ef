"""Vehicle models for rules scoped by ``model`` (docs/alerts.md): the registration data's VIN ->
model, from a JSON object file (``alerts.models_file``; ``rules test --models``).

GB/T 32960 frames carry no model, so without this file a rule scoped by model alone would
never apply: ``run`` refuses such a rule set when no file is configured
(``check_model_scopes``) instead of leaving a safety rule silent. A rule scoped by both
``vin_prefix`` and ``model`` still applies to its prefixes (any match applies a rule): it is
taken, with a warning that its model part matches nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import orjson

from alerts import RuleSet
from ingest.errors import UserError

__all__ = ["check_model_scopes", "load_models", "parse_models"]

log = logging.getLogger(__name__)

# The mixed-scope rule sets already warned of in this process: a worker reloads its rules on
# every SIGHUP, and the same warning each time would be noise.
_warned: set[tuple[str, ...]] = set()


def load_models(path: str, what: str = "alerts.models_file") -> dict[str, str]:
    """The file's VIN -> model, or a one-line ``UserError`` naming ``what``."""
    try:
        content = Path(path).read_bytes()
    except OSError as exc:
        raise UserError(f"{what} {path}: cannot read it ({exc.strerror})") from None
    return parse_models(content, path, what)


def parse_models(content: bytes, path: str, what: str = "alerts.models_file") -> dict[str, str]:
    """``content`` of the file at ``path``: its VIN -> model, or a one-line ``UserError``."""
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise UserError(f"{what} {path}: not JSON ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(m, str) for m in data.values()):
        raise UserError(
            f'{what} {path}: expected a JSON object of VIN -> model, like {{"LSV...": "BYD-HAN"}}'
        )
    return data


def check_model_scopes(rules: RuleSet, models_file: str) -> None:
    """Refuse rules scoped by model alone when there is no models file to tell a VIN's model;
    warn (once per process) of those scoped by ``vin_prefix`` too, whose model part then
    matches nothing."""
    if models_file:
        return
    scoped = [r.id for r in rules.rules if r.scope.models and not r.scope.vin_prefixes]
    if scoped:
        raise UserError(
            f"rules scoped by model alone ({_ids(scoped)}) would never apply: frames carry no"
            " vehicle model. Set alerts.models_file to a JSON object of VIN -> model (the"
            " registration data), or scope them by vin_prefix"
        )
    mixed = tuple(r.id for r in rules.rules if r.scope.models and r.scope.vin_prefixes)
    if mixed and mixed not in _warned:
        _warned.add(mixed)
        log.warning(
            "rules scoped by vin_prefix and model (%s) apply to their VIN prefixes only: frames "
            "carry no vehicle model. Set alerts.models_file to a JSON object of VIN -> model "
            "(the registration data) for the model part to match",
            _ids(mixed),
        )


def _ids(ids: Sequence[str]) -> str:
    return ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
