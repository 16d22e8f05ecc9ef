"""The tables a batch writes: columns, SQL types, and how each loader encodes their rows.

One description per table serves both loaders. Column names and order are the row
NamedTuples' fields (contract/rows.py, contract/charger.py, contract/battery.py), so a row is a
COPY record as it is; the SQL
types are the migrations' (a unit test checks the former, the integration tests the latter).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from contract.battery import PackAlarmRow, PackSessionRow, PackTelemetryRow
from contract.charger import (
    ChargerFaultRow,
    ChargerTelemetryRow,
    ChargingSessionRow,
    ConnectorInfoRow,
    ConnectorStatusRow,
)
from contract.rows import AlarmRow, FrameRows, MotorRow, SessionRow, VehicleRow
from storage.binary import (
    encode_pack_tuples,
    int2_array_cells,
    int2_array_probes,
    iter_pack_rows,
    put_cells,
    put_probes,
)
from storage.binary_rows import TupleEncoder, row_encoder, tuple_encoder

__all__ = [
    "ALARMS",
    "CHARGER_FAULTS",
    "CHARGER_TABLES",
    "CHARGER_TELEMETRY",
    "CHARGING_SESSIONS",
    "CONNECTORS",
    "CONNECTOR_STATUS",
    "MOTORS",
    "PACKS",
    "PACK_ALARMS",
    "PACK_SESSIONS",
    "PACK_TABLES",
    "PACK_TELEMETRY",
    "RAW",
    "SESSIONS",
    "TABLES",
    "VEHICLES",
    "VEHICLE_TABLES",
    "RawRow",
    "Table",
    "TableRows",
    "array_literal",
]


class RawRow(NamedTuple):
    """One row of ``raw_frames`` (the optional archive), built by the writer."""

    vin: str
    ts: Any  # datetime
    command: int
    edition: int
    entity_kind: str
    topic: str
    kafka_partition: int
    kafka_offset: int
    frame: bytes


def array_literal(values: Sequence[int | str | None] | None) -> str | None:
    """A PostgreSQL array literal (``{1,NULL,"a b"}``) for the unnest loader's text arrays."""
    if values is None:
        return None
    parts: list[str] = []
    for v in values:
        if v is None:
            parts.append("NULL")
        elif isinstance(v, str):
            parts.append('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"')
        else:
            parts.append(str(int(v)))
    return "{" + ",".join(parts) + "}"


def _cells_literal(raw: bytes) -> str | None:
    return array_literal(int2_array_cells(raw)) if raw else None


def _probes_literal(raw: bytes) -> str | None:
    return array_literal(int2_array_probes(raw)) if raw else None


@dataclass(frozen=True, slots=True)
class Table:
    """How rows of one table are loaded.

    ``encode``: a hand-built binary COPY stream, in pieces (else asyncpg's
    ``copy_records_to_table``).
    ``literals``: column index -> a function turning the value into an array literal, for the
    columns the unnest loader sends as ``text[]`` and casts (unnest flattens arrays of arrays,
    so an array column cannot travel as an array parameter).
    ``copy_index``: the table's index in ``FrameRows.copy`` (``contract.rows.COPY_TABLES``):
    the native decoder's tuples of the frame's rows; ``encode_tuples`` then encodes the rows
    of the frames that came without them (Python-built) into the same COPY stream.
    ``on_conflict``: what the conflict path does with a row whose key is stored (after
    ``ON CONFLICT``; the stored row is ``t``): skip it, or merge it (``charger_faults``).
    ``conflict_rows``: what the conflict path adds after ``FROM <the new rows> AS s`` (a
    ``WHERE`` and ``ORDER BY``; ``{table}`` is the stored table), '' for none: see
    ``conflict_filter``.
    """

    name: str
    columns: tuple[str, ...]
    types: tuple[str, ...]
    encode: Callable[[Sequence[Any]], Iterator[bytes | bytearray]] | None = None
    literals: dict[int, Callable[[Any], str | None]] = field(default_factory=dict)
    copy_index: int | None = None
    encode_tuples: TupleEncoder | None = None
    on_conflict: str = "DO NOTHING"
    conflict_rows: str = ""

    def __post_init__(self) -> None:
        if len(self.columns) != len(self.types):
            raise ValueError(f"{self.name}: {len(self.columns)} columns, {len(self.types)} types")
        if (self.copy_index is None) != (self.encode_tuples is None):
            raise ValueError(f"{self.name}: copy_index and encode_tuples go together")

    def conflict_filter(self, schema: str) -> str:
        """The conflict path's ``WHERE``/``ORDER BY`` of the new rows (aliased ``s``) in
        ``schema``, with a leading space; '' when the table has none."""
        if not self.conflict_rows:
            return ""
        return " " + self.conflict_rows.replace("{table}", f"{schema}.{self.name}")


class TableRows(list[Any]):
    """The rows of one table of ``COPY_TABLES`` in a load, with the native COPY tuples of
    those that have them: ``native`` holds the frames whose rows came with tuples
    (``FrameRows.copy``), ``plain`` the rows of the other frames (built in Python), which the
    writer encodes itself. The list itself is every row (latest state, counts, UNNEST)."""

    __slots__ = ("native", "plain")

    def __init__(self, rows: list[Any], native: list[FrameRows], plain: list[Any]) -> None:
        super().__init__(rows)
        self.native = native
        self.plain = plain


_VEHICLE_TYPES: Final = (
    "text", "timestamptz", "timestamptz", "int2", "int2",
    "int2", "int2", "int2", "float4", "float8", "float4", "float4", "int2", "int2", "int2",
    "int4", "int2", "int2",
    "bool", "float8", "float8",
    "float4", "int2", "int4", "float4", "int2", "int4",
    "int2", "int2", "int4", "int2", "int2", "int4", "bool",
    "int2", "int8", "int4",
    "bool",
)  # fmt: skip
VEHICLES: Final = Table(
    "vehicle_telemetry",
    VehicleRow._fields,
    _VEHICLE_TYPES,
    copy_index=0,
    encode_tuples=tuple_encoder(_VEHICLE_TYPES),
)
_MOTOR_TYPES: Final = (
    "text", "timestamptz", "int2", "int2", "int2", "int4", "float4", "int2", "float4", "float4",
)  # fmt: skip
MOTORS: Final = Table(
    "drive_motor_telemetry",
    MotorRow._fields,
    _MOTOR_TYPES,
    copy_index=1,
    encode_tuples=tuple_encoder(_MOTOR_TYPES),
)
PACKS: Final = Table(
    "battery_pack_telemetry",
    # PackRow's fields; the two *_raw byte strings arrive as their int2[] columns
    (
        "vin", "ts", "pack", "voltage_v", "current_a", "cell_count", "first_cell",
        "cell_voltages_mv", "probe_temps_c", "cell_min_mv", "cell_max_mv", "probe_min_c",
        "probe_max_c",
    ),
    (
        "text", "timestamptz", "int2", "float4", "float4", "int4", "int4", "int2[]", "int2[]",
        "int4", "int4", "int2", "int2",
    ),
    encode=iter_pack_rows,
    literals={7: _cells_literal, 8: _probes_literal},
    copy_index=2,
    encode_tuples=encode_pack_tuples,
)  # fmt: skip
_ALARM_TYPES: Final = (
    "text", "timestamptz", "int2", "int8", "int8[]", "int8[]", "int8[]", "int8[]", "int2[]",
)  # fmt: skip
ALARMS: Final = Table(
    "alarm_events",
    AlarmRow._fields,
    _ALARM_TYPES,
    literals={4: array_literal, 5: array_literal, 6: array_literal, 7: array_literal,
              8: array_literal},
    copy_index=3,
    encode_tuples=tuple_encoder(_ALARM_TYPES),
)  # fmt: skip
SESSIONS: Final = Table(
    "vehicle_sessions",
    SessionRow._fields,
    ("text", "timestamptz", "text", "int4", "text", "text[]"),
    literals={5: array_literal},
)
RAW: Final = Table(
    "raw_frames",
    RawRow._fields,
    ("text", "timestamptz", "int2", "int2", "text", "text", "int4", "int8", "bytea"),
)
VEHICLE_TABLES: Final = (VEHICLES, MOTORS, PACKS, ALARMS, SESSIONS, RAW)

# Chargers (migrations/0006_chargers.sql): both paths (binary profile, T/CEC pushes) fill these.
CONNECTORS: Final = Table(
    "charger_connectors",
    ConnectorInfoRow._fields,
    (
        "text", "text", "timestamptz", "text", "text", "text", "int2", "int4", "int4", "int4",
        "float4", "int2", "text",
    ),
)  # fmt: skip
CONNECTOR_STATUS: Final = Table(
    "connector_status_events",
    ConnectorStatusRow._fields,
    ("text", "text", "timestamptz", "int2", "int2", "int2", "text"),
)
CHARGER_TELEMETRY: Final = Table(
    "charger_telemetry",
    ChargerTelemetryRow._fields,
    (
        "text", "text", "timestamptz", "timestamptz", "text", "float4", "float4", "float4",
        "float8", "int2", "text", "float4", "float4", "float4", "text",
    ),
)  # fmt: skip
CHARGING_SESSIONS: Final = Table(
    "charging_session_events",
    ChargingSessionRow._fields,
    (
        "text", "text", "timestamptz", "text", "text", "int2", "timestamptz", "timestamptz",
        "float8", "float8", "float8", "float8", "int2", "text", "text",
    ),
)  # fmt: skip
# A fault row is the set of codes a connector (or the pile) reported in that second: a later
# batch's row of a stored key adds its codes the stored row lacks, in its order, instead of
# being skipped (a second fault block landing in the next Kafka batch lost its codes). The
# WHERE leaves a row whose codes are all stored untouched (not counted as written), so a
# redelivered or resent frame changes nothing. Rows of one load have one row per key
# (storage/batch.py ``_faults_joined``): an upsert may touch a row once per statement.
_FAULT_MERGE: Final = (
    "(operator_id, connector_id, ts, charger_id, source) DO UPDATE SET fault_codes = "
    "t.fault_codes || ARRAY(SELECT n.c FROM unnest(EXCLUDED.fault_codes) WITH ORDINALITY "
    "AS n(c, i) WHERE n.c <> ALL (t.fault_codes) ORDER BY n.i) "
    "WHERE NOT EXCLUDED.fault_codes <@ t.fault_codes"
)
# The conflict path drops first the rows that would change nothing (every code stored: a
# redelivered or resent frame). ON CONFLICT DO UPDATE locks the conflicting row even when its
# WHERE is false (two such no-op merges in opposite key order deadlocked, 40P01), and on
# TimescaleDB it decompresses the row's whole segment out of a compressed chunk (a resend of
# one fault moved 100 rows out of compression; DO NOTHING moved none): a row left out here
# reaches neither. The rows that do merge go in key order, so two writers merging the same
# rows lock them in one order. The ON CONFLICT WHERE stays for a row stored meanwhile.
_FAULT_UNCHANGED: Final = (
    "WHERE NOT EXISTS (SELECT 1 FROM {table} x WHERE x.operator_id = s.operator_id "
    "AND x.connector_id = s.connector_id AND x.ts = s.ts AND x.charger_id = s.charger_id "
    "AND x.source = s.source AND s.fault_codes <@ x.fault_codes) "
    "ORDER BY s.operator_id, s.connector_id, s.ts, s.charger_id, s.source"
)
CHARGER_FAULTS: Final = Table(
    "charger_faults",
    ChargerFaultRow._fields,
    ("text", "text", "timestamptz", "text", "int8[]", "text"),
    literals={4: array_literal},
    on_conflict=_FAULT_MERGE,
    conflict_rows=_FAULT_UNCHANGED,
)
CHARGER_TABLES: Final = (
    CONNECTORS,
    CONNECTOR_STATUS,
    CHARGER_TELEMETRY,
    CHARGING_SESSIONS,
    CHARGER_FAULTS,
)

# Standalone packs (migrations/0007_packs.sql).
_PACK_TELEMETRY_TYPES: Final = (
    "text", "timestamptz", "timestamptz", "int2", "int2",
    "int2", "int2", "int2", "int2", "int4", "float4", "float4", "int4",
    "text", "int4",
    "int4", "int2[]", "int4", "int4",
    "int4", "int2[]", "int2", "int2",
    "int2", "int8", "int4",
)  # fmt: skip
_CELLS: Final = PackTelemetryRow._fields.index("cell_voltages_raw")
_PROBES: Final = PackTelemetryRow._fields.index("probe_temps_raw")
PACK_TELEMETRY: Final = Table(
    "pack_telemetry",
    # PackTelemetryRow's fields; the two *_raw byte strings arrive as their int2[] columns
    tuple(
        {"cell_voltages_raw": "cell_voltages_mv", "probe_temps_raw": "probe_temps_c"}.get(f, f)
        for f in PackTelemetryRow._fields
    ),
    _PACK_TELEMETRY_TYPES,
    encode=row_encoder(_PACK_TELEMETRY_TYPES, {_CELLS: put_cells, _PROBES: put_probes}),
    literals={_CELLS: _cells_literal, _PROBES: _probes_literal},
)
PACK_ALARMS: Final = Table(
    "pack_alarm_events",
    PackAlarmRow._fields,
    ("text", "timestamptz", "int2", "int8", "int8[]"),
    literals={4: array_literal},
)
PACK_SESSIONS: Final = Table(
    "pack_sessions",
    PackSessionRow._fields,
    (
        "text", "timestamptz", "text", "int4", "text", "text", "float4", "float4", "float4",
        "int4", "int4",
    ),
)  # fmt: skip
PACK_TABLES: Final = (PACK_TELEMETRY, PACK_ALARMS, PACK_SESSIONS)

TABLES: Final = (*VEHICLE_TABLES, *CHARGER_TABLES, *PACK_TABLES)
