"""The alert changes waiting to be saved by the next batch of their alert's shard, in order.

A change waits when its alert's row is on another shard than the batch of the frame that made
it (a connector's two charger paths, their partitions on different shards), when it came
without a frame (a restore's, a rules reload's: source None), or when a change to the same
alert (kind, entity, rule, on the same shard) waits already.

The last is what keeps the engine's order in the database and on the alerts topic. A change
for another shard is registered here when it is EVALUATED, held until its batch commits: the
alert's own shard's lane may meanwhile evaluate the next frame of the alert's path and, were
it saved in that batch's transaction, a raise made after a waiting clear would be saved first
(merged into the still-open row by ``alerts_one_open``) and the clear, saved later, would
close the merged row (the database with no open alert while the engine holds one, 'raised'
published before 'cleared'). So a batch's changes to an alert with a change waiting wait
behind it, held by their own batch's commit too.

A hold is settled once its batch committed: the changes of a fenced frame are dropped (the
partition's new owner decides them again), the others become ready. A batch abandoned
uncommitted (a stop, a revoke) never settles: ``lost`` drops its hold with the partitions.

A ready change TAKEN by a batch of its shard stays registered, held by that batch, until the
batch commits: the shard's other write lane may meanwhile evaluate the alert's next change,
and saved by its own transaction, which can commit first, a raise after a taken clear was
merged into the still-open row and then closed by the clear. The taking batch abandoned
(the writer's abandon marks its hold, ``Batch.abandon``), they go with it at the next
``lost``, as before: lost, as in a crash between the two commits. A live taking batch keeps
them, whatever other partitions ``lost`` takes: only their alert's partition lost drops them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field

from alerts import AlertChange

__all__ = ["Hold", "Source", "Waiting"]

# The (topic, partition) of the frame that made a change; None: no frame (a restore, a reload).
Source = tuple[str, int] | None

_Key = tuple[int, str, str, str]  # (shard of the alert's row, kind, entity, rule)


@dataclass(eq=False, slots=True)
class Hold:
    """One batch's waiting changes, ready once it committed (``settled``); ``dropped``: it
    was taken for abandoned, its changes removed (should it commit after all, ``settle``
    adds them back, but for those to alerts of partitions lost since); ``abandoned``: its
    batch was given up uncommitted (``Batch.abandon``), it never settles."""

    settled: bool = False
    dropped: bool = False
    abandoned: bool = False
    changes: list[tuple[AlertChange, Source]] = field(default_factory=list)
    # The keys of the registered changes its batch took (``take``): saved first in its own
    # transaction, they do not keep back its own later changes to their alerts. Exactly the
    # entries taken by it (``lost`` takes off those it drops), so that ``route``'s check
    # "every change registered to this alert was taken by this batch" is a count.
    taken: Counter[_Key] = field(default_factory=Counter)


# (change, its frame, the hold of the batch that made it, the hold of the batch that took it)
_Entry = tuple[AlertChange, Source, Hold | None, Hold | None]


class Waiting:
    """See the module docstring. ``home``: the shard that holds a change's alert row."""

    def __init__(self, home: Callable[[AlertChange], int]) -> None:
        self._home = home
        self._entries: list[_Entry] = []
        self._keys: Counter[_Key] = Counter()  # of the entries, for the per-change check
        # The holds ``lost`` dropped whose batch may still commit (``settle`` puts their
        # changes back): a later ``lost`` removes from them the changes to its alerts too.
        self._dropped: set[Hold] = set()

    def _key(self, change: AlertChange) -> _Key:
        a = change.alert
        return (self._home(change), a.entity_kind, a.entity_id, a.rule_id)

    def _set(self, entries: list[_Entry]) -> None:
        self._entries = entries
        self._keys = Counter(self._key(c) for c, _, _, _ in entries)

    def _append(self, change: AlertChange, source: Source, hold: Hold | None) -> None:
        self._entries.append((change, source, hold, None))
        self._keys[self._key(change)] += 1

    def ready(self) -> bool:
        """Whether ``take`` has a change for some shard (not all kept back by a batch not
        committed yet): what makes an idle worker write a changes-only batch."""
        held: set[_Key] = set()
        for change, _, hold, taker in self._entries:
            key = self._key(change)
            if key not in held and taker is None and (hold is None or hold.settled):
                return True
            held.add(key)
        return False

    def add(self, changes: Iterable[AlertChange]) -> None:
        """Changes of no frame (a restore's, a reload's): ready at once."""
        for c in changes:
            self._append(c, None, None)

    def route(
        self, shard: int, made: list[AlertChange], source: Source, hold: Hold
    ) -> list[AlertChange]:
        """Of the changes a slice of frames of shard ``shard``'s batch made (in the engine's
        order, with no ``await`` since), the ones its own transaction saves; the others wait
        here behind ``hold``, the batch's."""
        own: list[AlertChange] = []
        for c in made:
            key = self._key(c)
            if key[0] == shard and self._keys[key] == hold.taken[key]:
                own.append(c)
                continue
            self._append(c, source, hold)
            hold.changes.append((c, source))
        return own

    def settle(self, hold: Hold, fenced: Collection[tuple[str, int]]) -> None:
        """``hold``'s batch committed with ``fenced`` partitions (those of the transaction
        that committed): the changes it took are done (saved, or dropped as fenced), the
        changes of its fenced frames go, the others are ready."""
        hold.settled = True
        if any(e[3] is hold for e in self._entries):
            self._set([e for e in self._entries if e[3] is not hold])
        hold.taken.clear()
        self._dropped.discard(hold)
        if hold.dropped:  # taken for abandoned: back, behind what waits now
            for c, src in hold.changes:
                if src not in fenced:
                    self._append(c, src, None)
            return
        if any(src in fenced for _, src in hold.changes):
            self._set([e for e in self._entries if e[2] is not hold or e[1] not in fenced])

    def take(self, shard: int, taker: Hold) -> list[tuple[AlertChange, Source]]:
        """The ready changes of ``shard``'s alerts, in order, for ``taker``'s batch: they
        stay registered until it settles. A change held by a batch not committed yet (made
        or taken by it) keeps back the later changes to its alert."""
        mine: list[tuple[AlertChange, Source]] = []
        entries: list[_Entry] = []
        held: set[_Key] = set()
        for change, source, hold, took in self._entries:
            key = self._key(change)
            if (
                key[0] != shard
                or took is not None
                or key in held
                or (hold is not None and not hold.settled)
            ):
                held.add(key)
            else:
                mine.append((change, source))
                taker.taken[key] += 1
                took = taker
            entries.append((change, source, hold, took))
        self._entries = entries  # the same changes: the keys' counts stay
        return mine

    def lost(
        self, lost: Collection[tuple[str, int]], theirs: Callable[[str | None, int | None], bool]
    ) -> None:
        """Partitions gone: every waiting change to their alerts goes, whichever frame made
        it: the next owner restores the alert from the database and decides it again (also
        this worker's own copy, restored should the partition come back), and saved later,
        under it, the change closed or updated that owner's row (as for a fenced partition,
        ``settle``). A committed frame's change to another partition's alert stays. The
        holds of the lost partitions' batches not committed go too (taken for abandoned: the
        next owner reads those frames again; should one commit after all, ``settle`` puts
        back its changes but those to the lost partitions' alerts, dropped here, now or by a
        later call). A change taken by a batch goes only with its
        alert's partition or when that batch was abandoned (``Hold.abandoned``: lost, as in a
        crash between the two commits; it must not hold its alert's later changes back for
        good): taken by a live batch (of a partition not lost), it keeps holding them until
        that batch commits."""
        gone = {
            h for _, src, h, _ in self._entries if h is not None and not h.settled and src in lost
        }
        for hold in gone:
            hold.dropped = True
        self._dropped |= gone
        for hold in [h for h in self._dropped if h.abandoned]:
            self._dropped.discard(hold)  # never settles: nothing to put back
        for hold in self._dropped:
            hold.changes = [
                (c, s) for c, s in hold.changes if not theirs(c.alert.topic, c.alert.partition)
            ]
        kept: list[_Entry] = []
        for entry in self._entries:
            c, _, h, took = entry
            if (
                h not in gone
                and not (took is not None and took.abandoned)
                and not theirs(c.alert.topic, c.alert.partition)
            ):
                kept.append(entry)
            elif took is not None:
                took.taken[self._key(c)] -= 1
        self._set(kept)
