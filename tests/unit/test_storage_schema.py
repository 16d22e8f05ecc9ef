"""Migrations on disk, the table descriptions the loaders use, and the row contract agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from contract.battery import PackAlarmRow, PackSessionRow, PackTelemetryRow
from contract.charger import (
    ChargerFaultRow,
    ChargerTelemetryRow,
    ChargingSessionRow,
    ConnectorInfoRow,
    ConnectorStatusRow,
)
from contract.rows import AlarmRow, MotorRow, PackRow, SessionRow, VehicleRow
from storage.errors import MigrationError
from storage.migrate import MIGRATIONS_DIR, discover, plan
from storage.migration_files import SUPERSEDED
from storage.params import TELEMETRY_TABLES, TIMESERIES_TABLES, SchemaMode
from storage.tables import (
    ALARMS,
    CHARGER_FAULTS,
    CHARGER_TABLES,
    CHARGER_TELEMETRY,
    CHARGING_SESSIONS,
    CONNECTOR_STATUS,
    CONNECTORS,
    MOTORS,
    PACK_ALARMS,
    PACK_SESSIONS,
    PACK_TABLES,
    PACK_TELEMETRY,
    PACKS,
    RAW,
    SESSIONS,
    TABLES,
    VEHICLE_TABLES,
    VEHICLES,
    RawRow,
)

pytestmark = pytest.mark.unit

_SQL_TYPE = {
    "text": "text",
    "timestamptz": "timestamptz",
    "smallint": "int2",
    "integer": "int4",
    "bigint": "int8",
    "real": "float4",
    "double precision": "float8",
    "boolean": "bool",
    "bytea": "bytea",
}
_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\n\)", re.S)
_COLUMN = re.compile(
    r"^\s{4}(\w+)\s+([a-z][a-z ]*?(?:\[\])?)(?:\s+COLLATE \"C\")?(?:\s+NOT NULL)?,"
)


def columns(sql: str) -> dict[str, list[tuple[str, str]]]:
    """Table -> [(column, int2/float8/... type)] of every CREATE TABLE in ``sql``."""
    out: dict[str, list[tuple[str, str]]] = {}
    for name, body in _TABLE.findall(sql):
        cols = []
        for line in body.splitlines():
            m = _COLUMN.match(line.split("--")[0].rstrip() + ("," if "," not in line else ""))
            if m and m[1] != "PRIMARY":
                sql_type = m[2].strip()
                array = sql_type.endswith("[]")
                base = _SQL_TYPE[sql_type.removesuffix("[]")]
                cols.append((m[1], base + ("[]" if array else "")))
        out[name] = cols
    return out


_ADD_COLUMN = re.compile(
    r"ALTER TABLE (\w+) ADD COLUMN (?:IF NOT EXISTS )?(\w+) ([a-z][a-z ]*?(?:\[\])?)"
    r"(?= NOT NULL| DEFAULT| COLLATE|;)"
)


def flavour_sql(version: int, mode: SchemaMode) -> str:
    return discover()[version][mode].sql


def schema_columns(mode: SchemaMode) -> dict[str, list[tuple[str, str]]]:
    """``columns`` of the schema every version of ``mode`` builds: the tables of their CREATE
    TABLEs, with the columns later versions ADD at the end (as PostgreSQL appends them)."""
    out: dict[str, list[tuple[str, str]]] = {}
    for mig in plan(mode):
        out.update(columns(mig.sql))
        for table, column, sql_type in _ADD_COLUMN.findall(mig.sql):
            base = _SQL_TYPE[sql_type.strip().removesuffix("[]")]
            out[table].append((column, base + ("[]" if sql_type.endswith("[]") else "")))
    return out


def test_every_version_exists_for_both_flavours_and_0050_is_the_alerts() -> None:
    versions = discover()
    assert {1, 2, 3} <= set(versions)
    for files in versions.values():
        assert set(files) == {SchemaMode.PLAIN, SchemaMode.TIMESCALE}
    assert versions[50][SchemaMode.PLAIN].name == "0050_alerts"
    names = [m.name for m in plan(SchemaMode.PLAIN)]
    assert names == sorted(names)


def test_both_flavours_define_the_same_columns() -> None:
    plain = columns(flavour_sql(2, SchemaMode.PLAIN))
    timescale = columns(flavour_sql(2, SchemaMode.TIMESCALE))
    assert set(plain) == {t.name for t in VEHICLE_TABLES}
    assert plain == timescale
    # the chargers' (0006) and the packs' (0007) likewise
    for version, tables in ((6, CHARGER_TABLES), (7, PACK_TABLES)):
        plain = columns(flavour_sql(version, SchemaMode.PLAIN))
        assert set(plain) == {t.name for t in tables}
        assert plain == columns(flavour_sql(version, SchemaMode.TIMESCALE))
    # ... and so does every later version (0005 adds vehicle_telemetry.signature_missing)
    series = {t.name for t in TABLES}
    every_plain = {k: v for k, v in schema_columns(SchemaMode.PLAIN).items() if k in series}
    every_timescale = schema_columns(SchemaMode.TIMESCALE)
    assert every_plain == {k: v for k, v in every_timescale.items() if k in series}


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.name)
def test_loader_description_matches_the_migration(table: object) -> None:
    from storage.tables import Table

    assert isinstance(table, Table)
    sql = schema_columns(SchemaMode.PLAIN)[table.name]
    assert list(zip(table.columns, table.types, strict=True)) == sql


def test_signature_missing_is_added_last_by_0005() -> None:
    # The test above reads ALTER TABLE ... ADD COLUMN: prove it sees 0005 (else a parse that
    # silently missed it would compare 0002's columns with a description lacking the flag).
    assert schema_columns(SchemaMode.PLAIN)["vehicle_telemetry"][-1] == (
        "signature_missing",
        "bool",
    )
    assert columns(flavour_sql(2, SchemaMode.PLAIN))["vehicle_telemetry"][-1][0] == "fault_count"
    assert VehicleRow._fields[-1] == "signature_missing"


def test_tables_follow_the_row_contract() -> None:
    assert VEHICLES.columns == VehicleRow._fields
    assert MOTORS.columns == MotorRow._fields
    assert ALARMS.columns == AlarmRow._fields
    assert SESSIONS.columns == SessionRow._fields
    assert RAW.columns == RawRow._fields
    raw_named = {"cell_voltages_raw": "cell_voltages_mv", "probe_temps_raw": "probe_temps_c"}
    assert PACKS.columns == tuple(raw_named.get(f, f) for f in PackRow._fields)
    assert CONNECTORS.columns == ConnectorInfoRow._fields
    assert CONNECTOR_STATUS.columns == ConnectorStatusRow._fields
    assert CHARGER_TELEMETRY.columns == ChargerTelemetryRow._fields
    assert CHARGING_SESSIONS.columns == ChargingSessionRow._fields
    assert CHARGER_FAULTS.columns == ChargerFaultRow._fields
    assert PACK_TELEMETRY.columns == tuple(raw_named.get(f, f) for f in PackTelemetryRow._fields)
    assert PACK_ALARMS.columns == PackAlarmRow._fields
    assert PACK_SESSIONS.columns == PackSessionRow._fields


def test_every_partitioned_table_is_a_timeseries_table_with_a_retention() -> None:
    # ``{{partitioned_by_ts}}`` tables get partitions (plain) / chunk policies (TimescaleDB)
    # only when storage.params lists them; a table left out would have no partition to write.
    partitioned = set()
    for mig in plan(SchemaMode.PLAIN):
        for piece in mig.sql.split("CREATE TABLE IF NOT EXISTS ")[1:]:
            name, rest = piece.split(" ", 1)
            if rest.split("\n)", 1)[1].startswith(" PARTITION BY"):
                partitioned.add(name)
    assert partitioned == set(TIMESERIES_TABLES)
    assert set(TELEMETRY_TABLES) == set(TIMESERIES_TABLES) - {"raw_frames"}
    assert "charger_connectors" not in partitioned  # few rows: a plain table on both flavours


def test_summary_tables_have_the_continuous_aggregates_columns() -> None:
    plain = columns(flavour_sql(3, SchemaMode.PLAIN))
    cagg = flavour_sql(3, SchemaMode.TIMESCALE)
    for view in ("vehicle_stats_1m", "vehicle_stats_1h"):
        view_sql = cagg.split(f"CREATE MATERIALIZED VIEW IF NOT EXISTS {view}")[1]
        select = view_sql.split("\nFROM vehicle_telemetry")[0]
        aliases = ["vin", *re.findall(r"\bAS (\w+),?\s*$", select, re.M)]
        assert [c for c, _ in plain[view]] == aliases


def test_0088_summary_function_fills_the_summary_tables_columns_in_order() -> None:
    # 0088 re-writes the plain summary function's select list: INSERT INTO ... SELECT is by
    # position, so its aliases must be the tables' columns (0003), in their order.
    plain = columns(flavour_sql(3, SchemaMode.PLAIN))
    select = flavour_sql(88, SchemaMode.PLAIN).split("date_trunc(%L, ts, 'UTC') AS bucket,")[1]
    select = select.split("\n        FROM vehicle_telemetry")[0]
    aliases = ["vin", "bucket", *re.findall(r"\bAS (\w+),?\s*$", select, re.M)]
    assert [c for c, _ in plain["vehicle_stats_1h"]] == aliases


def test_malformed_names_and_half_pairs_are_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0002_b.plain.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"or both \.plain\.sql and \.timescale\.sql"):
        discover(tmp_path)
    (tmp_path / "0002_b.plain.sql").unlink()
    (tmp_path / "2_c.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="not NNNN_name"):
        discover(tmp_path)


def test_a_version_is_its_shared_file_then_the_flavours_with_placeholders_filled(
    tmp_path: Path,
) -> None:
    (tmp_path / "0007_x.sql").write_text("CREATE TABLE t (\n    a int\n) {{partitioned_by_ts}};\n")
    (tmp_path / "0007_x.timescale.sql").write_text("SELECT\n    k,\n    {{cols}}\nFROM t;\n")
    (tmp_path / "0007_x.cols.part.sql").write_text(
        "-- what it is, left out\nmin(a) AS lo,\nmax(a) AS hi\n"
    )
    files = discover(tmp_path)[7]
    assert (
        files[SchemaMode.PLAIN].sql == "CREATE TABLE t (\n    a int\n) PARTITION BY RANGE (ts);\n"
    )
    assert files[SchemaMode.PLAIN].path.name == "0007_x.sql"  # plain adds nothing here
    assert files[SchemaMode.TIMESCALE].sql == (
        "CREATE TABLE t (\n    a int\n) ;\n\nSELECT\n    k,\n    min(a) AS lo,\n    max(a) AS hi\n"
        "FROM t;\n"
    )
    assert files[SchemaMode.TIMESCALE].checksum != files[SchemaMode.PLAIN].checksum
    (tmp_path / "0007_x.plain.sql").write_text("SELECT {{colz}};\n")
    with pytest.raises(MigrationError, match=r"0007_x.plain.sql: unknown placeholder \{\{colz\}\}"):
        discover(tmp_path)


def test_the_shared_column_lists_render_as_each_flavour_wrote_them_before() -> None:
    # The checksums of 0002/0003 before the flavours shared their tables: the rewrite is
    # accepted as the same migration (the schema was compared object by object), and nothing
    # else is.
    for (version, mode), before in SUPERSEDED.items():
        mig = discover()[version][mode]
        assert all(mig.matches(c) for c in before)
        assert mig.matches(mig.checksum) and not mig.matches("0" * 64)
    assert "{{" not in "".join(m.sql for v in discover().values() for m in v.values())


def test_files_are_found_where_the_package_is() -> None:
    assert (MIGRATIONS_DIR / "0001_core.sql").is_file()


@pytest.mark.parametrize("mode", [SchemaMode.PLAIN, SchemaMode.TIMESCALE])
@pytest.mark.parametrize("view", ["vehicle_pack_history", "charging_sessions"])
def test_a_views_scoped_copy_is_made_again_wherever_the_view_is(
    mode: SchemaMode, view: str
) -> None:
    # 0087's _scoped copies repeat their view's query (an owner's-rights view cannot read a
    # security_invoker one on TimescaleDB): a later migration that changes the view and not its
    # copy would leave OEM and charging logins on the old query, every other test still green.
    def made(name: str) -> list[int]:
        create = re.compile(rf"CREATE (?:OR REPLACE )?VIEW (?:\S+\.)?{name}\b", re.I)
        return [
            v for v, flavours in sorted(discover().items()) if create.search(flavours[mode].sql)
        ]

    copies = made(f"{view}_scoped")
    assert copies, f"no migration makes {view}_scoped"
    later = [v for v in made(view) if v > copies[-1]]
    assert not later, (
        f"migration {later} changes {view} but not {view}_scoped: make the copy again there "
        "from the same query (see 0087)"
    )
