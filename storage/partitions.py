"""Plain PostgreSQL range partitions: the aligned slots, and creating the missing ones safely.

Two callers create partitions: maintenance (the window from ``backfill`` ago to ``premake``
ahead, every few minutes) and the batch writer (on demand, for the slots of an older or newer
frame time that the pipeline's time window let through, e.g. a backfill of last year's
captures). Both go through ``ensure``, which holds a transaction-level advisory lock while it
lists the partitions and creates what is missing: two workers (or a worker and maintenance)
asking for the same slot at once create it once, and never two overlapping partitions.

``SlotCache`` is the writer's memory of the slots known to exist, so the hot path costs one
set look-up per distinct slot of a batch and touches the catalog only for a slot it has not
seen yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from storage.errors import SchemaError
from storage.params import check_identifier

__all__ = [
    "DDL_LOCK_TIMEOUT",
    "ORIGIN",
    "PARTITION_LOCK_KEY",
    "SlotCache",
    "align",
    "ensure",
    "plan_partitions",
]

# Held (transaction-level) while partitions are listed and created.
PARTITION_LOCK_KEY: Final = 0x6E65_7600_0003
# How long partition DDL (CREATE ... PARTITION OF, retention's DROP) waits for its parent
# table's lock. A reader holding the parent (pg_dump, a report idle in its transaction) would
# otherwise keep it waiting up to statement_timeout, with every writer's COPY into the table
# queued behind the waiting DDL (and, for a creation, the partition lock held). Past this the
# DDL gives up (LockNotAvailable, SQLSTATE 55P03): maintenance tries again next pass, the
# writer retries the batch as it retries any transient error.
DDL_LOCK_TIMEOUT: Final = "2s"
# Partition slots are aligned to multiples of the interval since this instant (a Monday, as
# TimescaleDB aligns its buckets), so weekly partitions start on Mondays.
ORIGIN: Final = datetime(2000, 1, 3, tzinfo=UTC)
_ORIGIN_MS: Final = int(ORIGIN.timestamp() * 1000)

_BOUNDS = r"FROM \('([^']+)'\) TO \('([^']+)'\)"
# pg_get_expr prints a bound in the session's DateStyle and TimeZone, and ::timestamptz reads it
# back with them: with DateStyle SQL and TimeZone Asia/Shanghai it prints "... CST", which
# PostgreSQL reads back as US Central (14 h off). ISO prints a numeric offset and reads back
# exactly whatever the zone; UTC makes the text readable. Set for the listing's transaction only,
# so the caller's session (a user's psql, a role's defaults) is left as it was.
_PIN_SESSION: Final = "SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL TimeZone = 'UTC'"
_LIST = """
SELECT c.relname AS name,
       (regexp_match(pg_get_expr(c.relpartbound, c.oid), $2))[1]::timestamptz AS lo,
       (regexp_match(pg_get_expr(c.relpartbound, c.oid), $2))[2]::timestamptz AS hi
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = $1::regclass
"""
# storage.roles' partition-creating function (plain flavour, roles.enabled).
_DEFINER: Final = "%s.create_partition(text, timestamptz, timestamptz)"
# CREATE TABLE IF NOT EXISTS skips a same-named table whatever it is: check it is the partition.
_ATTACHED = """
SELECT EXISTS (
    SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass($1) AND inhparent = $2::regclass)
"""


def align(t: datetime, interval: timedelta) -> datetime:
    """The start of the slot holding ``t``."""
    return ORIGIN + ((t - ORIGIN) // interval) * interval


def plan_partitions(
    existing: Sequence[tuple[datetime, datetime]],
    start: datetime,
    end: datetime,
    interval: timedelta,
) -> list[tuple[datetime, datetime]]:
    """The ranges to create so that [start, end) is covered: aligned slots minus ``existing``.

    A slot partly covered by an existing partition (after ``interval`` changed) gets only its
    uncovered pieces, so new partitions never overlap old ones.
    """
    taken = sorted(existing)
    out: list[tuple[datetime, datetime]] = []
    slot = align(start, interval)
    while slot < end:
        lo, hi = slot, slot + interval
        for t_lo, t_hi in taken:
            if t_hi <= lo or t_lo >= hi:
                continue
            if t_lo > lo:
                out.append((lo, t_lo))
            lo = max(lo, t_hi)
            if lo >= hi:
                break
        if lo < hi:
            out.append((lo, hi))
        slot += interval
    return out


def _literal(t: datetime) -> str:
    return t.astimezone(UTC).strftime("'%Y-%m-%d %H:%M:%S+00'")


async def listing(conn: Any, schema: str, table: str) -> list[tuple[str, Any, Any]]:
    """(name, lo, hi) of every partition of ``schema.table`` (lo/hi None for a default one)."""
    async with conn.transaction():
        await conn.execute(_PIN_SESSION)
        rows = await conn.fetch(_LIST, f"{schema}.{table}", _BOUNDS)
    return [(r["name"], r["lo"], r["hi"]) for r in rows]


async def ensure(
    conn: Any,
    schema: str,
    tables: Iterable[str],
    ranges: Sequence[tuple[datetime, datetime]],
    interval: timedelta,
) -> list[str]:
    """Create the partitions of ``tables`` missing to cover every [start, end) of ``ranges``
    (aligned to ``interval``), in one transaction under ``PARTITION_LOCK_KEY``; returns the
    names created. ``conn`` must not be inside a transaction of the caller's batch: creating a
    partition locks its parent table until this transaction commits. Raises
    ``asyncpg.LockNotAvailableError`` (nothing created) when a parent stays locked by another
    session for ``DDL_LOCK_TIMEOUT``."""
    schema = check_identifier(schema)
    created: list[str] = []
    async with conn.transaction():
        await conn.execute(_PIN_SESSION)  # the bounds listed and written below are UTC ISO
        await conn.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK_KEY)
        # after the advisory lock: waiting for another creator is fine, for a reader is not
        await conn.execute(f"SET LOCAL lock_timeout = '{DDL_LOCK_TIMEOUT}'")
        # With database roles (storage.roles) the writer has no DDL rights: the owner's
        # SECURITY DEFINER function creates exactly this partition for it.
        definer = await conn.fetchval("SELECT to_regprocedure($1) IS NOT NULL", _DEFINER % schema)
        for table in tables:
            existing = [(lo, hi) for _, lo, hi in await listing(conn, schema, table) if lo]
            wanted: list[tuple[datetime, datetime]] = []
            for start, end in ranges:
                wanted += plan_partitions([*existing, *wanted], start, end, interval)
            for lo, hi in sorted(wanted):
                name = f"{table}_p{lo.astimezone(UTC):%Y%m%d%H%M}"
                bounds = f"FOR VALUES FROM ({_literal(lo)}) TO ({_literal(hi)})"
                if definer:
                    await conn.execute(
                        f"SELECT {schema}.create_partition($1, $2, $3)", table, lo, hi
                    )
                else:
                    await conn.execute(
                        f"CREATE TABLE IF NOT EXISTS {schema}.{name} PARTITION OF "
                        f"{schema}.{table} {bounds}"
                    )
                # A same-named plain or detached table would be taken for the partition, and
                # every frame of the slot dead-lettered: stop the writer with what to do.
                if not await conn.fetchval(_ATTACHED, f"{schema}.{name}", f"{schema}.{table}"):
                    raise SchemaError(
                        f"table {schema}.{name} exists but is not a partition of "
                        f"{schema}.{table}, so frames of {lo.isoformat()} .. {hi.isoformat()} "
                        f"cannot be stored: rename or drop it, or attach it (ALTER TABLE "
                        f"{schema}.{table} ATTACH PARTITION {schema}.{name} {bounds}), "
                        "then restart"
                    )
                created.append(name)
    return created


class SlotCache:
    """The slots (multiples of ``interval`` since ``ORIGIN``) known to have their partitions."""

    def __init__(self, interval: timedelta) -> None:
        self.interval = interval
        self._ms = int(interval.total_seconds() * 1000)
        self._known: set[int] = set()

    def missing(self, times_ms: Iterable[int | None]) -> list[int]:
        """The slots of ``times_ms`` (epoch ms; None skipped) not known to exist, sorted."""
        ms, origin = self._ms, _ORIGIN_MS
        slots = {(t - origin) // ms for t in times_ms if t is not None}
        return sorted(slots - self._known)

    def bounds(self, slot: int) -> tuple[datetime, datetime]:
        lo = ORIGIN + slot * self.interval
        return lo, lo + self.interval

    def add(self, slots: Iterable[int]) -> None:
        self._known.update(slots)

    def clear(self) -> None:
        """Forget everything (a partition was dropped behind the cache's back)."""
        self._known.clear()
