"""Operator secrets: a JSON file readable by its owner alone, or the same JSON in a setting.

    {"MA01H3BQ2": {"OperatorSecret": "...", "DataSecret": "16 characters..",
                   "DataSecretIV": "16 characters..", "SigSecret": "..."}}

The keys are the standard's names. Nothing here logs or prints a secret.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any, Final

import orjson

from ingest.decoders.charger import OPERATOR_ID_RULE, is_operator_id
from ingest.errors import UserError
from ingest.gateway.tcec.envelope import OperatorSecrets

__all__ = ["OperatorsError", "load_operators", "parse_operators"]

_FIELDS: Final = {
    "OperatorSecret": "operator_secret",
    "DataSecret": "data_secret",
    "DataSecretIV": "data_secret_iv",
    "SigSecret": "sig_secret",
}


class OperatorsError(UserError):
    """The operator secrets cannot be used; the message (one line) says what to fix. A
    ``UserError``: ``nev-ingest gateway`` reports it as one line, exit 2."""


def parse_operators(text: str | bytes, origin: str) -> dict[str, OperatorSecrets]:
    """OperatorID -> secrets from the JSON text; ``origin`` names it in errors."""
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise OperatorsError(f"{origin}: not JSON ({exc.msg}); see docs/gateway.md") from None
    if type(doc) is not dict:
        raise OperatorsError(f"{origin}: expected an object of OperatorID -> secrets")
    out: dict[str, OperatorSecrets] = {}
    for op, entry in doc.items():
        if not is_operator_id(op):  # upper case: see ingest.decoders.charger.tcec
            # Renaming the entry alone is not enough: the operator's platform signs its own
            # spelling, so each of its pushes is refused (4003) until it sends the upper case.
            fix = (
                f": write {op.upper()!r}, and have the operator's platform send {op.upper()} "
                "(OperatorID and StartChargeSeq's first 9 characters) too: until it does, "
                "every push it makes is refused (4003; docs/operations.md, Upgrade)"
                if is_operator_id(op.upper())
                else ""
            )
            raise OperatorsError(f"{origin}: {op!r} is not an OperatorID ({OPERATOR_ID_RULE}){fix}")
        if type(entry) is not dict:
            raise OperatorsError(f"{origin}: {op}: expected an object of the four secrets")
        values: dict[str, Any] = {}
        for key, attr in _FIELDS.items():
            v = entry.get(key)
            if type(v) is not str or not v:
                raise OperatorsError(f"{origin}: {op}: {key} is required (text)")
            values[attr] = v
        try:
            out[op] = OperatorSecrets(operator_id=op, **values)
        except ValueError as exc:
            raise OperatorsError(f"{origin}: {exc}") from None
    return out


def load_operators(path: str, inline: str) -> dict[str, OperatorSecrets]:
    """The operators of ``tcec.operators_file`` and of ``tcec.operator_secrets`` (both may be
    given; an OperatorID in both is refused rather than silently overridden)."""
    ops: dict[str, OperatorSecrets] = {}
    if path:
        file = Path(path).expanduser()
        try:
            mode = file.stat().st_mode
            # Secrets other users can read are as good as published: refuse, as ssh does.
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise OperatorsError(
                    f"tcec.operators_file {path} is readable by group or others; "
                    f"run: chmod 600 {path}"
                )
            ops = parse_operators(file.read_bytes(), f"tcec.operators_file {path}")
        except OSError as exc:
            raise OperatorsError(f"tcec.operators_file {path}: {exc.strerror}") from None
    if inline:
        more = parse_operators(inline, "tcec.operator_secrets")
        both = sorted(set(ops) & set(more))
        if both:
            raise OperatorsError(
                f"operators {', '.join(both)} are in both tcec.operators_file and "
                "tcec.operator_secrets; keep each in one place"
            )
        ops.update(more)
    return ops
