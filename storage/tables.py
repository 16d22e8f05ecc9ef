"""The tables a batch writes: columns, SQL types, and how each loader encodes their rows.

One description per table serves both loaders. Column names and order are the row
NamedTuples' fields (contract/rows.py), so a row is a COPY record as it is; the SQL
types are the migrations' (a unit test checks the former, the integration tests the latter).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from contract.rows import AlarmRow, MotorRow, SessionRow, VehicleRow
from storage.binary import int2_array_cells, int2_array_probes, iter_pack_rows

__all__ = [
    "ALARMS",
    "MOTORS",
    "PACKS",
    "RAW",
    "SESSIONS",
    "TABLES",
    "VEHICLES",
    "RawRow",
    "Table",
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
    """

    name: str
    columns: tuple[str, ...]
    types: tuple[str, ...]
    encode: Callable[[Sequence[Any]], Iterator[bytes | bytearray]] | None = None
    literals: dict[int, Callable[[Any], str | None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.columns) != len(self.types):
            raise ValueError(f"{self.name}: {len(self.columns)} columns, {len(self.types)} types")


VEHICLES: Final = Table(
    "vehicle_telemetry",
    VehicleRow._fields,
    (
        "text", "timestamptz", "timestamptz", "int2", "int2",
        "int2", "int2", "int2", "float4", "float8", "float4", "float4", "int2", "int2", "int2",
        "int4", "int2", "int2",
        "bool", "float8", "float8",
        "float4", "int2", "int4", "float4", "int2", "int4",
        "int2", "int2", "int4", "int2", "int2", "int4", "bool",
        "int2", "int8", "int4",
        "bool",
    ),
)  # fmt: skip
MOTORS: Final = Table(
    "drive_motor_telemetry",
    MotorRow._fields,
    ("text", "timestamptz", "int2", "int2", "int2", "int4", "float4", "int2", "float4", "float4"),
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
)  # fmt: skip
ALARMS: Final = Table(
    "alarm_events",
    AlarmRow._fields,
    ("text", "timestamptz", "int2", "int8", "int8[]", "int8[]", "int8[]", "int8[]", "int2[]"),
    literals={4: array_literal, 5: array_literal, 6: array_literal, 7: array_literal,
              8: array_literal},
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
TABLES: Final = (VEHICLES, MOTORS, PACKS, ALARMS, SESSIONS, RAW)
