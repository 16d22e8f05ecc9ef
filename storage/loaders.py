"""The two ways rows reach a table: binary COPY, and INSERT ... SELECT FROM unnest(arrays).

Both take the same ``Table`` and rows, and both can skip rows whose key is already stored
(``skip_conflicts``), which the writer uses for reissued frames and duplicate-carrying
batches only - the hot path is a plain COPY (see storage/writer.py). "Skip" is the table's
``on_conflict``: ``DO NOTHING``, but for ``charger_faults``, whose stored row takes the new
codes it lacks (storage/tables.py).

* ``CopyLoader`` - the production loader. Plain: ``COPY ... FROM STDIN (FORMAT binary)``
  straight into the table. Skipping conflicts: COPY into a per-session temporary staging table,
  then ``INSERT INTO t SELECT ... FROM staging ON CONFLICT DO NOTHING``. latest_state is merged
  from staged vehicle rows: frames decoded natively (``FrameRows.copy``) COPY their tuples
  straight into the table and stage only each vehicle's newest tuple (joining bytes again
  costs nothing); Python-built vehicle rows take the staging route (without ON CONFLICT on the
  hot path), cheaper than encoding the newest states a second time. The native tuples are
  joined, not encoded; rows without them are encoded into the same stream.
* ``UnnestLoader`` - for engines without COPY FROM STDIN (PGlite-TimescaleDB): one
  ``INSERT ... SELECT FROM unnest($1::type[], ...)`` per table with one array per column;
  skipping conflicts just adds the table's ``ON CONFLICT`` action (and its filter of the rows,
  ``Table.conflict_filter``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, Protocol

from contract.rows import FrameRows, VehicleRow
from storage.binary import COPY_SIGNATURE, COPY_TRAILER
from storage.latest import merge_stage, newest_per_vehicle, upsert_rows
from storage.params import LoaderKind
from storage.tables import VEHICLES, Table, TableRows

__all__ = [
    "CopyLoader",
    "Loader",
    "UnnestLoader",
    "make_loader",
    "native_pieces",
    "newest_of",
    "stages_unique",
]


async def _pieces(
    stream: Iterator[bytes | bytearray], after: Callable[[], None] | None = None
) -> AsyncIterator[bytes | bytearray]:
    # asyncpg sends each piece as it comes: the server works on one while we encode the next.
    for piece in stream:
        yield piece
    if after is not None:
        # Every piece is with the transport and the server is still parsing them: the
        # client's own work here costs the transaction nothing (``Loader.load``'s meanwhile).
        after()


# Frames per piece of a native COPY stream: a few hundred frames (~100-300 KB) keep the server
# parsing one piece while the next is joined, like storage.binary.iter_pack_rows.
NATIVE_PIECE_FRAMES = 300


def native_pieces(table: Table, rows: TableRows) -> Iterator[bytes | bytearray]:
    """The binary COPY stream of ``rows``: the native tuples of ``rows.native`` joined in
    pieces, then the Python-built ``rows.plain`` encoded by the table, then the trailer."""
    k = table.copy_index
    encode = table.encode_tuples
    assert k is not None and encode is not None
    native = rows.native
    head: bytes | bytearray = COPY_SIGNATURE
    for i in range(0, len(native), NATIVE_PIECE_FRAMES):
        piece = b"".join([f.copy[k] for f in native[i : i + NATIVE_PIECE_FRAMES] if f.copy])
        yield head + piece if head else piece
        head = b""
    tail = bytearray(head)
    if rows.plain:
        encode(tail, rows.plain)
    tail += COPY_TRAILER
    yield tail


def newest_of(rows: TableRows) -> TableRows:
    """The newest vehicle row of each VIN in ``rows``: the native ones in VIN order, then the
    Python-built ones in VIN order (apart: the stage may hold both for one VIN, and then
    latest_state's merge picks the newer)."""
    best: dict[str, FrameRows] = {}
    for f in rows.native:
        b = best.get(f.vin)
        if b is None or (f.ts_ms or 0) > (b.ts_ms or 0):
            best[f.vin] = f
    plain = newest_per_vehicle(rows.plain)
    frames = [best[vin] for vin in sorted(best)]
    picked = [f.vehicle for f in frames if f.vehicle is not None]
    return TableRows(picked + plain, frames, plain)


def stages_unique(rows: Sequence[Any], skip_conflicts: bool) -> bool:
    """Whether ``CopyLoader.load(rows, skip_conflicts=..., keep_stage=True)`` leaves one row
    per VIN in the stage, in VIN order: the native tuples without Python-built rows beside
    them, whose newest per VIN is all it stages (``newest_of``). Skipping conflicts stages
    every row; Python-built rows may repeat a VIN the native ones have. It says what that
    load staged: ``latest`` must follow it, with no other staging load between."""
    return (
        not skip_conflicts and isinstance(rows, TableRows) and bool(rows.native) and not rows.plain
    )


def _stage(table: Table) -> str:
    return f"nev_stage_{table.name}"


def _count(status: str) -> int:
    """Rows affected from a command tag such as ``INSERT 0 42`` or ``COPY 42``."""
    try:
        return int(status.rsplit(" ", 1)[-1])
    except (ValueError, IndexError):
        return 0


class Loader(Protocol):
    """Loads rows of one table inside the caller's transaction; returns rows inserted.

    ``keep_stage``: the vehicle rows stay where ``latest`` can read them (the writer calls
    ``latest`` right after loading the vehicle rows, in the same savepoint).

    ``meanwhile``: pure CPU work of the caller's, run once the rows are sent and while the
    server still loads them (a COPY's parse takes ~13 µs a frame, the client's sending ~1), so
    that it costs the transaction no time; run before the statement where nothing overlaps.
    """

    kind: LoaderKind

    async def load(
        self,
        conn: Any,
        schema: str,
        table: Table,
        rows: Sequence[Any],
        *,
        skip_conflicts: bool,
        keep_stage: bool = False,
        meanwhile: Callable[[], None] | None = None,
    ) -> int: ...

    async def latest(
        self,
        conn: Any,
        schema: str,
        entity_kind: str,
        rows: Sequence[VehicleRow],
        *,
        skip_conflicts: bool,
    ) -> None:
        """Bring latest_state up to date with the vehicle rows just loaded (``skip_conflicts``:
        as they were loaded)."""
        ...


class CopyLoader:
    """Binary COPY (hand-built stream where the table has one, asyncpg's records otherwise)."""

    kind = LoaderKind.COPY

    async def load(
        self,
        conn: Any,
        schema: str,
        table: Table,
        rows: Sequence[Any],
        *,
        skip_conflicts: bool,
        keep_stage: bool = False,
        meanwhile: Callable[[], None] | None = None,
    ) -> int:
        if not rows:
            return 0
        if not skip_conflicts and not keep_stage:
            await self._copy(conn, schema, table.name, table, rows, after=meanwhile)
            return len(rows)
        stage = _stage(table)
        # Created once per session (IF NOT EXISTS costs one catalog lookup afterwards); its
        # rows go at commit, or when the next load of this table in this transaction (another
        # savepoint, a reissue set) clears it first.
        await conn.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {stage} "
            f"(LIKE {schema}.{table.name}) ON COMMIT DELETE ROWS;"
            f"DELETE FROM {stage}"
        )
        if not skip_conflicts and isinstance(rows, TableRows) and rows.native:
            # Native tuples cost nothing to send twice: COPY them straight into the table
            # (multi-row inserts) and stage only each vehicle's newest row for latest_state,
            # instead of staging every row and INSERT ... SELECT-ing it (docs/performance.md).
            newest: list[TableRows] = []

            def pick() -> None:  # while the server loads the rows
                # Raised in the COPY, a bug here would be taken for a bad row and bisected:
                # left to the call after it, which raises it where it is classified right.
                with contextlib.suppress(Exception):
                    newest.append(newest_of(rows))
                if meanwhile is not None:
                    meanwhile()

            await self._copy(conn, schema, table.name, table, rows, after=pick)
            await self._copy(conn, None, stage, table, newest[0] if newest else newest_of(rows))
            return len(rows)
        await self._copy(conn, None, stage, table, rows, after=meanwhile)
        cols = ", ".join(table.columns)
        conflict = ""
        if skip_conflicts:
            conflict = f"{table.conflict_filter(schema)} ON CONFLICT {table.on_conflict}"
        status = await conn.execute(
            f"INSERT INTO {schema}.{table.name} AS t ({cols}) "
            f"SELECT {cols} FROM {stage} AS s{conflict}"
        )
        return _count(status)

    async def latest(
        self,
        conn: Any,
        schema: str,
        entity_kind: str,
        rows: Sequence[VehicleRow],
        *,
        skip_conflicts: bool,
    ) -> None:
        if rows:
            # A stage of one row per VIN needs no DISTINCT ON (its sort), and the planner
            # then sees the stage's size. In the plans measured (a nested loop over the
            # stage as staged, docs/storage.md) the UPDATE locks rows in VIN order, as the
            # pending sets' merge does.
            unique = stages_unique(rows, skip_conflicts)
            vins = len({r.vin for r in rows})
            await merge_stage(conn, schema, entity_kind, _stage(VEHICLES), vins, unique=unique)

    @staticmethod
    async def _copy(
        conn: Any,
        schema: str | None,
        name: str,
        table: Table,
        rows: Sequence[Any],
        *,
        after: Callable[[], None] | None = None,
    ) -> None:
        stream: Iterator[bytes | bytearray] | None = None
        if isinstance(rows, TableRows) and rows.native and table.copy_index is not None:
            # The native decoder's tuples: joined, not encoded (FrameRows.copy).
            stream = native_pieces(table, rows)
        elif table.encode is not None:
            stream = table.encode(rows)
        if stream is not None:
            await conn.copy_to_table(
                name,
                source=_pieces(stream, after),
                columns=list(table.columns),
                schema_name=schema,
                format="binary",
            )
        else:
            if after is not None:
                after()  # asyncpg encodes these records itself: nothing to overlap with
            await conn.copy_records_to_table(
                name, records=rows, columns=list(table.columns), schema_name=schema
            )


# Same `load` signature as CopyLoader: both implement the Loader protocol.
class UnnestLoader:
    """``INSERT ... SELECT FROM unnest(...)``: one array parameter per column."""

    kind = LoaderKind.UNNEST

    def __init__(self) -> None:
        self._sql: dict[tuple[str, str, bool], str] = {}

    def _statement(self, schema: str, table: Table, skip_conflicts: bool) -> str:
        key = (schema, table.name, skip_conflicts)
        sql = self._sql.get(key)
        if sql is None:
            names = ", ".join(f"c{i}" for i in range(len(table.columns)))
            params = ", ".join(
                f"${i + 1}::text[]" if i in table.literals else f"${i + 1}::{t}[]"
                for i, t in enumerate(table.types)
            )
            select = ", ".join(
                f"u.c{i}::{t}" if i in table.literals else f"u.c{i}"
                for i, t in enumerate(table.types)
            )
            cols = ", ".join(table.columns)
            rows = f"SELECT {select} FROM unnest({params}) AS u({names})"
            if skip_conflicts and table.conflict_rows:
                # the table's filter reads the new rows as ``s`` with the table's names
                rows = f"SELECT * FROM ({rows}) AS s({cols}){table.conflict_filter(schema)}"
            sql = f"INSERT INTO {schema}.{table.name} AS t ({cols}) {rows}"
            if skip_conflicts:
                sql += f" ON CONFLICT {table.on_conflict}"
            self._sql[key] = sql
        return sql

    async def load(
        self,
        conn: Any,
        schema: str,
        table: Table,
        rows: Sequence[Any],
        *,
        skip_conflicts: bool,
        keep_stage: bool = False,
        meanwhile: Callable[[], None] | None = None,
    ) -> int:
        if not rows:
            return 0
        if meanwhile is not None:
            meanwhile()  # one statement with its parameters: nothing to overlap with
        columns: list[list[Any]] = [list(c) for c in zip(*rows, strict=True)]
        for i, to_literal in table.literals.items():
            columns[i] = [to_literal(v) for v in columns[i]]
        status = await conn.execute(self._statement(schema, table, skip_conflicts), *columns)
        return _count(status)

    async def latest(
        self,
        conn: Any,
        schema: str,
        entity_kind: str,
        rows: Sequence[VehicleRow],
        *,
        skip_conflicts: bool,
    ) -> None:
        await upsert_rows(conn, schema, entity_kind, rows)


def make_loader(kind: LoaderKind) -> Loader:
    """The loader of a concrete kind (resolve ``auto`` with ``ServerInfo.loader`` first)."""
    if kind is LoaderKind.COPY:
        return CopyLoader()
    if kind is LoaderKind.UNNEST:
        return UnnestLoader()
    raise ValueError("resolve LoaderKind.AUTO from the engine before making a loader")
