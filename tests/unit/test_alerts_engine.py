"""Alert lifecycle: one open alert per (entity, rule), batches, late and reissued frames,
rebuild after restart, rule reload, scope, publishing."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from alerts import AlertChange, RuleEngine, RuleSet, to_message
from alerts.frames import build_frame
from contract.rows import FrameRows

pytestmark = pytest.mark.unit

VIN = "LTEST000000000001"
T0 = 1_782_835_200_000
# Rules as TOML, the way operators write them; test_alerts_warm.py has its own set (``duplicates``
# pairs the texts): each module's rules are the input its assertions are about.
HOT = """
[[rule]]
id = "hot"
kind = "threshold"
severity = "major"
field = "max_temp_c"
value = 60
hysteresis = 5
"""
RATE = """
[[rule]]
id = "heating"
kind = "rate"
severity = "critical"
field = "max_temp_c"
rate_per_s = 1.0
sustain_s = 3
"""


def fr(at_s: float, temp: int | None, *, vin: str = VIN, command: int = 2, **kw: Any) -> FrameRows:
    return build_frame(vin, T0 + int(at_s * 1000), command=command, max_temp_c=temp, **kw)


def summary(changes: list[AlertChange]) -> list[tuple[str, str, float]]:
    return [(c.type, c.alert.rule_id, (c.alert.opened_ms - T0) / 1000) for c in changes]


def test_one_raise_while_it_holds_and_updates_coalesced_per_batch() -> None:
    e = RuleEngine(RuleSet.from_toml(HOT), update_every_s=0)
    first = e.evaluate([fr(0, 61), fr(10, 65), fr(20, 63)])
    assert [c.type for c in first] == ["raised"]
    a = first[0].alert
    assert (a.peak, a.last_value, a.frame_count, a.last_seen_ms) == (65.0, 63.0, 3, T0 + 20_000)
    second = e.evaluate([fr(30, 62), fr(40, 70)])
    assert [c.type for c in second] == ["updated"]
    assert second[0].alert.key == a.key and second[0].alert.peak == 70.0
    assert second[0].alert.frame_count == 5
    cleared = e.evaluate([fr(50, 50)])
    assert [c.type for c in cleared] == ["cleared"]
    assert (
        cleared[0].alert.cleared_ms == T0 + 50_000 and cleared[0].alert.clear_reason == "condition"
    )


def test_updates_are_throttled_except_for_a_new_peak() -> None:
    e = RuleEngine(RuleSet.from_toml(HOT), update_every_s=60)
    e.evaluate([fr(0, 65)])
    assert e.evaluate([fr(10, 64)]) == []  # same episode, no new peak, < 60 s since last
    assert [c.type for c in e.evaluate([fr(20, 66)])] == ["updated"]  # new peak
    assert e.evaluate([fr(30, 64)]) == []
    assert [c.type for c in e.evaluate([fr(80, 64)])] == ["updated"]  # 60 s since last


def test_raise_and_clear_in_one_batch_come_in_order() -> None:
    e = RuleEngine(RuleSet.from_toml(HOT))
    changes = e.evaluate([fr(0, 61), fr(10, 40), fr(20, 62)])
    assert [(c.type, (c.alert.opened_ms - T0) / 1000) for c in changes] == [
        ("raised", 0.0),
        ("cleared", 0.0),
        ("raised", 20.0),
    ]
    assert changes[0].alert.cleared_ms is None  # the raise is published as open


def test_batch_boundaries_do_not_change_the_outcome() -> None:
    rng = random.Random(5)
    temps = [rng.choice([40, 58, 61, 66, None]) for _ in range(300)]
    frames = [fr(i, t) for i, t in enumerate(temps)]
    whole = RuleEngine(RuleSet.from_toml(HOT + RATE), update_every_s=0).evaluate(frames)
    split = RuleEngine(RuleSet.from_toml(HOT + RATE), update_every_s=0)
    pieces: list[AlertChange] = []
    i = 0
    while i < len(frames):
        n = rng.randint(1, 7)
        pieces += split.evaluate(frames[i : i + n])
        i += n
    # the same raises and clears (order inside one batch follows first touch, so sort)
    key = sorted((c.type, c.alert.key) for c in whole if c.type != "updated")
    assert key == sorted((c.type, c.alert.key) for c in pieces if c.type != "updated")
    assert len(key) > 10
    assert len({c.alert.key for c in whole if c.type == "raised"}) == sum(
        c.type == "raised" for c in whole
    )


def test_late_frames_never_clear_a_live_alert() -> None:
    e = RuleEngine(RuleSet.from_toml(HOT))
    e.evaluate([fr(0, 40), fr(10, 61), fr(20, 62)])
    # reissued data of 5 s (before the alert) and of 15 s, both cool: no clear
    assert e.evaluate([fr(5, 30, command=3), fr(15, 30, command=3)]) == []
    assert e.stats.late == 2
    assert [c.type for c in e.evaluate([fr(30, 40)])] == ["cleared"]


def test_reissue_of_an_episode_already_reported_raises_nothing() -> None:
    e = RuleEngine(RuleSet.from_toml(HOT))
    assert summary(e.evaluate([fr(0, 61), fr(10, 62), fr(20, 40)])) == [
        ("raised", "hot", 0.0),
        ("cleared", "hot", 0.0),
    ]
    # the terminal re-sends 0..20 s as 0x03, and one delivery repeats the newest frame
    again = [fr(0, 61, command=3), fr(10, 62, command=3), fr(20, 40, command=3)]
    assert e.evaluate(again) == []
    assert e.stats.duplicate == 1 and e.stats.late == 2


def test_reissues_of_an_open_alert_neither_count_again_nor_skip_the_throttle() -> None:
    e = RuleEngine(RuleSet.from_toml(HOT), update_every_s=60)
    raised = e.evaluate([fr(s, 65) for s in range(0, 60, 10)])
    assert [(c.type, c.alert.frame_count) for c in raised] == [("raised", 6)]
    for s in (10, 20, 30):  # the terminal re-sends frames already evaluated, one per batch
        assert e.evaluate([fr(s, 65, command=3)]) == []
    assert [(a.frame_count, a.last_seen_ms - T0) for a in e.open_alerts()] == [(6, 50_000)]
    # a reissue showing a worse value still reports at once (a new peak), counted once
    changes = e.evaluate([fr(40, 70, command=3)])
    assert [(c.type, c.alert.peak, c.alert.frame_count) for c in changes] == [("updated", 70, 6)]


def test_a_late_frame_after_the_last_episode_raises_a_late_alert() -> None:
    e = RuleEngine(RuleSet.from_toml(HOT))
    e.evaluate([fr(0, 61), fr(10, 40), fr(100, 40)])
    changes = e.evaluate([fr(50, 70, command=3)])  # a gap filled by reissue: a new episode
    assert [(c.type, c.alert.late, c.alert.opened_ms) for c in changes] == [
        ("raised", True, T0 + 50_000)
    ]
    assert [c.type for c in e.evaluate([fr(110, 40)])] == ["cleared"]  # in order: clears


def test_history_based_rules_ignore_late_frames() -> None:
    e = RuleEngine(RuleSet.from_toml(RATE))
    e.evaluate([fr(0, 30), fr(10, 31)])
    # late frames showing a fast rise must not be stitched into the in-order history
    assert e.evaluate([fr(2, 40, command=3), fr(4, 50, command=3), fr(8, 60, command=3)]) == []
    assert e.evaluate([fr(11, 31), fr(12, 31)]) == []


def test_frames_from_a_wrong_clock_are_skipped_when_now_is_known() -> None:
    e = RuleEngine(RuleSet.from_toml(HOT), max_future_s=300)
    now = T0 + 10_000
    assert e.evaluate([fr(3600, 70)], now_ms=now) == []
    assert e.stats.future == 1
    # and they did not move the watermark: the real frames are not "late"
    assert summary(e.evaluate([fr(10, 70)], now_ms=now)) == [("raised", "hot", 10.0)]


def test_one_alert_per_entity_and_rule() -> None:
    e = RuleEngine(RuleSet.from_toml(HOT))
    changes = e.evaluate([fr(0, 61, vin="LA"), fr(0, 61, vin="LB"), fr(10, 61, vin="LA")])
    assert sorted(c.alert.entity_id for c in changes) == ["LA", "LB"]
    assert {a.entity_id for a in e.open_alerts()} == {"LA", "LB"}


def test_restart_restore_neither_reraises_nor_loses_the_alert() -> None:
    first = RuleEngine(RuleSet.from_toml(HOT))
    raised = first.evaluate([fr(0, 61), fr(10, 62)])
    stored = [raised[0].alert]
    second = RuleEngine(RuleSet.from_toml(HOT))
    assert second.restore(stored) == []
    cont = second.evaluate([fr(20, 63), fr(30, 64)])
    assert all(c.type == "updated" for c in cont)
    done = second.evaluate([fr(40, 40)])
    assert [(c.type, c.alert.key) for c in done] == [("cleared", stored[0].key)]


def test_warm_replay_rebuilds_history_without_emitting() -> None:
    temps = [30, 31, 33, 34, 36, 37, 39, 40, 42]
    frames = [fr(i, t) for i, t in enumerate(temps)]
    first = RuleEngine(RuleSet.from_toml(RATE))
    raised = first.evaluate(frames[:6])
    assert summary(raised) == [("raised", "heating", 4.0)]
    second = RuleEngine(RuleSet.from_toml(RATE))
    assert second.rebuild([raised[0].alert], replay=frames[:6]) == []
    assert all(c.type == "updated" for c in second.evaluate(frames[6:]))  # no second raise
    cleared = second.evaluate([fr(9, 42), fr(10, 42)])  # the rise stopped
    assert [(c.type, c.alert.key) for c in cleared] == [("cleared", raised[0].alert.key)]


def test_without_warm_a_restarted_rate_rule_does_not_fire_twice() -> None:
    frames = [fr(i, 30 + 2 * i) for i in range(12)]
    first = RuleEngine(RuleSet.from_toml(RATE))
    raised = first.evaluate(frames[:6])
    second = RuleEngine(RuleSet.from_toml(RATE))
    second.restore([c.alert for c in raised])
    assert [c.type for c in second.evaluate(frames[6:])] in ([], ["updated"])


def test_restore_clears_alerts_of_removed_rules_and_bounds_late_raises() -> None:
    old = RuleEngine(RuleSet.from_toml(HOT + RATE))
    open_rate = old.evaluate([fr(i, 30 + 2 * i) for i in range(6)])
    closed_hot = old.evaluate([fr(6, 70), fr(7, 30)])
    stored = [c.alert for c in open_rate] + [c.alert for c in closed_hot if c.type == "cleared"]
    e = RuleEngine(RuleSet.from_toml(HOT))  # the rate rule was deleted meanwhile
    changes = e.restore(stored)
    assert [(c.type, c.alert.rule_id, c.alert.clear_reason) for c in changes] == [
        ("cleared", "heating", "rule_removed")
    ]
    # reissued data of the hot episode (6 s) predates its clear (7 s): no second alert
    assert e.evaluate([fr(6, 70, command=3), fr(20, 30)]) == []


def test_swap_rules_keeps_state_and_open_alerts() -> None:
    e = RuleEngine(
        RuleSet.from_toml(HOT.replace("value = 60", "value = 60\nfor_frames = 3") + RATE)
    )
    e.evaluate([fr(0, 61), fr(10, 62)])  # 2 of 3 frames pending
    rate_alert = e.evaluate([fr(11, 64), fr(12, 66), fr(13, 68), fr(14, 70)])
    assert summary(rate_alert) == [("raised", "hot", 11.0), ("raised", "heating", 14.0)]
    # reload: "hot" changed (now >= 65), "heating" unchanged
    assert e.swap_rules(RuleSet.from_toml(HOT.replace("value = 60", "value = 65") + RATE)) == []
    assert [c.type for c in e.evaluate([fr(15, 71)])] in ([], ["updated"], ["updated", "updated"])
    cleared = e.evaluate([fr(16, 59)])  # below 65 - 5: "hot" clears; the rise stopped too
    assert sorted((c.type, c.alert.rule_id) for c in cleared) == [
        ("cleared", "heating"),
        ("cleared", "hot"),
    ]
    e.evaluate([fr(20, 70)])
    removed = e.swap_rules(RuleSet.from_toml(RATE))
    assert [(c.type, c.alert.rule_id, c.alert.clear_reason) for c in removed] == [
        ("cleared", "hot", "rule_removed")
    ]


def test_alerts_of_a_rule_whose_scope_no_longer_takes_the_entity_in_are_cleared() -> None:
    # Narrowed by a reload or between a stop and a restart: the entity's rules would never
    # evaluate it again, so its open alert could never clear by its condition.
    narrowed = RuleSet.from_toml(
        HOT.replace('severity = "major"', 'severity = "major"\nvin_prefix = ["LSV"]')
    )
    e = RuleEngine(RuleSet.from_toml(HOT))
    raised = e.evaluate([fr(0, 70), fr(0, 70, vin="LSV0000000000001")])
    assert sorted(c.alert.entity_id for c in raised) == ["LSV0000000000001", VIN]
    changes = e.swap_rules(narrowed)
    assert [(c.type, c.alert.entity_id, c.alert.clear_reason) for c in changes] == [
        ("cleared", VIN, "rule_out_of_scope")
    ]
    assert [a.entity_id for a in e.open_alerts()] == ["LSV0000000000001"]
    assert e.evaluate([fr(10, 40)]) == []  # nothing left open for it to clear
    restarted = RuleEngine(narrowed)
    changes = restarted.restore([c.alert for c in raised])
    assert [(c.type, c.alert.entity_id, c.alert.clear_reason) for c in changes] == [
        ("cleared", VIN, "rule_out_of_scope")
    ]
    assert [a.entity_id for a in restarted.open_alerts()] == ["LSV0000000000001"]


def test_scope_by_vin_prefix_and_model() -> None:
    text = HOT.replace(
        'severity = "major"', 'severity = "major"\nvin_prefix = ["LSJ"]\nmodel = ["M7"]'
    )
    e = RuleEngine(RuleSet.from_toml(text), models={"LBB0001": "M7"})
    got = e.evaluate([fr(0, 70, vin=v) for v in ("LSJ0001", "LBB0001", "LZZ0001")])
    assert sorted(c.alert.entity_id for c in got) == ["LBB0001", "LSJ0001"]


def test_forget_drops_revoked_partitions() -> None:
    e = RuleEngine(RuleSet.from_toml(HOT))
    e.evaluate([fr(0, 70, vin="LA")], partition=1)
    e.evaluate([fr(0, 70, vin="LB")], partition=2)
    assert e.forget(partition=1) == 1
    assert [a.entity_id for a in e.open_alerts()] == ["LB"]
    assert len(e) == 1


def test_to_message_is_keyed_by_entity_and_deterministic() -> None:
    e = RuleEngine(RuleSet.from_toml(HOT))
    change = e.evaluate([fr(0, 70)])[0]
    key, value = to_message(change)
    assert key == VIN.encode()
    body = orjson.loads(value)
    assert body["type"] == "raised" and body["rule_id"] == "hot" and body["peak"] == 70.0
    assert body["opened_at"] == "2026-06-30T16:00:00.000+00:00"
    assert body["key"] == f"vehicle/{VIN}/hot/{T0}"
    assert to_message(change) == (key, value)
