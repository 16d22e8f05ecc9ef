"""The partition-creating function the writer calls on plain PostgreSQL (storage.roles).

``storage.partitions.ensure`` uses it when it exists: the writer then creates a missing slot
without any DDL right of its own. It cannot drop or alter anything: retention drops stay with
the schema's owner (``storage.maintenance`` leaves them to ``nev-ingest migrate --maintain``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from storage.params import TIMESERIES_TABLES, SchemaMode

if TYPE_CHECKING:
    from storage.roles_names import RolesReport

__all__ = ["partition_function"]

# Plain PostgreSQL: the writer creates a missing partition on demand (storage.partitions) but
# may not run DDL; this function of the owner's creates one slot of one time-series table and
# nothing else (the table from a fixed list, the name derived as storage.partitions does).
# %L prints the bounds in the caller's DateStyle and TimeZone and CREATE TABLE reads them back
# with them: DateStyle SQL with TimeZone Asia/Shanghai prints "CST", read back as US Central, a
# partition 14 h off. The function's own SET clauses make the text ISO in UTC, whoever calls.
_CREATE_PARTITION: Final = """
CREATE OR REPLACE FUNCTION {s}.create_partition(p_table text, p_lo timestamptz, p_hi timestamptz)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, YMD' SET TimeZone = 'UTC' AS $fn$
BEGIN
    IF NOT (p_table = ANY ('{tables}'::text[])) THEN
        RAISE EXCEPTION 'create_partition: % is not a time-series table', p_table;
    END IF;
    IF p_lo IS NULL OR p_hi IS NULL OR p_hi <= p_lo OR p_hi - p_lo > interval '31 days' THEN
        RAISE EXCEPTION 'create_partition: bad range % .. %', p_lo, p_hi;
    END IF;
    EXECUTE format('CREATE TABLE IF NOT EXISTS %I.%I PARTITION OF %I.%I '
                   'FOR VALUES FROM (%L) TO (%L)',
        '{s}', p_table || '_p' || to_char(p_lo AT TIME ZONE 'UTC', 'YYYYMMDDHH24MI'),
        '{s}', p_table, p_lo, p_hi);
END
$fn$
"""

_DEFINITION: Final = (
    "SELECT pg_get_functiondef(p) FROM (SELECT to_regprocedure($1) AS p) f WHERE p IS NOT NULL"
)


async def partition_function(
    conn: Any, schema: str, writer: str, mode: SchemaMode, report: RolesReport
) -> None:
    """Create or refresh ``create_partition`` (plain flavour) and let ``writer`` run it."""
    if mode is not SchemaMode.PLAIN:
        return  # TimescaleDB creates chunks itself, for whoever inserts
    signature = f"{schema}.create_partition(text, timestamptz, timestamptz)"
    before = await conn.fetchval(_DEFINITION, signature)
    tables = "{" + ",".join(TIMESERIES_TABLES) + "}"
    await conn.execute(_CREATE_PARTITION.format(s=schema, tables=tables))
    if before is None:
        report.changes.append("function created: create_partition")
    elif before != await conn.fetchval(_DEFINITION, signature):
        report.changes.append("function updated: create_partition")
    await conn.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
    await conn.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO {writer}")
