"""What one rule evaluation is about, per entity kind: the subjects of a decoded object.

A vehicle frame is one subject (the engine's own loop reads ``FrameRows`` directly: it is the
hot path). A charger frame or push is one subject per connector it reports on, entity id
``operator_id:connector_id`` (the OperatorID is 9 characters: unambiguous), the connector's
telemetry row and status row of the same time joined into one ``ConnectorView`` (a T/CEC
charge-status push yields both: evaluated apart, the second would be a duplicate of the
first). A pack frame with telemetry is one subject, entity id its pack code. Objects without
any (logins, heartbeats, responses) yield one subject without a time: counted as no data.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from alerts.entity_fields import ConnectorView
from contract.battery import PackFrameRows
from contract.charger import ChargerRows

__all__ = ["Subject", "charger_subjects", "pack_subjects", "subjects_of"]

# (entity id, event time in epoch ms or None, protocol edition, what the extractor reads)
Subject = tuple[str, int | None, int, Any]
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)
_NO_DATA: Final[Subject] = ("", None, 0, None)
# The charger profile uses the 2016 ('##') envelope; T/CEC pushes have no edition.
CHARGER_EDITION: Final = 2016


def charger_subjects(objects: Iterable[ChargerRows]) -> Iterator[Subject]:
    last_ts: datetime | None = None
    last_ms = 0
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
                last_ts, last_ms = ts, (ts - _EPOCH) // _MS
            yield f"{op}:{cid}", last_ms, CHARGER_EDITION, ConnectorView(tel, status)


def pack_subjects(objects: Iterable[PackFrameRows]) -> Iterator[Subject]:
    for fr in objects:
        tel = fr.telemetry
        if tel is None or fr.ts_ms is None:
            yield _NO_DATA
        else:
            yield tel.pack_code, fr.ts_ms, fr.edition, tel


def subjects_of(entity_kind: str, objects: Iterable[Any]) -> Iterator[Subject]:
    """The subjects of a charger's or a pack's decoded objects."""
    if entity_kind == "charger":
        return charger_subjects(objects)
    if entity_kind == "battery":
        return pack_subjects(objects)
    raise ValueError(f"no subjects for entity kind {entity_kind!r} (vehicles: FrameRows)")
