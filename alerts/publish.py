"""Messages for the ``nev.alerts`` topic: one JSON object per alert change, keyed by entity.

Keyed by the entity id so every change of one vehicle's alerts lands on one partition in
order. ``key`` in the body (entity kind / id / rule / opened time) is stable across replays:
consumers deduplicate on (key, type) when a batch is published twice after a crash.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from alerts.model import AlertChange

__all__ = ["TOPIC", "to_message"]

TOPIC = "nev.alerts"


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def to_message(change: AlertChange) -> tuple[bytes, bytes]:
    """(Kafka key, value) for one change; pure, deterministic."""
    a = change.alert
    body: dict[str, Any] = {
        "type": change.type,
        "key": a.key,
        "entity_kind": a.entity_kind,
        "entity_id": a.entity_id,
        "rule_id": a.rule_id,
        "rule_version": a.rule_version,
        "severity": a.severity,
        "title": a.title,
        "opened_at": _iso(a.opened_ms),
        "last_seen_at": _iso(a.last_seen_ms),
        "cleared_at": _iso(a.cleared_ms),
        "clear_reason": a.clear_reason,
        "peak": a.peak,
        "last_value": a.last_value,
        "frame_count": a.frame_count,
        "trigger_times": [_iso(t) for t in a.trigger_ms],
        "late": a.late,
    }
    return a.entity_id.encode(), orjson.dumps(body)
