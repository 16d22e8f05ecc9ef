"""The pending latest_state set (storage/latest_pending.py): newest frame time wins, an older
reissue does not replace, connectors merge column by column, the cap and the interval make a
partition due, and ``latest_from`` is the first offset still pending."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from contract.charger import ChargerRows, ConnectorStatusRow
from contract.rows import FrameRows
from devtools.sim.bench_frames import realtime_frames
from ingest.decoders.fast import decode_rows
from storage.latest_kinds import BATTERY, merge_newest
from storage.latest_pending import Delta, PendingLatest, collect
from storage.offsets import OffsetRange

pytestmark = pytest.mark.unit

TP = ("nev.vehicle.raw", 3)


def _frames(vehicles: int, per_vehicle: int, start_ms: int = 1_700_000_000_000) -> list[FrameRows]:
    out = []
    for _, value in realtime_frames(vehicles, per_vehicle, start_ms=start_ms):
        rows = decode_rows(value)
        assert isinstance(rows, FrameRows) and rows.vehicle is not None
        out.append(rows)
    return out


def test_newest_frame_time_wins_and_an_older_reissue_does_not_replace() -> None:
    frames = _frames(3, 4)  # 3 vehicles, 4 frames each, 10 s apart
    newest: dict[str, int] = {}
    for f in frames:
        assert f.ts_ms is not None
        newest[f.vin] = max(newest.get(f.vin, 0), f.ts_ms)
    # the batch in reverse: the newest frame of each vehicle comes first, older ones after it
    d = collect(reversed(frames), first=100)
    assert {vin: e[0] for vin, e in d.vehicles.items()} == newest
    assert d.first == 100 and len(d) == 3
    # the native COPY tuple travels with the row, for the merge's staging COPY
    assert all(e[2] for e in d.vehicles.values())

    pending = PendingLatest(interval_s=5.0)
    pending.committed({TP: d}, merged=[], nexts={TP: 112}, now=0.0)
    older = collect(frames[:3], first=112)  # a reissue of older frames, later offsets
    pending.committed({TP: older}, merged=[], nexts={TP: 115}, now=0.0)
    held = pending.parts[TP]
    assert {vin: e[0] for vin, e in held.pending.vehicles.items()} == newest
    assert held.next == 115
    # where a crash replay must begin: the first offset still pending, not the last batch's
    assert pending.latest_from(TP, None) == 100


def test_connector_tuples_are_kept_per_frame_time_and_merge_as_one_batchs_rows() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    t1 = datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC)
    into: dict[str, list[tuple[object, ...]]] = {}
    newer = (t1, None, "OP1", None, 380.0)  # the newest report lacks the status
    older = (t0, None, "OP1", 2, 370.0)
    Delta.put_values(into, "OP1:1", newer)
    Delta.put_values(into, "OP1:1", older)  # arrives later, older frame time
    items = Delta.items(into)
    assert merge_newest(items) == [("OP1:1", (t1, None, "OP1", 2, 380.0))]
    # A stored state between the two: only the newer tuple takes part, so its empty status
    # leaves the stored one (COALESCE) instead of the late frame's. Merged into one tuple in
    # memory, the late frame's status 2 overwrote the newer stored status.
    between = datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC)
    assert merge_newest(items, {"OP1:1": between}) == [("OP1:1", newer)]
    assert into["OP1:1"] == [older, newer]  # in time order
    # A tuple of a time already there is merged into it (the later one last); the older one,
    # whose every value the newer now holds, can give nothing any more: dropped.
    Delta.put_values(into, "OP1:1", (t1, None, "OP1", 4, None))
    assert into["OP1:1"] == [(t1, None, "OP1", 4, 380.0)]


def test_a_timeline_stays_as_short_as_its_columns_however_many_reports() -> None:
    # Memory: the pending entities are capped, not their tuples; an interval longer than the
    # report period must not grow a timeline per report.
    into: dict[str, list[tuple[object, ...]]] = {}
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(1000):  # full reports: the newest covers every older one
        Delta.put_values(into, "A", (t0 + timedelta(seconds=i), None, "OP1", i % 5, 380.0))
    assert len(into["A"]) == 1 and into["A"][0][3] == 999 % 5
    for i in range(1000):  # a status, then an output, alternating
        at = t0 + timedelta(seconds=i)
        row = (at, None, "OP1", 3, None) if i % 2 else (at, at, "OP1", None, 400.0)
        Delta.put_values(into, "B", row)
    assert len(into["B"]) <= 3  # at most one tuple per column it alone still gives
    items = Delta.items(into)
    # the newest report is a status: no receipt (received_at goes with ts), the rest merged
    want = (t0 + timedelta(seconds=999), None, "OP1", 3, 400.0)
    assert merge_newest(items)[1] == ("B", want)


def test_due_after_the_interval_or_at_the_cap_and_a_merge_empties_the_set() -> None:
    pending = PendingLatest(interval_s=5.0, cap=4)
    frames = _frames(3, 1)
    d = collect(frames, first=0)
    pending.committed({TP: d}, merged=[], nexts={TP: 3}, now=100.0)
    pending.parts[TP].merged_at = 100.0
    assert not pending.due(TP, None, 102.0)  # 2 s since the last merge
    assert pending.due(TP, None, 105.0)  # the interval passed
    two_more = collect(_frames(5, 1)[3:], first=3)  # two new vehicles: 5 >= cap 4
    assert pending.due(TP, two_more, 101.0)
    assert len(pending.to_merge(TP, two_more)) == 5
    assert len(pending.parts[TP].pending) == 3  # to_merge leaves the set as it is
    pending.committed({TP: two_more}, merged=[TP], nexts={TP: 5}, now=101.0)
    assert len(pending.parts[TP].pending) == 0 and pending.latest_from(TP, None) is None


def test_interval_zero_merges_only_refilled_tuples_and_refill_keeps_latest_from() -> None:
    pending = PendingLatest(interval_s=0.0)
    assert not pending.bounded
    assert pending.batch_deltas([], [], [], {TP: OffsetRange(0, 1)}, None) == {}
    pending.assigned(TP, next_offset=50, latest_from=40)
    assert pending.parts[TP].refill_until == 50 and pending.parts[TP].seek_from == 40
    assert not pending.due(TP, None, 0.0)  # nothing refilled yet
    pending.refill(TP, _frames(2, 1))
    assert pending.due(TP, None, 0.0)
    assert pending.latest_from(TP, None) == 40


def test_statuses_become_connector_tuples() -> None:
    ts = datetime(2026, 1, 1, tzinfo=UTC)
    status = ConnectorStatusRow("MA1234567", "01", ts, 3, None, None, "binary")
    frame = ChargerRows(operator_id="MA1234567")
    frame.statuses.append(status)
    d = collect([frame], first=7)
    assert list(d.chargers) == ["MA1234567:01"] and d.chargers["MA1234567:01"][0][3] == 3


def test_a_one_partition_batch_gives_what_the_grouping_pass_gives() -> None:
    # batch_deltas skips its grouping pass when the batch has one partition: the same tuples
    # and the same first offset as through the grouping (taken when two partitions are there),
    # rejected frames (not kept) left out.
    frames = _frames(4, 3)
    kept = [i for i in range(len(frames)) if i not in (0, 5)]
    offsets = list(range(200, 200 + len(frames)))
    other = ("nev.vehicle.raw", 4)
    pending = PendingLatest(interval_s=5.0)
    for start in (None, 190):
        one = pending.batch_deltas(
            frames, kept, [TP] * len(frames), {TP: OffsetRange(start, 212)}, offsets
        )
        two = pending.batch_deltas(
            frames,
            kept,
            [TP] * len(frames),
            {TP: OffsetRange(start, 212), other: OffsetRange(0, 1)},
            offsets,
        )
        assert list(one) == list(two) == [TP]
        assert one[TP].vehicles == two[TP].vehicles and len(one[TP]) == 4
        assert one[TP].first == two[TP].first == (201 if start is None else 190)
    vin = frames[5].vin
    newest = max(frames[i].ts_ms or 0 for i in kept if frames[i].vin == vin)
    assert one[TP].vehicles[vin][0] == newest


def test_a_merge_places_only_entities_not_placed_since_the_assignment() -> None:
    pending = PendingLatest(interval_s=5.0)
    d = collect(_frames(3, 1), first=0)
    vins = sorted(d.vehicles)
    first = pending.placements(TP, d, "vehicle")
    assert first == {"vehicle": dict.fromkeys(vins, TP)}
    pending.committed({TP: d}, merged=[TP], nexts={TP: 3}, now=0.0, placed=first)
    assert pending.placements(TP, d, "vehicle") == {}  # placed: nothing to record again
    other = ("nev.vehicle.raw", 4)  # an entity seen on another partition is placed there
    assert pending.placements(other, d, "vehicle") == {"vehicle": dict.fromkeys(vins, other)}
    pending.forget([TP])  # revoked: placed again with the next merge after it comes back
    assert pending.placements(TP, d, "vehicle") == first


def test_an_entity_unplaced_is_placed_again_by_its_partitions_next_merge() -> None:
    # A device that moved away (another worker stamped it elsewhere, the sink dropped it) and
    # comes back: taken for placed here, its placement was never recorded again.
    pending = PendingLatest(interval_s=5.0)
    d = collect(_frames(3, 1), first=0)
    vins = sorted(d.vehicles)
    pending.committed({TP: d}, [TP], {TP: 3}, 0.0, pending.placements(TP, d, "vehicle"))
    pending.unplace("vehicle", vins[:1])
    pending.unplace("battery", vins)  # another kind's: nothing placed, nothing changes
    assert pending.placements(TP, d, "vehicle") == {"vehicle": {vins[0]: TP}}
    assert pending.placed_on(TP) == {"vehicle": set(vins[1:])}


class _Tracked(set[str]):
    """A partition's placed entities that record whether anything iterated them."""

    read = False

    def __iter__(self) -> Iterator[str]:
        type(self).read = True
        return super().__iter__()


def test_forget_drops_one_partitions_placements_without_scanning_the_others() -> None:
    pending = PendingLatest(interval_s=5.0)
    d = collect(_frames(3, 1), first=0)
    other = ("nev.vehicle.raw", 4)
    for tp in (TP, other):
        pending.committed({tp: d}, [tp], {tp: 3}, 0.0, pending.placements(tp, d, "vehicle"))
    # The same vehicles moved to ``other``: placed there now, no longer on TP.
    assert pending.placed_on(TP) == {"vehicle": set()}
    assert pending.placed_on(other) == {"vehicle": set(d.vehicles)}
    third = ("nev.vehicle.raw", 5)
    e = collect(_frames(2, 1, start_ms=1_800_000_000_000), first=0)
    e.vehicles = {f"X{v}": t for v, t in e.vehicles.items()}  # other vehicles
    pending.committed({third: e}, [third], {third: 2}, 0.0, pending.placements(third, e, "vehicle"))
    kept = _Tracked(pending.placed_on(other)["vehicle"])
    pending.placed_on(other)["vehicle"] = kept
    _Tracked.read = False
    pending.forget([third])  # a fenced write's partition: per write, must not scan the rest
    assert not _Tracked.read  # the other partitions' placements were not iterated
    assert pending.placed_on(third) == {}
    assert pending.placements(third, e, "vehicle") == {"vehicle": dict.fromkeys(e.vehicles, third)}
    assert pending.placed_on(other) == {"vehicle": set(d.vehicles)}
    assert pending.placements(other, d, "vehicle") == {}  # still placed there
    # An entity back on TP is placed again (it moved away, and the database says ``other``).
    assert pending.placements(TP, d, "vehicle") == {"vehicle": dict.fromkeys(d.vehicles, TP)}


def test_no_placements_for_a_kind_without_a_rule_engine() -> None:
    pending = PendingLatest(interval_s=5.0)
    pending.placing = lambda kind: kind != "vehicle"  # the sink: no vehicle rules
    d = collect(_frames(3, 1), first=0)
    assert pending.placements(TP, d, "vehicle") == {}
    pending.placing = lambda kind: True  # rules came (SIGHUP): the next merge places them
    assert pending.placements(TP, d, "vehicle") == {"vehicle": dict.fromkeys(d.vehicles, TP)}


def test_a_commit_after_the_partition_went_leaves_no_set_and_no_placements() -> None:
    # A write in flight when its partition is lost: its commit must not bring the partition's
    # set or placements back (the stored latest_from covers the tuples for the next owner).
    pending = PendingLatest(interval_s=5.0)
    d = collect(_frames(3, 1), first=0)
    pending.committed({TP: d}, [], {TP: 3}, 0.0)
    began = {TP: pending.parts.get(TP)}
    placed = pending.placements(TP, d, "vehicle")
    pending.forget([TP])  # on_partitions_lost while the write ran
    pending.committed({TP: d}, [TP], {TP: 6}, 1.0, placed, began)
    assert TP not in pending.parts and pending.placed_on(TP) == {}
    # without ``began`` (a first batch, no set yet) the commit makes the set, as before
    pending.committed({TP: d}, [TP], {TP: 6}, 1.0, placed, {TP: None})
    assert pending.parts[TP].next == 6 and pending.placed_on(TP) == {"vehicle": set(d.vehicles)}


def test_only_a_partition_without_batches_for_a_tick_is_stale() -> None:
    # The keeper (interval 5 s, tick 1.25 s) asks for sets that waited 6.25 s since their merge;
    # a partition whose batches still come merges with its next batch instead (its own
    # transaction beside the lane's would hold the partition's offset row while the lane waits).
    pending = PendingLatest(interval_s=5.0)
    d = collect(_frames(2, 1), first=0)
    pending.committed({TP: d}, merged=[TP], nexts={TP: 2}, now=0.0)
    pending.committed({TP: d}, merged=[], nexts={TP: 4}, now=1.0)  # pending since 1.0
    pending.committed({}, merged=[], nexts={TP: 4}, now=6.0)  # a write at 6.0, nothing new
    assert pending.stale(6.5, 6.25) == []  # busy: written 0.5 s ago
    assert pending.stale(7.0, 6.25) == []  # written 1.0 s ago, less than a tick
    assert pending.stale(7.25, 6.25) == [TP]  # quiet for a tick: idle


def test_a_pruned_timeline_merges_as_all_its_tuples_would_whatever_is_stored() -> None:
    # The dropped tuples can never give a column: for any stored time, merging what is kept
    # gives what merging every tuple gives (each tuple taking part only when newer).
    rng = random.Random(7)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for _ in range(300):
        tuples = [
            (t0 + timedelta(seconds=rng.randrange(30)), *_some(rng, 4))
            for _ in range(rng.randrange(1, 12))
        ]
        into: dict[str, list[tuple[object, ...]]] = {}
        for values in tuples:
            Delta.put_values(into, "E", values)
        assert len(into["E"]) <= 5  # the newest, and one per column at most
        for stored in (None, *(t0 + timedelta(seconds=s) for s in range(0, 31, 3))):
            known = {} if stored is None else {"E": stored}
            want = merge_newest([("E", v) for v in tuples], known)
            assert merge_newest(Delta.items(into), known) == want, (tuples, stored)


def _some(rng: random.Random, n: int) -> list[int | None]:
    return [rng.choice([None, rng.randrange(3)]) for _ in range(n)]


def _pack(rng: random.Random, at: datetime) -> tuple[object, ...]:
    """A pack's latest_state tuple at ``at``: a random SOC, stage and site (a site only with a
    stage, as ``latest_kinds._pack`` leaves it)."""
    values: list[object] = [at, *[None] * (len(BATTERY.columns) - 1)]
    stage = rng.choice([None, 1, 2, 2, 3])
    values[BATTERY.index("soc_pct")] = rng.choice([None, rng.randrange(3)])
    values[BATTERY.index("lifecycle_stage")] = stage
    if stage is not None:
        values[BATTERY.index("place_id")] = rng.choice([None, None, "A", "B"])
    return tuple(values)


def test_a_pruned_pack_timeline_keeps_the_stage_changes_the_place_needs() -> None:
    # A pack's place goes with its stage: a tuple that holds only a stage newer tuples hold
    # too can still give the merge a change of stage, which empties the place (stage 2 at
    # station A, stage 1, stage 2 without a site: no site, not A). For any stored time, the
    # kept tuples must merge as all of them would.
    rng = random.Random(11)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    pair = BATTERY.index("lifecycle_stage"), BATTERY.index("place_id")
    for _ in range(400):
        tuples = [
            _pack(rng, t0 + timedelta(seconds=rng.randrange(20)))
            for _ in range(rng.randrange(1, 12))
        ]
        into: dict[str, list[tuple[object, ...]]] = {}
        for values in tuples:
            Delta.put_values(into, "P", values, pair)
        assert len(into["P"]) <= 4  # the newest, one per column, one stage change
        for stored in (None, *(t0 + timedelta(seconds=s) for s in range(0, 21, 2))):
            known = {} if stored is None else {"P": stored}
            want = merge_newest([("P", v) for v in tuples], known, spec=BATTERY)
            got = merge_newest(Delta.items(into), known, spec=BATTERY)
            assert got == want, (tuples, stored)
