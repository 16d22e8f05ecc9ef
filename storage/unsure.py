"""A write whose COMMIT was sent but whose answer never came: committed or not?

The COMMIT may have reached the server, and then the connection dropped
(``storage.write_timeout_s`` cutting it in that window, a reset, a failover): the transaction
may have committed, or not (the COMMIT never arrived: the server rolled it back). Taken for
another consumer's work (fenced) when it did commit, the batch was counted abandoned, the
partitions' pending latest_state tuples were dropped (never merged while the worker kept the
partitions: its next merge cleared ``latest_from``) and its alert messages waited in the
outbox for the next assignment. Taken for committed when it did not, a worker that no longer
owns the partition (a zombie after a network split, whose new owner wrote a batch ending at
the same offset) kept latest_state tuples of a partition not its own and published alert
messages whose outbox rows never committed.

So the transaction's own status decides. Each attempt keeps its transaction id (``Sent.xact``,
a column of the fence's statement) with what it did. The retry's fence locks the partitions'
offset rows, which that attempt's fence had locked: by then that transaction has ended, and
``txid_status`` says how (one query, only on a retry after such an attempt, and only when the
offsets do not already rule it out):

* ``committed`` - and every partition at that attempt's end offset or past it (another
  consumer went on since; offsets only move forward): the retry finishes the batch as that
  attempt left it (``Sent``): committed, its tuples pending or merged as the commit said.
* ``aborted`` - it did not commit: the batch is written as usual (a partition found at the
  end offset then is someone else's: fenced).
* NULL - the id is too old for the server to know (its commit log truncated): the offsets
  decide alone, as they would have before.

A partition still before that attempt's end (nothing stored, at the batch's start, or in
between) proves it did not commit, whatever the status: no query then.

A changes-only transaction (alert changes without frames: a rules reload's clears, an idle
worker's ``for_s`` clears) has no offsets: nothing to fence with, no row locks for the retry
to wait behind. Before, its retry wrote its alert rows and outbox rows again after a COMMIT
whose answer was lost: a second alert message. Now it records its id too (``mark``: one
statement, only in such a transaction) and holds a transaction-level advisory lock keyed by
that id; the retry takes the same lock - so that transaction has ended - and asks
``txid_status``:

* ``committed`` - finished as committed (``Sent``): nothing written again, the alert messages
  it saved handed back once;
* ``aborted`` - written as usual;
* NULL - no offsets to decide: written again. A duplicate alert message at worst (the alerts
  topic is at-least-once, docs/alerts.md), never a change lost; the retry would have to come
  after the server's commit log was truncated past the id (hundreds of millions of
  transactions later), or in another life of the server than the one that gave the id
  (below).

Without offsets nothing else checks the status, and an id is one server's: after a failover
to an asynchronous replica that never got the attempt, the new primary hands out the same ids
again, and once past it ``txid_status`` answers for another transaction - a ``committed``
there would drop this one's changes (a raise or a clear never stored). So does a crash of
one backend on the same server: the postmaster reinitialises without restarting, and an id
whose WAL never reached the disk is handed out again after the crash recovery. So ``mark``
also keeps the server's life - when it started (``pg_postmaster_start_time``) and the redo
point of its last checkpoint (``pg_control_checkpoint``: a crash recovery ends with one) - and
a retry on a server whose life differs gets NULL: written again. A plain restart or an
ordinary checkpoint between the attempt and its retry (seconds apart) does that too: a
duplicate message at worst.

The retry must be of the same batch: such batches have no ranges to tell them apart
(``ranges_key`` is empty), so the writer keeps no record of them across ``write_batch`` calls;
the caller keeps the batch's ``Unsure`` with the batch (``write_batch(unsure=...)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from storage.batch import WriteResult
from storage.latest_pending import Delta, PartitionLatest, Placements
from storage.offsets import OffsetRange, TopicPartition

__all__ = [
    "KEEP",
    "Sent",
    "Unsure",
    "UnsureWrites",
    "committed_by",
    "did_commit",
    "mark",
    "ranges_key",
]

# Batches whose outcome stays unknown after write_batch gave up (the database away past the
# retries): their next write_batch looks again. A few at most are retried at a time (one per
# lane); older ones were abandoned (revoked, stopped) and only hold memory.
KEEP: Final = 16

RangesKey = tuple[tuple[TopicPartition, int | None, int], ...]


@dataclass(slots=True)
class Sent:
    """What an attempt had done when it sent its COMMIT: applied to the writer's memory once
    that commit is known to have happened (``StorageWriter._transaction``)."""

    result: WriteResult  # attempts and seconds not filled in
    deltas: dict[TopicPartition, Delta]
    merged: list[TopicPartition]
    placed: Placements
    began: dict[TopicPartition, PartitionLatest | None]
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    xact: int | None = None  # its transaction's id (None: unknown, the offsets decide)
    # Changes only (``mark``): the life of the server that gave the id - when it started and
    # where its last checkpoint's redo began. Another start (a failover to a replica that
    # never got the attempt) or a crash recovery (it ends with a checkpoint) may hand the id
    # out again to another transaction: its status is then not this attempt's.
    server_life: str | None = None


@dataclass(slots=True)
class Unsure:
    """A batch's last attempt that sent its COMMIT without getting the answer (None: none, or
    its outcome is known); each attempt sets it right before its COMMIT, and clears it when
    its fence shows that attempt did not commit."""

    sent: Sent | None = None


def committed_by(
    sent: Sent | None,
    ranges: Mapping[TopicPartition, OffsetRange],
    stored: Mapping[TopicPartition, int | None],
) -> set[TopicPartition] | None:
    """The partitions whose stored offset is ``sent``'s end offset, when the fence's
    ``stored`` offsets allow that attempt to have committed; None when they prove it did not
    (or none was sent). Allowing is not proving: another consumer may have stored the same
    end offsets (``did_commit`` asks the transaction's status).

    A partition before that attempt's end offset (nothing stored, stored at or before the
    batch's start, or in between) proves it did not commit: its commit would have moved every
    partition it wrote to its end, and offsets only move forward."""
    if sent is None:
        return None
    if not ranges:
        return set()  # changes only: no offsets to rule it out, its status decides alone
    if not sent.committed:
        return None
    done: set[TopicPartition] = set()
    for tp, rng in ranges.items():
        have = stored.get(tp)
        end = sent.committed.get(tp)  # None: that attempt had found the partition fenced
        if have is None or (rng.start is not None and have <= rng.start):
            return None
        if end is not None and have < end:
            return None
        if end == have:
            done.add(tp)
    return done or None


async def did_commit(conn: Any, sent: Sent, *, offsets: bool = True) -> bool:
    """Whether ``sent``'s transaction committed, asked of the server on ``conn`` - after the
    retry's fence took the row locks that transaction held, so it has ended. Only
    ``committed`` is a commit; an id the server no longer knows (NULL: its commit log
    truncated past it) or no id leaves it to the offsets (``committed_by``, checked first).

    Without ``offsets`` (a changes-only transaction, ``mark``) the retry first waits for that
    transaction's advisory lock (it has ended then), in the same statement; NULL or no id is
    then not a commit: written again (the module docstring)."""
    if sent.xact is None:
        return offsets
    if offsets:
        status = await conn.fetchval(_STATUS, sent.xact)
    else:
        status = await conn.fetchval(_ENDED_STATUS, sent.xact, sent.server_life)
    if status is None:
        return offsets
    # 'in progress' cannot be seen behind the row locks or the advisory lock; were it, not
    # taking the batch as committed is the safe side (written as usual: fenced, nothing
    # doubled - or, changes only, a duplicate message rather than a lost change)
    return bool(status == "committed")


async def mark(conn: Any) -> tuple[int, str]:
    """A changes-only transaction's id and its server's life (``Sent.server_life``),
    and its advisory lock that a retry after a lost COMMIT answer waits for (``did_commit``):
    one statement, in that transaction, before its writes. Not taken by a batch with offsets:
    its fence's row locks do the same."""
    row = await conn.fetchrow(_MARK)
    return int(row[0]), str(row[1])


# txid_status raises for an id the server has not reached (a failover to a replica that had
# not replayed the attempt: it never committed there); the fence already took this
# transaction's id, so any id below it has been reached. txid_status is volatile: not
# evaluated for the other branch.
_STATUS: Final = (
    "SELECT CASE WHEN $1::int8 < txid_current() THEN txid_status($1) ELSE 'aborted' END"
)

# The advisory lock of a changes-only transaction: the two-key form (a key space of its own,
# apart from the one-key locks of storage.migrate, .maintenance and .partitions), "nev\4"
# and the id's low 32 bits as an int4. Two ids 2^32 apart share a key: a wait, never a wrong
# answer (the status is asked of the whole id). Functions in FROM are lateral: the lock is
# taken before the row (and the status) is produced.
_LOCK_CLASS: Final = 0x6E65_7604
_LOCK_OF = f"pg_advisory_xact_lock({_LOCK_CLASS}, ((%s & 4294967295) - 2147483648)::int4)"
# The server's life: its start and its last checkpoint's redo point (module docstring).
_LIFE: Final = (
    "(pg_postmaster_start_time()::text || ' ' || (pg_control_checkpoint()).redo_lsn::text)"
)
_MARK: Final = f"SELECT x, {_LIFE} FROM txid_current() x, {_LOCK_OF % 'x'}"
# NULL on a server whose life is not the one that gave the id (module docstring)
_ENDED_STATUS: Final = (
    f"SELECT CASE WHEN {_LIFE} IS DISTINCT FROM $2::text THEN NULL "
    "WHEN $1::int8 < txid_current() THEN txid_status($1) ELSE 'aborted' END "
    f"FROM {_LOCK_OF % '$1::int8'}"
)


def ranges_key(ranges: Mapping[TopicPartition, OffsetRange]) -> RangesKey:
    """A batch by what it covers: its retry (the caller's, after ``StorageUnavailable``)
    covers the same ranges."""
    return tuple(sorted((tp, r.start, r.next) for tp, r in ranges.items()))


class UnsureWrites:
    """Attempts whose outcome was still unknown when ``write_batch`` gave up, by batch."""

    def __init__(self) -> None:
        self._sent: dict[RangesKey, Sent] = {}

    def take(self, key: RangesKey) -> Sent | None:
        return self._sent.pop(key, None)

    def keep(self, key: RangesKey, sent: Sent) -> None:
        self._sent[key] = sent
        while len(self._sent) > KEEP:
            del self._sent[next(iter(self._sent))]  # the oldest: dicts keep insertion order
