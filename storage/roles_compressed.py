"""TimescaleDB's compressed tables: no UPDATE for the writer there (storage.roles).

TimescaleDB copies a hypertable's grants to its internal compressed hypertable and to every
compressed chunk (``_timescaledb_internal``), so the writer's UPDATE of charger_faults (the merge
of a later report's codes, storage/tables.py) lands there too - and migration 0089's
append-only trigger is on the hypertable and its chunks, not on those tables. An UPDATE of a
compressed chunk itself would then move a batch of rows to another operator, blank their codes
or set ``_ts_meta_count`` to 0 and break reads. The service never writes those tables directly
(an upsert into a compressed chunk decompresses its rows into the chunk, where the trigger
fires), so the writer loses UPDATE on all of them. Every GRANT on the hypertable hands it back
(apply grants on every run), hence this runs on every run, after the grants, in their
transaction: no moment with the privilege, and a second run still changes nothing.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["revoke_compressed_update"]

# The compressed hypertable of each hypertable of the schema, and its chunks, where the writer
# holds UPDATE by a grant of its own (a chunk compressed after the revoke inherits the
# compressed hypertable's list, so normally only a re-grant brings any back).
_UPDATABLE: Final = """
WITH compressed AS (
    SELECT c.id FROM _timescaledb_catalog.hypertable h
    JOIN _timescaledb_catalog.hypertable c ON c.id = h.compressed_hypertable_id
    WHERE h.schema_name = $1
), targets AS (
    SELECT format('%I.%I', h.schema_name, h.table_name)::regclass AS oid
    FROM _timescaledb_catalog.hypertable h JOIN compressed USING (id)
    UNION ALL
    SELECT format('%I.%I', k.schema_name, k.table_name)::regclass
    FROM _timescaledb_catalog.chunk k JOIN compressed ON k.hypertable_id = compressed.id
    WHERE NOT k.dropped
)
SELECT t.oid::text FROM targets t JOIN pg_class r ON r.oid = t.oid
WHERE EXISTS (SELECT 1 FROM aclexplode(r.relacl) a
              WHERE a.grantee = $2::regrole AND a.privilege_type = 'UPDATE')
ORDER BY 1
"""


async def revoke_compressed_update(conn: Any, schema: str, writer: str) -> None:
    """REVOKE UPDATE from ``writer`` on the compressed tables of ``schema``'s hypertables
    (TimescaleDB only; ``conn`` is in the grants' transaction)."""
    tables = [r[0] for r in await conn.fetch(_UPDATABLE, schema, writer)]
    if tables:
        await conn.execute(f"REVOKE UPDATE ON {', '.join(tables)} FROM {writer}")
