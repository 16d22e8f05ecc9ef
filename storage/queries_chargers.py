"""Chargers: a charger's connectors, sessions and faults; connectors by status now.

A charger is named three ways (``Charger``): one connector ``OPERATOR:CONNECTOR`` (the
latest_state entity id), the profile's 17-character header code (OperatorID + pile code, the
connectors its logins registered) or an EquipmentID of an operator (the pile as T/CEC 102
names it). Every statement starts from the connector key, which leads the primary key of each
charger table and of the ``charging_sessions`` view's windows:

==========  ============================================  ======================================
query       answers                                       served by
==========  ============================================  ======================================
connectors  registration and state now of each connector  charger_connectors, latest_state PK
known_      the connectors anything stored knows (also    + charging_session_events (operator_id,
connectors  by their orders alone)                        connector_id, ts)
sessions    charging sessions of the connectors, or of a  charging_session_events (operator_id,
            VIN, started in a time range                  connector_id, ts) / (vin, ts)
faults      fault codes of the connectors and their pile  charger_faults PK
by_status   connectors of an operator in a status now     latest_state (operator_id, status)
==========  ============================================  ======================================
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from storage.params import check_identifier
from storage.queries import Statement

__all__ = [
    "CONNECTOR_STATUS",
    "OPERATOR_ID_LENGTH",
    "Charger",
    "by_status",
    "connectors",
    "faults",
    "known_connectors",
    "sessions",
]

OPERATOR_ID_LENGTH: Final = 9  # T/CEC 102 OperatorID
CHARGER_CODE_LENGTH: Final = 17  # the profile's header code: OperatorID + 8-character pile code

# T/CEC 102 ConnectorStatusInfo.Status, by name (the CLI accepts either).
CONNECTOR_STATUS: Final = {
    "offline": 0,
    "idle": 1,
    "occupied": 2,
    "charging": 3,
    "reserved": 4,
    "fault": 255,
}


@dataclass(frozen=True, slots=True)
class Charger:
    """Which connectors: exactly one of ``connector`` (with ``operator_id``), ``charger_id``
    (the header code) or ``equipment_id`` (with ``operator_id``)."""

    operator_id: str
    connector_id: str | None = None
    charger_id: str | None = None
    equipment_id: str | None = None

    def __post_init__(self) -> None:
        given = [x for x in (self.connector_id, self.charger_id, self.equipment_id) if x]
        if len(given) != 1:
            raise ValueError("give exactly one of connector_id, charger_id, equipment_id")

    @classmethod
    def parse(cls, ident: str, operator_id: str | None = None) -> Charger:
        """``OPERATOR:CONNECTOR``, a 17-character header code, or an EquipmentID with
        ``operator_id``; ``ValueError`` saying which forms exist otherwise."""
        head, colon, tail = ident.partition(":")
        if colon:
            if len(head) != OPERATOR_ID_LENGTH or not tail:
                raise ValueError(
                    f"{ident!r}: a connector is OPERATOR:CONNECTOR with the 9-character OperatorID"
                )
            return cls(head, connector_id=tail)
        if operator_id is not None:
            return cls(operator_id, equipment_id=ident)
        if len(ident) == CHARGER_CODE_LENGTH:
            return cls(ident[:OPERATOR_ID_LENGTH], charger_id=ident)
        raise ValueError(
            f"{ident!r}: give OPERATOR:CONNECTOR, a 17-character charger code, or an "
            "equipment id with --operator"
        )

    def keys(self, schema: str) -> tuple[str, tuple[Any, ...]]:
        """A SELECT of the (operator_id, connector_id) pairs meant, and its parameters."""
        if self.connector_id is not None:
            return "SELECT %s::text AS operator_id, %s::text AS connector_id", (
                self.operator_id,
                self.connector_id,
            )
        column, value = (
            ("charger_id", self.charger_id)
            if self.charger_id is not None
            else ("equipment_id", self.equipment_id)
        )
        return (
            f"""SELECT DISTINCT operator_id::text AS operator_id, connector_id::text AS connector_id
    FROM {check_identifier(schema)}.charger_connectors
    WHERE operator_id = %s AND {column} = %s""",
            (self.operator_id, value),
        )


def connectors(schema: str, charger: Charger) -> Statement:
    """Each connector: its latest registration and its state now (latest_state). One that
    neither knows (a mistyped ``OPERATOR:CONNECTOR``) is no row, not a row of NULLs."""
    s = check_identifier(schema)
    keys, params = charger.keys(schema)
    return Statement(
        f"""WITH k AS ({keys})
SELECT k.operator_id || ':' || k.connector_id AS connector, r.equipment_id, r.station_id,
       r.charger_id, r.connector_type, r.power_kw AS rated_power_kw, l.connector_status,
       l.ts AS last_report, l.received_at, l.power_kw, l.energy_kwh, l.connected_vin,
       l.soc_pct, l.max_temp_c
FROM k
LEFT JOIN LATERAL (
    SELECT * FROM {s}.charger_connectors c
    WHERE c.operator_id = k.operator_id AND c.connector_id = k.connector_id
    ORDER BY c.ts DESC LIMIT 1
) r ON true
LEFT JOIN {s}.latest_state l
    ON l.entity_kind = 'charger' AND l.entity_id = k.operator_id || ':' || k.connector_id
WHERE r.operator_id IS NOT NULL OR l.entity_id IS NOT NULL
ORDER BY 1""",
        params,
    )


def known_connectors(schema: str, charger: Charger) -> Statement:
    """A row per connector of ``charger`` anything stored knows: its registration, its state
    now, or a charging order's events (an operator pushing orders but neither station info nor
    status). ``connectors`` answers no row for the last, whose sessions a window can leave
    out: without it ``query sessions`` called such a connector unknown. Each EXISTS is an
    index probe (charger_connectors PK, latest_state PK, charging_session_events_connector)."""
    s = check_identifier(schema)
    keys, params = charger.keys(schema)
    return Statement(
        f"""WITH k AS ({keys})
SELECT k.operator_id || ':' || k.connector_id AS connector
FROM k
WHERE EXISTS (
    SELECT 1 FROM {s}.charger_connectors c
    WHERE c.operator_id = k.operator_id AND c.connector_id = k.connector_id
) OR EXISTS (
    SELECT 1 FROM {s}.latest_state l
    WHERE l.entity_kind = 'charger' AND l.entity_id = k.operator_id || ':' || k.connector_id
) OR EXISTS (
    SELECT 1 FROM {s}.charging_session_events e
    WHERE e.operator_id = k.operator_id AND e.connector_id = k.connector_id
)
ORDER BY 1""",
        params,
    )


_SESSION_COLUMNS = """cs.operator_id || ':' || cs.connector_id AS connector, cs.start_charge_seq,
       cs.vin, cs.start_time, cs.end_time, cs.state, cs.energy_kwh, cs.peak_power_kw,
       cs.total_money, cs.stop_reason, cs.source"""


def sessions(
    schema: str,
    start: datetime,
    end: datetime,
    *,
    charger: Charger | None = None,
    vin: str | None = None,
    limit: int = 10_000,
) -> Statement:
    """Charging sessions that started in [start, end), newest first: of ``charger``'s
    connectors (order, progress and status-only sessions) or of ``vin`` (sessions whose
    orders or progress name it; a status-only session knows its VIN only from telemetry,
    which no index finds by VIN)."""
    if (charger is None) == (vin is None):
        raise ValueError("give exactly one of charger and vin")
    s = check_identifier(schema)
    if charger is not None:
        keys, params = charger.keys(schema)
        # LATERAL: the connector key reaches charging_session_events / connector_status_events
        # through the view's windows (they are partitioned by it) for each connector.
        return Statement(
            f"""WITH k AS ({keys})
SELECT {_SESSION_COLUMNS}
FROM k
CROSS JOIN LATERAL (
    SELECT * FROM {s}.charging_sessions c
    WHERE c.operator_id = k.operator_id AND c.connector_id = k.connector_id
) cs
WHERE cs.start_time >= %s AND cs.start_time < %s
ORDER BY cs.start_time DESC
LIMIT %s""",
            (*params, start, end, limit),
        )
    # An event is never older than its session's start, so events from `start` on find every
    # session that started in the range.
    return Statement(
        f"""WITH k AS (
    SELECT DISTINCT operator_id::text AS operator_id, connector_id::text AS connector_id,
           start_charge_seq::text AS start_charge_seq
    FROM {s}.charging_session_events
    WHERE vin = %s AND ts >= %s
)
SELECT {_SESSION_COLUMNS}
FROM k
CROSS JOIN LATERAL (
    SELECT * FROM {s}.charging_sessions c
    WHERE c.operator_id = k.operator_id AND c.connector_id = k.connector_id
      AND c.start_charge_seq = k.start_charge_seq
) cs
WHERE cs.vin = %s AND cs.start_time >= %s AND cs.start_time < %s
ORDER BY cs.start_time DESC
LIMIT %s""",
        (vin, start, vin, start, end, limit),
    )


def faults(
    schema: str, charger: Charger, start: datetime, end: datetime, *, limit: int = 10_000
) -> Statement:
    """Fault reports in [start, end), newest first: of the connectors, and of their piles
    (connector '' with the header code of a connector's registration)."""
    s = check_identifier(schema)
    keys, params = charger.keys(schema)
    return Statement(
        f"""WITH k AS ({keys}),
piles AS (
    SELECT DISTINCT c.operator_id::text AS operator_id, ''::text AS connector_id, c.charger_id
    FROM {s}.charger_connectors c
    JOIN k ON c.operator_id = k.operator_id AND c.connector_id = k.connector_id
    WHERE c.charger_id IS NOT NULL
)
SELECT f.ts, CASE WHEN f.connector_id = '' THEN '(pile)'
                  ELSE f.operator_id || ':' || f.connector_id END AS connector,
       f.charger_id, f.fault_codes, f.source
FROM (
    SELECT k.operator_id, k.connector_id, NULL::text AS charger_id FROM k
    UNION ALL
    SELECT operator_id, connector_id, charger_id FROM piles
) w
CROSS JOIN LATERAL (
    SELECT * FROM {s}.charger_faults f
    WHERE f.operator_id = w.operator_id AND f.connector_id = w.connector_id
      AND (w.charger_id IS NULL OR f.charger_id = w.charger_id)
      AND f.ts >= %s AND f.ts < %s
) f
ORDER BY f.ts DESC
LIMIT %s""",
        (*params, start, end, limit),
    )


def by_status(
    schema: str, *, operator_id: str | None = None, status: int | None = None, limit: int = 10_000
) -> Statement:
    """Connectors by their status now (latest_state), of one operator and/or one status."""
    where: list[str] = ["entity_kind = 'charger'"]
    params: list[Any] = []
    if operator_id is not None:
        where.append("operator_id = %s")
        params.append(operator_id)
    if status is not None:
        where.append("connector_status = %s")
        params.append(status)
    return Statement(
        f"""SELECT entity_id AS connector, operator_id, connector_status, ts AS last_report,
       received_at, power_kw, energy_kwh, connected_vin, soc_pct, max_temp_c
FROM {check_identifier(schema)}.latest_state
WHERE {" AND ".join(where)}
ORDER BY entity_id
LIMIT %s""",
        (*params, limit),
    )
