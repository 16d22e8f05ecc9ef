"""The ``alerts`` table (storage/migrations/0050_alerts.sql) through asyncpg, for the pipeline.

``save_changes`` runs inside the caller's transaction, the one that writes the batch and its
Kafka offsets, so alerts are durable exactly when the frames that produced them are. It is
idempotent: a raise is keyed by (entity, rule, opened_at) and inserted only if that episode is
not stored yet; an update or clear sets absolute values (greatest last-seen, the engine's peak
and count, the first clear wins). Replaying the same changes, in the same or a later
transaction, leaves the table as one application left it.

A *conflicting* raise (another alert of that entity and rule is still open: two workers briefly
disagreed, or an engine lost its state) is not dropped: ``ON CONFLICT`` on the partial unique
index ``alerts_one_open`` merges it into the open alert (last seen, last value, frame count),
and the later updates and its clear, which carry the raise's own ``opened_at``, apply to the
open alert of that entity and rule opened no later than it. So the open alert is the one that
clears, never left open forever, and there is still one open alert per (entity, rule).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

from alerts.model import AlertChange, AlertRecord

__all__ = ["Connection", "load_open", "save_changes"]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)
# The 2025 edition lets terminals reissue up to 7 days of stored data (§4.2): clears within
# that horizon are loaded so reissued frames of a closed episode cannot raise it again.
REISSUE_HORIZON_S: Final = 7 * 86_400


class Connection(Protocol):
    """The part of ``asyncpg.Connection`` used here (asyncpg ships no type information)."""

    async def executemany(self, command: str, args: Iterable[Sequence[Any]]) -> None: ...

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...


_INSERT: Final = """
INSERT INTO alerts (entity_kind, entity_id, rule_id, rule_version, severity, title,
                    opened_at, last_seen_at, peak_value, last_value, frame_count,
                    trigger_times, late, kafka_partition, kafka_topic)
SELECT $1::text, $2::text, $3::text, $4::text, $5::text, $6::text, $7::timestamptz,
       $8::timestamptz, $9::float8, $10::float8, $11::int, $12::timestamptz[], $13::bool,
       $14::int, $15::text
WHERE NOT EXISTS (  -- stored already, or merged into an episode closed since: a replay
    SELECT 1 FROM alerts e
    WHERE e.entity_kind = $1 AND e.entity_id = $2 AND e.rule_id = $3
      AND (e.opened_at = $7 OR (e.opened_at < $7 AND e.cleared_at >= $7)))
ON CONFLICT (entity_kind, entity_id, rule_id) WHERE cleared_at IS NULL DO UPDATE SET
    last_seen_at = GREATEST(alerts.last_seen_at, EXCLUDED.last_seen_at),
    last_value = CASE WHEN EXCLUDED.last_seen_at >= alerts.last_seen_at
                      THEN EXCLUDED.last_value ELSE alerts.last_value END,
    frame_count = GREATEST(alerts.frame_count, EXCLUDED.frame_count),
    updated_at = now()
"""


# What every later frame of an episode sets ($5 its time, $6 its value, $7 the peak so far, $8
# the frame count; $9 of an update, $11 of a clear: whether the peak is the maximum): an update
# and a clear both record
# the frame; a clear also closes. The peak only moves outwards: an engine whose raise was
# merged into an open alert (it lost its state, two owners for a moment) knows only its own
# frames' peak, and must not overwrite a more extreme one stored before it.
def _seen(peak_is_max: int) -> str:
    return f"""
    last_seen_at = GREATEST(last_seen_at, $5),
    last_value = CASE WHEN $5 >= last_seen_at THEN $6 ELSE last_value END,
    peak_value = CASE WHEN $7::float8 IS NULL OR peak_value IS NULL THEN COALESCE($7, peak_value)
                      WHEN ${peak_is_max}::bool THEN GREATEST(peak_value, $7)
                      ELSE LEAST(peak_value, $7) END,
    frame_count = GREATEST(frame_count, $8),"""


_UPDATE: Final = f"""
UPDATE alerts SET{_seen(9)}
    updated_at = now()
WHERE entity_kind = $1 AND entity_id = $2 AND rule_id = $3
  AND (opened_at = $4 OR (cleared_at IS NULL AND opened_at < $4))  -- or merged into it
"""
_CLEAR: Final = f"""
UPDATE alerts SET{_seen(11)}
    cleared_at = $9,
    clear_reason = $10,
    updated_at = now()
WHERE entity_kind = $1 AND entity_id = $2 AND rule_id = $3
  AND opened_at <= $4 AND cleared_at IS NULL  -- the episode, or the open one it merged into
"""
_COLUMNS: Final = """entity_kind, entity_id, rule_id, rule_version, severity, title, opened_at,
    last_seen_at, cleared_at, peak_value, last_value, frame_count, trigger_times, late,
    kafka_partition, clear_reason, kafka_topic"""
_LOAD: Final = f"""
SELECT DISTINCT ON (entity_id, rule_id) {_COLUMNS}
FROM alerts
WHERE entity_kind = $1
  AND (cleared_at IS NULL OR cleared_at >= now() - make_interval(secs => $2))
  AND ($3::int[] IS NULL OR kafka_partition = ANY($3::int[]))
  AND ($4::text[] IS NULL OR entity_id = ANY($4::text[]))
  -- a row of no topic was stored before 0053: it goes by its partition number alone
  AND ($5::text IS NULL OR kafka_topic = $5 OR kafka_topic IS NULL)
ORDER BY entity_id, rule_id, (cleared_at IS NULL) DESC, cleared_at DESC
"""


def _dt(ms: int) -> datetime:
    return _EPOCH + ms * _MS


def _ms(dt: datetime) -> int:
    return (dt - _EPOCH) // _MS


async def save_changes(conn: Connection, changes: Sequence[AlertChange]) -> None:
    """Apply ``changes`` (from ``RuleEngine.evaluate``/``restore``/``swap_rules``) to ``alerts``.

    Call it inside the batch's transaction; three statements at most (raises, updates, clears)
    per round. A round ends where an alert is raised again after a clear of the same entity and
    rule in the batch (a rule flapping through a backlog): the clear must land before that raise,
    or the one-open-alert index would merge the new episode into the old one.
    """
    raised: list[tuple[Any, ...]] = []
    updated: list[tuple[Any, ...]] = []
    cleared: list[tuple[Any, ...]] = []
    closing: set[tuple[str, str, str]] = set()  # (kind, entity, rule) cleared in this round
    for c in changes:
        a = c.alert
        key = (a.entity_kind, a.entity_id, a.rule_id, _dt(a.opened_ms))
        figures = (_dt(a.last_seen_ms), a.last_value, a.peak, a.frame_count)
        if c.type == "raised":
            if key[:3] in closing:
                await _apply(conn, raised, updated, cleared)
                raised, updated, cleared, closing = [], [], [], set()
            raised.append(
                (*key[:3], a.rule_version, a.severity, a.title, key[3], figures[0], a.peak,
                 a.last_value, a.frame_count, [_dt(t) for t in a.trigger_ms], a.late,
                 a.partition, a.topic)
            )  # fmt: skip
        elif c.type == "updated":
            updated.append((*key, *figures, a.peak_is_max))
        else:
            assert a.cleared_ms is not None
            reason = a.clear_reason or "condition"
            cleared.append((*key, *figures, _dt(a.cleared_ms), reason, a.peak_is_max))
            closing.add(key[:3])
    await _apply(conn, raised, updated, cleared)


async def _apply(
    conn: Connection,
    raised: list[tuple[Any, ...]],
    updated: list[tuple[Any, ...]],
    cleared: list[tuple[Any, ...]],
) -> None:
    # Raises first: a raise and its own clear can come in the same round.
    if raised:
        await conn.executemany(_INSERT, raised)
    if updated:
        await conn.executemany(_UPDATE, updated)
    if cleared:
        await conn.executemany(_CLEAR, cleared)


async def load_open(
    conn: Connection,
    *,
    entity_kind: str = "vehicle",
    partitions: Iterable[int] | None = None,
    entity_ids: Iterable[str] | None = None,
    cleared_within_s: float = REISSUE_HORIZON_S,
    topic: str | None = None,
) -> list[AlertRecord]:
    """What ``RuleEngine.restore`` needs: per (entity, rule) the open alert, else the latest alert
    cleared within ``cleared_within_s``; optionally only some partitions (of ``topic``: the
    numbers of two topics of one kind coincide) or entities. Rows stored before the topic was
    (migration 0053) match any topic."""
    rows = await conn.fetch(
        _LOAD,
        entity_kind,
        float(cleared_within_s),
        None if partitions is None else list(partitions),
        None if entity_ids is None else list(entity_ids),
        topic,
    )
    return [
        AlertRecord(
            entity_kind=r["entity_kind"],
            entity_id=r["entity_id"],
            rule_id=r["rule_id"],
            rule_version=r["rule_version"],
            severity=r["severity"],
            title=r["title"],
            opened_ms=_ms(r["opened_at"]),
            last_seen_ms=_ms(r["last_seen_at"]),
            cleared_ms=None if r["cleared_at"] is None else _ms(r["cleared_at"]),
            peak=r["peak_value"],
            last_value=r["last_value"],
            frame_count=r["frame_count"],
            trigger_ms=tuple(_ms(t) for t in r["trigger_times"]),
            late=r["late"],
            partition=r["kafka_partition"],
            clear_reason=r["clear_reason"],
            topic=r["kafka_topic"],
        )
        for r in rows
    ]
