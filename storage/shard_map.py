"""Is each configured database the shard the partition map says it is?

Partition ``p`` belongs to shard ``p % N`` (``storage.shards``), and a partition's offsets,
latest state and open alerts live on its shard only. Listing the same databases in another
order, or changing N without the procedure of docs/storage.md ("Changing N"), moves partitions
to a database that holds none of that: the workers resume from Kafka's committed offsets, an
entity's history and open alerts split across databases. Nothing in the databases said which
shard each one was, so nothing could notice. ``nev-ingest migrate`` now records each shard's
(index, N) in ``shard_identity`` (migration 0083), and ``run``/``migrate`` compare, per
database:

- the recorded (index, N) with the configured one;
- the partitions of its ``consumer_offsets`` with ``p % N == index`` (which also catches a
  deployment migrated before the identity existed);
- its server and database with every other shard's: two URLs (``127.0.0.1`` and
  ``localhost``) can name one database, which would then be written as two shards.

``problems`` turns what ``read_facts`` found into one line per wrong shard, each saying what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import asyncpg

from storage.params import check_identifier

__all__ = [
    "MOVE",
    "PROCEDURE",
    "ShardFacts",
    "is_new",
    "problems",
    "read_facts",
    "record_identity",
]

# What a changed map needs: the documented procedure, then migrate --reshard records it.
PROCEDURE: Final = (
    "restore the previous storage.shards order and count, or change the shard map by the "
    'procedure in docs/storage.md ("Changing N": stop, move, re-map) and then run '
    "`nev-ingest migrate --reshard`"
)
# --reshard given while partitions still sit on their old shards: the new shards have their
# schema by then (migrate --reshard creates it first), so the rows can be moved now.
MOVE = (
    'move those partitions\' rows to their shard (docs/storage.md "Changing N", step 3), then '
    "run `nev-ingest migrate --reshard` again"
)


@dataclass(frozen=True, slots=True)
class ShardFacts:
    """What one database says about itself."""

    server: str  # "system <id>, up since <start>" (or "port <port>, ..." when not readable)
    database: str  # current_database()
    recorded: tuple[int, int] | None  # (index, N) in shard_identity; None: never recorded
    partitions: tuple[tuple[str, int], ...]  # (topic, partition) in consumer_offsets


def is_new(facts: ShardFacts) -> bool:
    """A database that never was a shard: no recorded place and no consumer offsets (not
    migrated yet, or migrated but never written). ``migrate --reshard`` gives it the schema
    before checking the map, so that the procedure's move has tables to move into."""
    return facts.recorded is None and not facts.partitions


async def read_facts(conn: Any, schema: str) -> ShardFacts:
    """The facts of the database ``conn`` is connected to (``schema``: storage.schema)."""
    q = check_identifier(schema)
    database = str(await conn.fetchval("SELECT current_database()"))
    recorded = None
    if await _exists(conn, f"{schema}.shard_identity"):
        row = await conn.fetchrow(f"SELECT shard_index, shard_count FROM {q}.shard_identity")
        recorded = (int(row["shard_index"]), int(row["shard_count"])) if row else None
    partitions: tuple[tuple[str, int], ...] = ()
    if await _exists(conn, f"{schema}.consumer_offsets"):
        rows = await conn.fetch(
            f"SELECT DISTINCT topic, partition FROM {q}.consumer_offsets ORDER BY 1, 2"
        )
        partitions = tuple((str(r["topic"]), int(r["partition"])) for r in rows)
    return ShardFacts(await _server(conn), database, recorded, partitions)


async def _exists(conn: Any, name: str) -> bool:
    return bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name))


async def _server(conn: Any) -> str:
    """The cluster, the same whatever address reaches it: its system identifier and when its
    postmaster started (a cluster cloned from another's base backup keeps the identifier; the
    start time tells the two apart). PostgreSQL 15 lets every role run pg_control_system()
    unless an administrator revoked it; then the server's port stands in for the identifier
    (two addresses of one server still show one port and one start time)."""
    started = await conn.fetchval("SELECT pg_postmaster_start_time()::text")
    try:
        async with conn.transaction():  # a refusal must not leave the session's transaction
            ident = await conn.fetchval("SELECT system_identifier FROM pg_control_system()")
        return f"system {ident}, up since {started}"
    except asyncpg.InsufficientPrivilegeError:
        port = await conn.fetchval("SELECT current_setting('port')")
        return f"port {port}, up since {started}"


async def record_identity(conn: Any, schema: str, index: int, count: int) -> bool:
    """Record the database as shard ``index`` of ``count``; True when that changed the row."""
    q = check_identifier(schema)
    status = await conn.execute(
        f"INSERT INTO {q}.shard_identity (shard_index, shard_count) VALUES ($1, $2) "
        "ON CONFLICT (singleton) DO UPDATE SET shard_index = EXCLUDED.shard_index, "
        "shard_count = EXCLUDED.shard_count, recorded_at = now() "
        f"WHERE ({q}.shard_identity.shard_index, {q}.shard_identity.shard_count) "
        "IS DISTINCT FROM (EXCLUDED.shard_index, EXCLUDED.shard_count)",
        index,
        count,
    )
    return str(status).endswith(" 1")


def problems(
    facts: Sequence[ShardFacts], names: Sequence[str], *, reshard: bool = False
) -> list[str]:
    """One line per shard that is not what the configured map says (``facts[i]`` is shard i,
    ``names[i]`` how a message names it); empty when the map is sound. ``reshard``: the
    operator says the map was changed by the procedure, so a recorded (index, N) that differs
    is accepted (the offsets must still be where the new map puts them)."""
    n = len(facts)
    out: list[str] = []
    seen: dict[tuple[str, str], int] = {}
    for i, f in enumerate(facts):
        first = seen.setdefault((f.server, f.database), i)
        if first != i:
            # what else it shows (shard 0's identity and offsets) follows from being shard 0
            out.append(
                f"{names[i]}: is the same database as {names[first]} ({f.server}, database "
                f"{f.database}); give each shard its own database"
            )
            continue
        found = []
        if f.recorded is not None and f.recorded != (i, n) and not reshard:
            index, count = f.recorded
            found.append(
                f"is shard {index} of {count} (recorded by nev-ingest migrate), configured as "
                f"shard {i} of {n}"
            )
        foreign = sorted({p for _, p in f.partitions if p % n != i})
        if foreign:
            shown = ", ".join(map(str, foreign[:8])) + (" ..." if len(foreign) > 8 else "")
            found.append(
                f"holds consumer offsets of partition(s) {shown}, which belong to other "
                f"shards (p % {n} != {i})"
            )
        if found:
            out.append(f"{names[i]}: {'; '.join(found)}; {MOVE if reshard else PROCEDURE}")
    return out
