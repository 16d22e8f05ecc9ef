"""Before the workers start: every configured database (each shard) has the current schema and
is the shard the partition map says it is (``storage.shard_map``)."""

from __future__ import annotations

from urllib.parse import urlsplit

from ingest.config import Settings
from ingest.errors import UserError
from ingest.wiring import shard_pool_params
from storage.connect import connect
from storage.errors import SchemaError
from storage.migrate import require_current
from storage.shard_map import ShardFacts, problems, read_facts

__all__ = ["check_map", "check_schema", "dsn_place", "shard_names"]


async def check_schema(settings: Settings) -> None:
    """``UserError`` unless every configured database (each shard) has the current schema
    (run migrate) and the shard map holds: no database listed twice under two URLs, each
    shard's recorded (index, N) and stored offsets where ``storage.shards`` puts them."""

    every = shard_pool_params(settings, "nev-ingest run (check)")
    facts: list[ShardFacts] = []
    for shard, params in enumerate(every):
        conn = await connect(params)
        try:
            await require_current(conn, params.schema)
            facts.append(await read_facts(conn, params.schema))
        except SchemaError as exc:
            where = f"shard {shard} ({dsn_place(params.dsn)}): " if len(every) > 1 else ""
            raise UserError(f"{where}{exc}") from None
        finally:
            await conn.close()
    check_map(facts, [p.dsn for p in every], bool(settings.storage.shards))


def check_map(
    facts: list[ShardFacts], dsns: list[str], sharded: bool, *, reshard: bool = False
) -> None:
    """``UserError`` unless the databases (``facts``, in ``storage.shards`` order) are the
    shards the map says (``storage.shard_map.problems``; ``reshard``: migrate --reshard)."""
    found = problems(facts, shard_names(dsns, sharded), reshard=reshard)
    if found:
        # one line per wrong shard: an operator fixes them all before the next start
        raise UserError("the shard map does not hold:\n" + "\n".join(found))


def shard_names(dsns: list[str], sharded: bool) -> list[str]:
    """How messages name each database: ``storage.shards[i] (host/db)``, or postgres.dsn."""
    if not sharded:
        return [f"postgres.dsn ({dsn_place(d)})" for d in dsns]
    return [f"storage.shards[{i}] ({dsn_place(d)})" for i, d in enumerate(dsns)]


def dsn_place(dsn: str) -> str:
    """Where a DSN points, without its credentials (for an error message)."""

    # the netloc as written, after the credentials: a multi-host URL (h1:5432,h2:5432) has no
    # single port for urlsplit to read (its .port raises)
    parts = urlsplit(dsn)
    hosts = parts.netloc.rpartition("@")[2] or "localhost"
    return f"{hosts}{parts.path}"
