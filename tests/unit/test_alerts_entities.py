"""Rules for chargers (per connector) and standalone packs (per pack code): the default rules on
rows from the real decoders, their lifecycle, late frames, and rule-file checks per kind."""

from __future__ import annotations

import pytest

from alerts import AlertRecord, RuleEngine, RuleFileError, RuleSet
from tests.unit.alerts_entities_support import (
    CODE,
    CONNECTOR,
    FAULT,
    US,
    at,
    charge_status_push,
    charger,
    cleared,
    engine,
    pack,
    raised,
    status_push,
)

pytestmark = pytest.mark.unit

# -- kinds are apart ----------------------------------------------------------------------------


def test_each_engine_runs_only_its_kinds_rules() -> None:
    default = RuleSet.default()
    kinds = {k: RuleEngine(default, entity_kind=k).rules.rules for k in default.entity_kinds}
    assert set(kinds) == {"vehicle", "charger", "battery"}
    assert all(r.entity == k for k, rules in kinds.items() for r in rules)
    assert sum(map(len, kinds.values())) == len(default.rules)
    # the vehicle set is what it was before kinds existed: same rules, same replay window
    assert len(kinds["vehicle"]) == 17 and default.for_kind("vehicle").window_s == 105


# -- chargers -----------------------------------------------------------------------------------


def test_connector_over_temperature_raises_per_connector_and_clears_with_hysteresis() -> None:
    e = engine("charger")
    changes = e.evaluate([charger(0, temp=92), charger(30, temp=95), charger(60, temp=85)])
    assert raised(changes) == [("connector_over_temp", CONNECTOR, at(30))]
    assert {c.alert.entity_kind for c in changes} == {"charger"}
    assert cleared(changes) == []  # 85 °C is inside the 10 °C hysteresis
    assert cleared(e.evaluate([charger(90, temp=79)])) == [("connector_over_temp", at(90))]


def test_output_above_the_bms_demand_raises_over_voltage_and_over_current() -> None:
    e = engine("charger")
    ok = [charger(s, voltage=420.0, bms_v=410.0, current=140.0, bms_a=130.0) for s in (0, 30)]
    assert raised(e.evaluate(ok)) == []  # 10 V / 10 A over: within the margins
    over = [charger(s, voltage=440.0, bms_v=410.0, current=160.0, bms_a=130.0) for s in (60, 90)]
    changes = e.evaluate(over)
    assert sorted(r[0] for r in raised(changes)) == ["charger_over_current", "charger_over_voltage"]
    by_rule = {c.alert.rule_id: c.alert for c in changes}
    assert by_rule["charger_over_voltage"].peak == 30.0
    assert by_rule["charger_over_current"].peak == 30.0


def test_missing_bms_demand_neither_raises_nor_clears() -> None:
    e = engine("charger")
    e.evaluate([charger(s, voltage=440.0, bms_v=410.0) for s in (0, 30)])
    changes = e.evaluate([charger(60, voltage=440.0, bms_v=None)])  # a T/CEC-like gap
    assert cleared(changes) == [] and len(e.open_alerts()) == 1


def test_connector_stuck_in_fault_raises_after_thirty_minutes_of_status_255() -> None:
    e = engine("charger")
    frames = [charger(s, status=255, current=0.0, energy=0.0) for s in range(0, 1800, 300)]
    assert raised(e.evaluate(frames)) == []  # 25 minutes
    (alert,) = [c.alert for c in e.evaluate([charger(1800, status=255)]) if c.type == "raised"]
    assert (alert.rule_id, alert.trigger_ms) == ("connector_stuck_in_fault", (at(0), at(1800)))
    # a status push (T/CEC) without telemetry ends it
    assert cleared(e.evaluate([status_push(1900, 1)])) == [("connector_stuck_in_fault", at(1900))]


def test_a_fault_that_recovers_in_between_starts_its_duration_again() -> None:
    e = engine("charger")
    changes = e.evaluate(
        [
            charger(0, status=255),
            charger(1000, status=1),
            charger(1100, status=255),
            charger(2800, status=255),
        ]
    )
    assert raised(changes) == []  # 1700 s since the fault came back
    assert raised(e.evaluate([charger(2900, status=255)]))[0][0] == "connector_stuck_in_fault"


def test_session_energy_that_implies_a_pack_beyond_any_raises_and_a_new_session_clears() -> None:
    e = engine("charger")
    # 60 kWh for 50 points of SOC: a 120 kWh pack, plausible
    normal = [charger(s * 30, energy=s * 6.0, soc=30 + s * 5) for s in range(11)]
    assert raised(e.evaluate(normal)) == []
    # a new session (energy counter restarts): 200 kWh for 25 points = 800 kWh of pack
    start = 400 * 30
    bad = [charger(start + s * 30, energy=s * 20.0, soc=20 + round(s * 2.5)) for s in range(11)]
    changes = e.evaluate(bad)
    assert [r[0] for r in raised(changes)] == ["session_capacity_implausible"]
    alert = next(c.alert for c in changes if c.type == "raised")
    assert alert.opened_ms == at(start + 8 * 30)  # the first frame 20 points above the start
    assert alert.last_value == pytest.approx(200 / 25 * 100)
    nxt = e.evaluate([charger(start + 12 * 30, energy=1.0, soc=50)])
    assert cleared(nxt) == [("session_capacity_implausible", at(start + 12 * 30))]


def test_session_energy_beyond_the_largest_pack_raises() -> None:
    changes = engine("charger").evaluate([charger(0, energy=700.0, soc=None)])
    assert [r[0] for r in raised(changes)] == ["session_energy_too_high"]


def test_a_tcec_charge_status_push_is_one_evaluation_of_its_connector() -> None:
    e = engine("charger")
    e.evaluate([charge_status_push(0), charge_status_push(30), status_push(60, 255)])
    assert (e.stats.evaluated, e.stats.duplicate, e.stats.no_data) == (3, 0, 0)
    assert len(e) == 1  # one connector, whichever way it reported


def test_charger_late_frames_cannot_raise_a_duration_rule_or_clear() -> None:
    e = engine("charger")
    e.evaluate([charger(0, temp=95), charger(30, temp=95)])
    late = e.evaluate([charger(10, temp=20)])  # out of order: never clears
    assert cleared(late) == [] and e.stats.late == 1


def test_restored_charger_alert_is_updated_not_raised_again() -> None:
    first = engine("charger")
    (rec,) = [c.alert for c in first.evaluate([charger(0, temp=95), charger(30, temp=95)])]
    assert isinstance(rec, AlertRecord) and rec.entity_kind == "charger"
    second = engine("charger", update_every_s=0)
    assert second.restore([rec]) == []
    changes = second.evaluate([charger(60, temp=96)])
    assert [c.type for c in changes] == ["updated"]


def test_status_pushes_of_one_millisecond_are_judged_in_seq_order() -> None:
    e = engine("charger", FAULT, update_every_s=0)
    changes = e.evaluate(
        [status_push(60 + US, 2), status_push(60 + 3 * US, 255), status_push(60 + 5 * US, 255)]
    )
    # the fault is not a duplicate of the occupied push: it raises, at its millisecond
    assert raised(changes) == [("fault", CONNECTOR, at(60))]
    assert (e.stats.evaluated, e.stats.duplicate) == (3, 0)
    (change,) = changes
    assert change.alert.frame_count == 2  # both fault pushes count, though of one ms
    again = e.evaluate([status_push(60 + 5 * US, 255)])  # the last one delivered again
    assert again == [] and e.stats.duplicate == 1
    recovered = e.evaluate([status_push(60 + 7 * US, 1)])
    assert cleared(recovered) == [("fault", at(60))]


def test_a_restored_charger_alert_orders_pushes_by_its_millisecond() -> None:
    first = engine("charger", FAULT)
    (rec,) = [c.alert for c in first.evaluate([status_push(60 + 3 * US, 255)])]
    second = engine("charger", FAULT)
    assert second.restore([rec]) == []  # the record has the ms only: at(60)
    assert second.evaluate([status_push(55, 1)]) == []  # older: late, never clears
    assert second.stats.late == 1
    # later in the same millisecond: in order (the record cannot tell it was not processed)
    assert cleared(second.evaluate([status_push(60 + 5 * US, 1)])) == [("fault", at(60))]


# -- packs --------------------------------------------------------------------------------------


def test_pack_over_temperature_is_raised_per_pack_code() -> None:
    e = engine("battery")
    changes = e.evaluate([pack(0, probes=(61, 30)), pack(30, probes=(62, 30))])
    assert ("pack_max_temp_high", CODE, at(30)) in raised(changes)
    assert {c.alert.entity_kind for c in changes} == {"battery"}


def test_pack_thermal_runaway_bit_counts_in_the_2016_envelope_too() -> None:
    # Bits 19-23 are the pack profile's own in both envelopes (unlike a 2016 vehicle's).
    for edition in (2016, 2025):
        changes = engine("battery").evaluate([pack(0, edition=edition, flags=1 << 19)])
        assert [r[0] for r in raised(changes)] == ["pack_thermal_event"]


def test_pack_spreads_insulation_and_alarm_level() -> None:
    e = engine("battery")
    wide = (3.1, 3.7, 3.65)  # 600 mV
    frames = [pack(s, cells=wide, insulation=20, level=3) for s in range(0, 91, 30)]
    rules = {r[0] for r in raised(e.evaluate(frames))}
    assert rules == {"pack_cell_voltage_spread", "pack_insulation_dc", "pack_alarm_level_3"}


def test_pack_thermal_runaway_composite_from_the_packs_own_report() -> None:
    frames = [pack(0, probes=(30, 30), cells=(3.6, 3.6))]
    frames += [pack(s, probes=(30 + 2 * s, 30), cells=(3.6, 3.6)) for s in range(1, 6)]
    frames += [pack(6, probes=(45, 30), cells=(2.5, 3.6))]  # > 25 % drop of the lowest cell
    changes = engine("battery").evaluate(frames)
    assert "pack_thermal_runaway" in {r[0] for r in raised(changes)}


def test_soh_falling_fast_and_cycle_count_jumps_and_rollbacks() -> None:
    e = engine("battery")
    e.evaluate([pack(0, soh=95, cycles=300), pack(60, soh=95, cycles=300)])
    assert [r[0] for r in raised(e.evaluate([pack(120, soh=94, cycles=301)]))] == []
    assert [r[0] for r in raised(e.evaluate([pack(180, soh=88, cycles=301)]))] == [
        "pack_soh_falling_fast"
    ]
    up = raised(e.evaluate([pack(240, soh=88, cycles=310)]))
    assert [r[0] for r in up] == ["pack_cycle_count_jump"]
    down = raised(e.evaluate([pack(300, soh=88, cycles=309)]))
    assert [r[0] for r in down] == ["pack_cycle_count_rollback"]


def test_changes_across_a_gap_longer_than_the_pack_period_are_not_compared() -> None:
    e = engine("battery")
    e.evaluate([pack(0, soh=95, cycles=300)])
    assert raised(e.evaluate([pack(3600, soh=80, cycles=400)])) == []


def test_pack_in_two_places_at_once_and_a_real_move_is_not() -> None:
    e = engine("battery")
    moved = [
        pack(0, site="SWAP0001"),
        pack(60, site="SWAP0001"),
        pack(120, site="LSVAU2180N2183294", stage=1),
    ]
    moved += [pack(s, site="LSVAU2180N2183294", stage=1) for s in range(150, 1000, 60)]
    assert raised(e.evaluate(moved)) == []
    e = engine("battery")
    flips = [pack(0, site="A"), pack(30, site="B"), pack(60, site="A"), pack(90, site="B")]
    changes = e.evaluate(flips)
    assert raised(changes) == [("pack_in_two_places", CODE, at(60))]
    alert = next(c.alert for c in changes if c.type == "raised")
    assert alert.peak == 60.0  # seconds since it was last reported at that place (A at 0)
    settled = [pack(s, site="B") for s in range(120, 800, 60)]
    assert cleared(e.evaluate(settled)) == [("pack_in_two_places", at(720))]


def test_out_of_order_pack_frames_are_late_and_make_no_flip() -> None:
    e = engine("battery")
    e.evaluate([pack(0, site="A"), pack(60, site="A")])
    changes = e.evaluate([pack(30, site="B", command=0x03), pack(90, site="A")])
    assert raised(changes) == [] and e.stats.late == 1


def test_a_reissued_pack_frame_of_a_cleared_episode_does_not_raise_it_again() -> None:
    e = engine("battery")
    e.evaluate([pack(0, flags=1 << 19)])
    e.evaluate([pack(s, flags=0) for s in range(30, 200, 30)])  # cleared after 60 s
    assert e.open_alerts() == []
    assert raised(e.evaluate([pack(15, flags=1 << 19, command=0x03)])) == []
    # ... and a reissue of a new episode after the clear is raised, marked late
    e.evaluate([pack(400, flags=0)])
    late = [c.alert for c in e.evaluate([pack(300, flags=1 << 19, command=0x03)])]
    assert [(a.rule_id, a.late) for a in late] == [("pack_thermal_event", True)]


def test_pack_frames_without_telemetry_are_no_data() -> None:
    e = engine("battery")
    from ingest.decoders.battery import PackFrame, PackLogout, decode_pack_rows, encode_pack_frame
    from tests.unit.alerts_entities_support import T0

    logout = PackFrame(
        edition=2016, command=0x04, ident=CODE[7:], time=T0, pack_code=CODE, body=PackLogout(1)
    )
    e.evaluate([decode_pack_rows(encode_pack_frame(logout))])
    assert (e.stats.no_data, len(e)) == (1, 0)


# -- rule files ---------------------------------------------------------------------------------


def _problems(toml: str) -> list[str]:
    with pytest.raises(RuleFileError) as err:
        RuleSet.from_toml(toml)
    return [f"{p.key}: {p.message}" for p in err.value.problems if not p.warning]


def test_a_field_of_another_kind_is_an_error_naming_the_kind() -> None:
    (msg,) = _problems(
        '[[rule]]\nid = "x"\nentity = "charger"\nkind = "threshold"\nseverity = "info"\n'
        'field = "soh_pct"\nvalue = 1\n'
    )
    assert msg.startswith("field: unknown field 'soh_pct' for a charger rule")
    (msg,) = _problems(
        '[[rule]]\nid = "x"\nkind = "threshold"\nseverity = "info"\nfield = "over_voltage_v"\n'
        "value = 1\n"
    )
    assert "unknown field 'over_voltage_v'" in msg


def test_kinds_that_read_fixed_fields_need_them_in_the_entity_kind() -> None:
    (msg,) = _problems(
        '[[rule]]\nid = "x"\nentity = "charger"\nkind = "flag"\nseverity = "info"\nmin_level = 3\n'
    )
    assert msg.startswith("entity: a flag rule reads 'edition'")
    (msg,) = _problems(
        '[[rule]]\nid = "x"\nentity = "battery"\nkind = "spread"\nseverity = "info"\n'
        'array = "probe_temp"\nacross = "vehicle"\nvalue = 5\n'
    )
    assert msg == "across: a battery has no vehicle-wide probe_temp spread"


def test_unknown_entity_and_composites_across_kinds_are_errors() -> None:
    (msg,) = _problems(
        '[[rule]]\nid = "x"\nentity = "bus"\nkind = "threshold"\nseverity = "info"\n'
        'field = "soc_pct"\nvalue = 1\n'
    )
    assert msg.startswith("entity: ")
    msgs = _problems(
        '[[rule]]\nid = "a"\nentity = "battery"\nkind = "threshold"\nalert = false\n'
        'field = "soc_pct"\nvalue = 1\n'
        '[[rule]]\nid = "b"\nkind = "composite"\nseverity = "info"\nany = ["a"]\n'
    )
    assert msgs == [
        "any: refers to 'a', a battery rule: a composite combines rules of its own entity (vehicle)"
    ]


def test_vehicle_rule_versions_do_not_change_with_the_entity_key() -> None:
    body = (
        '[[rule]]\nid = "x"\nkind = "threshold"\nseverity = "info"\nfield = "soc_pct"\nvalue = 1\n'
    )
    plain = RuleSet.from_toml(body).rules[0]
    explicit = RuleSet.from_toml(body + 'entity = "vehicle"\n').rules[0]
    assert plain.version == explicit.version == "fa2623a19ba9"  # as before entity kinds
