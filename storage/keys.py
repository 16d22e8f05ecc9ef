"""The device key registry (``device_keys``, migration 0060) and the signature outcomes the
worker records (``signature_events``): load, add, revoke, record.

A VIN has at most one active key. ``add`` never replaces one silently: an activation
(``source='activation'``) for a VIN that has a key returns that key's row so the caller can
count a conflict; an admin rotates with ``replace=True`` (revoke and add in one transaction).
Functions take an asyncpg connection and a schema name (validated by the settings).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

__all__ = [
    "KEY_SOURCES",
    "DeviceKey",
    "active_keys",
    "add",
    "list_keys",
    "load",
    "record_events",
    "revoke",
    "revoked_vins",
]

KEY_SOURCES: Final = ("activation", "admin")
ALGORITHMS: Final = {1: "SM2", 2: "RSA"}


@dataclass(frozen=True, slots=True)
class DeviceKey:
    """A registered key: ``algorithm`` is the Table 8 type (1 SM2, 2 RSA)."""

    vin: str
    algorithm: int
    public_key: bytes
    source: str
    chip_id: str | None = None
    created_at: datetime | None = None
    revoked_at: datetime | None = None


def _row(r: Any) -> DeviceKey:
    return DeviceKey(
        vin=r["vin"],
        algorithm=r["algorithm"],
        public_key=bytes(r["public_key"]),
        source=r["source"],
        chip_id=r["chip_id"],
        created_at=r["created_at"],
        revoked_at=r["revoked_at"],
    )


_COLUMNS: Final = "vin, algorithm, public_key, source, chip_id, created_at, revoked_at"


async def load(conn: Any, schema: str, limit: int) -> dict[str, DeviceKey]:
    """The active keys, VIN -> key, at most ``limit`` (the worker's bounded cache)."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM {schema}.device_keys WHERE revoked_at IS NULL"
        " ORDER BY created_at DESC LIMIT $1",
        limit,
    )
    return {r["vin"]: _row(r) for r in rows}


async def active_keys(conn: Any, schema: str, vins: Iterable[str]) -> dict[str, DeviceKey]:
    """The active keys of ``vins`` (those that have one), VIN -> key."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM {schema}.device_keys"
        " WHERE revoked_at IS NULL AND vin = ANY($1::text[])",
        list(vins),
    )
    return {r["vin"]: _row(r) for r in rows}


async def revoked_vins(conn: Any, schema: str, limit: int) -> set[str]:
    """The VINs whose key was revoked and that have no active key, at most ``limit``: the
    latest revocations (those whose stolen key is likeliest still about), the same set on
    every call and in every worker, not whichever the server's plan met first."""
    rows = await conn.fetch(
        f"SELECT d.vin FROM {schema}.device_keys AS d WHERE d.revoked_at IS NOT NULL"
        f" AND NOT EXISTS (SELECT 1 FROM {schema}.device_keys AS a"
        " WHERE a.vin = d.vin AND a.revoked_at IS NULL)"
        " GROUP BY d.vin ORDER BY max(d.revoked_at) DESC, d.vin LIMIT $1",
        limit,
    )
    return {r["vin"] for r in rows}


async def list_keys(conn: Any, schema: str, *, include_revoked: bool = False) -> list[DeviceKey]:
    where = "" if include_revoked else " WHERE revoked_at IS NULL"
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM {schema}.device_keys{where} ORDER BY vin, created_at"
    )
    return [_row(r) for r in rows]


async def add(
    conn: Any, schema: str, key: DeviceKey, *, replace: bool = False
) -> tuple[bool, DeviceKey | None]:
    """Register ``key`` as its VIN's active key. Returns (added, the active key the VIN already
    had when not added; None when an activation's key was refused because the VIN's key was
    revoked). ``replace`` revokes that key first (an admin's rotation)."""
    if key.source not in KEY_SOURCES:
        raise ValueError(f"key source {key.source!r}: use one of {', '.join(KEY_SOURCES)}")
    async with conn.transaction():
        if replace:
            await conn.execute(
                f"UPDATE {schema}.device_keys SET revoked_at = now()"
                " WHERE vin = $1 AND revoked_at IS NULL",
                key.vin,
            )
        # Trust on first use is for a VIN's first key: after a revocation an activation
        # (perhaps carrying the stolen key) registers nothing; the admin adds the next key.
        added = await conn.fetchval(
            f"INSERT INTO {schema}.device_keys (vin, chip_id, algorithm, public_key, source)"
            " SELECT $1, $2, $3, $4, $5"
            f" WHERE $5 <> 'activation' OR NOT EXISTS (SELECT 1 FROM {schema}.device_keys"
            " WHERE vin = $1 AND revoked_at IS NOT NULL)"
            " ON CONFLICT (vin) WHERE revoked_at IS NULL DO NOTHING RETURNING id",
            key.vin,
            key.chip_id,
            key.algorithm,
            key.public_key,
            key.source,
        )
        if added is not None:
            return True, None
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM {schema}.device_keys WHERE vin = $1 AND revoked_at IS NULL",
            key.vin,
        )
        return False, None if row is None else _row(row)


async def revoke(conn: Any, schema: str, vin: str) -> int:
    """Revoke the VIN's active key; returns how many keys were revoked (0 or 1)."""
    status: str = await conn.execute(
        f"UPDATE {schema}.device_keys SET revoked_at = now() WHERE vin = $1 AND revoked_at IS NULL",
        vin,
    )
    return int(status.split()[-1])


async def record_events(
    conn: Any, schema: str, events: Iterable[tuple[str, datetime, datetime, str]]
) -> None:
    """Store (vin, ts, received_at, status) outcomes; a redelivered frame's is a no-op."""
    rows = list(events)
    if not rows:
        return
    await conn.executemany(
        f"INSERT INTO {schema}.signature_events (vin, ts, received_at, status)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        rows,
    )
