"""Before the workers start: every configured database (each shard) has the current schema."""

from __future__ import annotations

from urllib.parse import urlsplit

from ingest.config import Settings
from ingest.errors import UserError
from ingest.wiring import shard_pool_params
from storage.connect import connect
from storage.errors import SchemaError
from storage.migrate import require_current

__all__ = ["check_schema"]


async def check_schema(settings: Settings) -> None:
    """``UserError`` unless every configured database (each shard) has the current schema
    (run migrate)."""

    every = shard_pool_params(settings, "nev-ingest run (check)")
    for shard, params in enumerate(every):
        conn = await connect(params)
        try:
            await require_current(conn, params.schema)
        except SchemaError as exc:
            where = f"shard {shard} ({_host(params.dsn)}): " if len(every) > 1 else ""
            raise UserError(f"{where}{exc}") from None
        finally:
            await conn.close()


def _host(dsn: str) -> str:
    """Where a DSN points, without its credentials (for an error message)."""

    # the netloc as written, after the credentials: a multi-host URL (h1:5432,h2:5432) has no
    # single port for urlsplit to read (its .port raises)
    parts = urlsplit(dsn)
    hosts = parts.netloc.rpartition("@")[2] or "localhost"
    return f"{hosts}{parts.path}"
