"""The JSON view of charger rows (``nev-ingest decode --profile charger|tcec``): what the
pipeline stores from one frame or push, one object, rows by table."""

from __future__ import annotations

from typing import Any, Final

from contract.charger import ChargerRows

__all__ = ["charger_rows_to_dict"]

_TABLES: Final = ("connectors", "statuses", "telemetry", "sessions", "faults")


def charger_rows_to_dict(rows: ChargerRows, profile: str = "charger") -> dict[str, Any]:
    """``rows`` as a JSON-ready dict: the operator, a frame's envelope fields (a T/CEC push
    has none), then each row list as objects keyed by column name (times stay ``datetime``:
    orjson writes them as ISO 8601)."""
    out: dict[str, Any] = {"profile": profile, "operator_id": rows.operator_id}
    if rows.charger_id:
        out["charger_id"] = rows.charger_id
        out["command"] = rows.command
        out["response"] = rows.response
        out["encrypted"] = rows.encrypted
        out["ts_ms"] = rows.ts_ms
    for name in _TABLES:
        out[name] = [r._asdict() for r in getattr(rows, name)]
    return out
