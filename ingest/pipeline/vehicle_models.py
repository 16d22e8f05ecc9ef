"""Vehicle models for rules scoped by ``model`` (docs/alerts.md): the registration data's VIN ->
model, from a JSON object file (``alerts.models_file``; ``rules test --models``).

GB/T 32960 frames carry no model, so without this file a rule scoped by model alone would
never apply: ``run`` refuses such a rule set when no file is configured
(``check_model_scopes``) instead of leaving a safety rule silent.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from alerts import RuleSet
from ingest.errors import UserError

__all__ = ["check_model_scopes", "load_models"]


def load_models(path: str, what: str = "alerts.models_file") -> dict[str, str]:
    """The file's VIN -> model, or a one-line ``UserError`` naming ``what``."""
    try:
        data = orjson.loads(Path(path).read_bytes())
    except OSError as exc:
        raise UserError(f"{what} {path}: cannot read it ({exc.strerror})") from None
    except orjson.JSONDecodeError as exc:
        raise UserError(f"{what} {path}: not JSON ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(m, str) for m in data.values()):
        raise UserError(
            f'{what} {path}: expected a JSON object of VIN -> model, like {{"LSV...": "BYD-HAN"}}'
        )
    return data


def check_model_scopes(rules: RuleSet, models_file: str) -> None:
    """Refuse rules scoped by model when there is no models file to tell a VIN's model."""
    scoped = [r.id for r in rules.rules if r.scope.models]
    if scoped and not models_file:
        raise UserError(
            f"rules scoped by model ({', '.join(scoped[:5])}{', ...' if len(scoped) > 5 else ''})"
            " would never apply: frames carry no vehicle model. Set alerts.models_file to a JSON"
            " object of VIN -> model (the registration data), or scope them by vin_prefix"
        )
