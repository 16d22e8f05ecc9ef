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
  deployment migrated before the identity existed).

``problems`` turns what ``read_facts`` found into one line per problem, each saying what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from storage.params import check_identifier

__all__ = ["PROCEDURE", "ShardFacts", "problems", "read_facts", "record_identity"]

# What a changed map needs: the documented procedure, then migrate --reshard records it.
PROCEDURE: Final = (
    "restore the previous storage.shards order and count, or change the shard map by the "
    'procedure in docs/storage.md ("Changing N": stop, move, re-map) and then run '
    "`nev-ingest migrate --reshard`"
)


@dataclass(frozen=True, slots=True)
class ShardFacts:
    """What one database says about itself."""

    database: str  # current_database()
    recorded: tuple[int, int] | None  # (index, N) in shard_identity; None: never recorded
    partitions: tuple[tuple[str, int], ...]  # (topic, partition) in consumer_offsets


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
    return ShardFacts(database, recorded, partitions)


async def _exists(conn: Any, name: str) -> bool:
    return bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name))


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
    """One line per problem of the configured map (``facts[i]`` is shard i, ``names[i]`` how a
    message names it); empty when the map is sound. ``reshard``: the operator says the map was
    changed by the procedure, so a recorded (index, N) that differs is accepted (the offsets
    must still be where the new map puts them)."""
    n = len(facts)
    out: list[str] = []
    for i, f in enumerate(facts):
        if f.recorded is not None and f.recorded != (i, n) and not reshard:
            index, count = f.recorded
            out.append(
                f"{names[i]}: is shard {index} of {count} (recorded by nev-ingest migrate), "
                f"configured as shard {i} of {n}; {PROCEDURE}"
            )
        foreign = sorted({p for _, p in f.partitions if p % n != i})
        if foreign:
            shown = ", ".join(map(str, foreign[:8])) + (" ..." if len(foreign) > 8 else "")
            out.append(
                f"{names[i]}: holds consumer offsets of partition(s) {shown}, which belong "
                f"to other shards (p % {n} != {i}); {PROCEDURE}"
            )
    return out
