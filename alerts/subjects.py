"""What one rule evaluation is about, per entity kind: the subjects of a decoded object.

A vehicle frame is one subject (the engine's own loop reads ``FrameRows`` directly: it is the
hot path). A charger frame or push is one subject per connector it reports on, entity id
``operator_id:connector_id`` (the OperatorID is 9 characters: unambiguous), the connector's
telemetry row and status row of the same time joined into one ``ConnectorView`` (a T/CEC
charge-status push yields both: evaluated apart, the second would be a duplicate of the
first). A pack frame with telemetry is one subject, entity id its pack code. Objects without
any (logins, heartbeats, responses) yield one subject without a time: counted as no data.

A subject has two times. The event time in epoch ms is what rules measure durations, rates and
windows in and what alert records keep (``*_ms``); the order time in epoch µs is what the
engine orders an entity's subjects by (its watermark). They differ for T/CEC status pushes:
their rows' time is TimeStamp + Seq µs (ingest.decoders.charger.push_time), so the pushes of
one second with Seq 0001..0999 all fall in its first millisecond; ordered by ms, every push but
the first would be a duplicate and its status (a fault) never judged. A µs time maps to the
millisecond it falls in (floor): alerts of such a push are recorded at that millisecond (an
episode raised in the millisecond of its rule's last clear opens the millisecond after:
RuleEngine._raise).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from alerts.entity_fields import ConnectorView
from contract.battery import PackFrameRows
from contract.charger import ChargerRows

__all__ = ["Subject", "charger_subjects", "pack_subjects", "subjects_of"]

# (entity id, event time in epoch ms or None, protocol edition, what the extractor reads,
# order time in epoch µs)
Subject = tuple[str, int | None, int, Any, int]
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)
_NO_DATA: Final[Subject] = ("", None, 0, None, 0)
# The charger profile uses the 2016 ('##') envelope; T/CEC pushes have no edition.
CHARGER_EDITION: Final = 2016


def charger_subjects(objects: Iterable[ChargerRows]) -> Iterator[Subject]:
    last_ts: datetime | None = None
    last_ms = last_us = 0
    for fr in objects:
        if not fr.telemetry and not fr.statuses:
            yield _NO_DATA
            continue
        joined: dict[tuple[str, datetime], list[Any]] = {}
        for row in fr.telemetry:
            joined.setdefault((row.connector_id, row.ts), [None, None])[0] = row
        for st in fr.statuses:
            joined.setdefault((st.connector_id, st.ts), [None, None])[1] = st
        op = fr.operator_id
        for (cid, ts), (tel, status) in joined.items():
            if ts is not last_ts:  # the rows of one frame share their time object
                last_ts, last_us = ts, (ts - _EPOCH) // _US
                last_ms = last_us // 1000  # floor: the millisecond the row time falls in
            yield f"{op}:{cid}", last_ms, CHARGER_EDITION, ConnectorView(tel, status), last_us


def pack_subjects(objects: Iterable[PackFrameRows]) -> Iterator[Subject]:
    for fr in objects:
        tel = fr.telemetry
        if tel is None or fr.ts_ms is None:
            yield _NO_DATA
        else:
            yield tel.pack_code, fr.ts_ms, fr.edition, tel, fr.ts_ms * 1000


def subjects_of(entity_kind: str, objects: Iterable[Any]) -> Iterator[Subject]:
    """The subjects of a charger's or a pack's decoded objects."""
    if entity_kind == "charger":
        return charger_subjects(objects)
    if entity_kind == "battery":
        return pack_subjects(objects)
    raise ValueError(f"no subjects for entity kind {entity_kind!r} (vehicles: FrameRows)")
