"""Rule files: the default set, and validation messages that name the line, rule and key."""

from __future__ import annotations

import tomllib
from importlib import resources

import pytest

from alerts import RuleFileError, RuleSet
from alerts.model import KINDS

pytestmark = pytest.mark.unit


def problems(text: str) -> list[str]:
    with pytest.raises(RuleFileError) as info:
        RuleSet.from_toml(text, "r.toml")
    return [p.format("r.toml") for p in info.value.problems]


def test_default_rules_load_and_name_their_source() -> None:
    rs = RuleSet.default()
    assert rs.warnings == ()
    ids = [r.id for r in rs.rules]
    assert "gb38031_thermal_runaway" in ids and "thermal_event" in ids
    # composites come after what they use
    assert ids.index("tr_temp_rate") < ids.index("gb38031_thermal_runaway")
    assert all(r.source for r in rs.rules)
    assert {"threshold", "rate", "drop", "flag", "insulation", "composite", "spread", "jump"} <= {
        r.kind for r in rs.rules
    }
    tr = rs.get("tr_temp_rate")
    assert tr is not None and tr.params["rate_per_s"] == 1.0 and tr.params["sustain_s"] == 3


def test_every_rule_in_the_default_file_has_a_comment_or_source_per_threshold() -> None:
    text = resources.files("alerts").joinpath("default_rules.toml").read_text(encoding="utf-8")
    doc = tomllib.loads(text)
    for line in text.splitlines():
        key = line.split("=")[0].strip()
        if (
            key in ("value", "pct", "rate_per_s", "sustain_s", "min_level", "delta")
            and '"$' not in line
        ):
            assert "#" in line, f"threshold without its source: {line!r}"
    assert all(isinstance(p, int | float) for p in doc["params"].values())


def test_rule_versions_change_with_the_definition_only() -> None:
    base = (
        '[[rule]]\nid = "a"\nkind = "threshold"\nseverity = "info"\nfield = "soc_pct"\nvalue = 5\n'
    )
    v1 = RuleSet.from_toml(base).rules[0].version
    assert RuleSet.from_toml("# comment\n" + base).rules[0].version == v1
    assert RuleSet.from_toml(base.replace("= 5", "= 6")).rules[0].version != v1


# Rule files are written out as an operator writes them, one per test (``duplicates`` pairs
# them by shape): the text is the input under test, line numbers included.
def test_errors_name_line_rule_and_key() -> None:
    text = """
[[rule]]
id = "hot"
kind = "threshold"
severity = "urgent"
field = "max_temperature"
value = "$limit"
colour = "red"
"""
    got = problems(text)
    severity = "r.toml:5: error: rule hot key 'severity': must be one of info, warning, major, "
    assert severity + "critical; got 'urgent'" in got
    assert any(
        p.startswith("r.toml:6: error: rule hot key 'field': unknown field 'max_temperature'")
        for p in got
    )
    assert (
        "r.toml:7: error: rule hot key 'value': refers to $limit, which [params] does not define"
        in got
    )
    assert "r.toml:8: error: rule hot key 'colour': unknown key for a threshold rule" in got


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('kind = "rate"\nfield = "max_temp_c"\n', "missing required key 'rate_per_s'"),
        ('kind = "drop"\nfield = "soc_pct"\npct = 5\ndelta = 3\n', "exactly one of pct"),
        ('kind = "flag"\n', "needs bits, min_level or both"),
        ('kind = "flag"\nbits = [40]\n', "bit numbers 0..31"),
        ('kind = "flag"\nmin_level = 3\nedge = "on"\n', "edges apply to bits only"),
        (
            'kind = "threshold"\nfield = "soc_pct"\nvalue = 1\nfor_s = 1\nfor_frames = 2\n',
            "not both",
        ),
        ('kind = "threshold"\nfield = "soc_pct"\nvalue = 1\nfor_frames = 1.5\n', "whole number"),
        ('kind = "composite"\nall = ["x"]\n', "unknown or disabled rule 'x'"),
        ('kind = "composite"\nall = ["a"]\nany = ["a"]\n', "exactly one of all"),
        (
            'kind = "jump"\nfield = "soc_pct"\ndelta = 5\nwindow_s = 10\n',
            "needs direction up or down",
        ),
        (
            'kind = "spread"\narray = "cells"\nvalue = 5\n',
            "must be one of cell_voltage, probe_temp",
        ),
        ('kind = "threshold"\nfield = "max(pack.nope)"\nvalue = 1\n', "unknown field"),
        (
            'kind = "threshold"\nfield = "soc_pct"\nop = "=="\nvalue = 1\nhysteresis = 2\n',
            "key 'hysteresis': has no meaning with op '=='",
        ),
        (
            'kind = "threshold"\nentity = "charger"\nfield = "max_temp_c"\nvalue = 1\n'
            "editions = [2025]\n",
            "key 'editions': chargers count as the 2016 edition",
        ),
        (
            'kind = "threshold"\nfield = "soc_pct"\nvalue = 1\nwhen = [{ field = "soc_pct" }]\n',
            "each guard is",
        ),
    ],
)
def test_kind_validation(body: str, message: str) -> None:
    text = f'[[rule]]\nid = "a"\nseverity = "info"\n{body}'
    assert any(message in p for p in problems(text)), problems(text)


def test_the_id_of_the_unknown_rule_is_refused() -> None:
    # nev_ingest_rule_errors_total{rule="unknown"} counts the errors of no known rule
    # (alerts.failure): a rule of that name would be counted with them.
    text = '[[rule]]\nid = "unknown"\nseverity = "info"\nkind = "threshold"\n'
    text += 'field = "soc_pct"\nvalue = 1\n'
    assert problems(text) == [
        "r.toml:2: error: rule unknown key 'id': 'unknown' is reserved for rule errors of no "
        "known rule: rename it"
    ]


def test_cross_rule_problems() -> None:
    text = """
[[rule]]
id = "a"
kind = "composite"
severity = "info"
any = ["b"]
[[rule]]
id = "b"
kind = "composite"
severity = "info"
any = ["a"]
[[rule]]
id = "b"
kind = "flag"
severity = "info"
min_level = 3
"""
    got = problems(text)
    assert any(
        p == "r.toml:12: error: rule b key 'id': duplicate id (first at line 7)" for p in got
    )
    assert any("form a cycle" in p for p in got)


def test_syntax_error_reports_its_line_and_warnings_do_not_fail() -> None:
    got = problems('[[rule]]\nid = "a"\nkind = \n')
    assert got[0].startswith("r.toml:3: error: not valid TOML")
    rs = RuleSet.from_toml('[[rule]]\nid = "a"\nkind = "flag"\nalert = false\nmin_level = 2\n')
    assert [p.message for p in rs.warnings] == [
        "alert = false and no composite uses it: it does nothing"
    ]


def test_params_substitute_and_disabled_rules_are_left_out() -> None:
    text = """
[params]
limit = 55
[[rule]]
id = "a"
kind = "threshold"
severity = "info"
field = "max(pack.probe_max_c)"
value = "$limit"
[[rule]]
id = "b"
kind = "flag"
severity = "info"
enabled = false
bits = [1]
"""
    rs = RuleSet.from_toml(text)
    assert [(r.id, r.params["value"]) for r in rs.rules] == [("a", 55)]
    assert set(KINDS) >= {r.kind for r in rs.rules}


def test_window_covers_the_previous_frame_a_consecutive_rule_compares_with() -> None:
    """A set whose only history is the previous frame (a jump between consecutive frames)
    still needs that frame replayed after a rebalance: its window is the gap it accepts, not
    0 ("no history"); a threshold-only set needs none."""
    head = '[[rule]]\nid = "a"\nseverity = "info"\n'
    jump = 'kind = "jump"\nfield = "soc_pct"\ndelta = 5\ndirection = "up"\nmax_gap_s = 30\n'
    assert RuleSet.from_toml(head + jump).window_s == 30
    threshold = 'kind = "threshold"\nfield = "soc_pct"\nvalue = 1\n'
    assert RuleSet.from_toml(head + threshold).window_s == 0
    rate = 'kind = "rate"\nfield = "max_temp_c"\nrate_per_s = 1\nsustain_s = 3\nmax_gap_s = 20\n'
    assert RuleSet.from_toml(head + rate).window_s == 23


@pytest.mark.parametrize(
    ("body", "key", "shown"),
    [
        ('kind = "threshold"\nfield = "max_temp_c"\nvalue = inf\n', "value", "inf"),
        ('kind = "threshold"\nfield = "max_temp_c"\nvalue = 1e400\n', "value", "inf"),
        ('kind = "threshold"\nfield = "max_temp_c"\nvalue = nan\n', "value", "nan"),
        ('kind = "threshold"\nfield = "max_temp_c"\nvalue = -inf\n', "value", "-inf"),
        ('kind = "insulation"\nmin_voltage_v = inf\n', "min_voltage_v", "inf"),
        ('kind = "rate"\nfield = "max_temp_c"\nrate_per_s = nan\n', "rate_per_s", "nan"),
        # finite, but window_s * 1000 (ms) would overflow to inf
        ('kind = "composite"\nany = ["b"]\nwindow_s = 1.7e308\n', "window_s", "1.7e+308"),
    ],
)
def test_non_finite_and_huge_numbers_are_refused_by_file_line_rule_and_key(
    body: str, key: str, shown: str
) -> None:
    text = (
        '[[rule]]\nid = "b"\nalert = false\nkind = "threshold"\nfield = "soc_pct"\nvalue = 1\n'
        f'[[rule]]\nid = "a"\nseverity = "info"\n{body}'
    )
    line = 10 + [x.split(" =")[0] for x in body.split("\n")].index(key)  # the body starts at 10
    got = problems(text)
    assert any(
        p.startswith(f"r.toml:{line}: error: rule a key {key!r}: must be a finite number")
        and p.endswith(f"got {shown}")
        for p in got
    ), got


@pytest.mark.parametrize(
    "body",
    [
        'kind = "threshold"\nfield = "soc_pct"\nvalue = 1\nfor_s = 1e14\n',
        'kind = "drop"\nfield = "soc_pct"\ndelta = 1\nwindow_s = 2600000\n',
        'kind = "drop"\nfield = "soc_pct"\ndelta = 1\nmax_gap_s = 600\nfor_frames = 10000\n',
    ],
)
def test_a_rule_set_looking_back_past_30_days_is_refused(body: str) -> None:
    # A partition's restore replays that much history: now() - that span fails past what a
    # timestamp holds (for_s = 1e14), and anything near it reads every stored frame.
    got = problems(f'[[rule]]\nid = "a"\nseverity = "info"\n{body}')
    assert any("rule a: looks back" in p and "at most 2,592,000 s" in p for p in got), got


def test_generated_hot_loop_keeps_non_finite_constants_as_floats() -> None:
    # The loader refuses them; a rule set built by other means must still compile to code that
    # runs (repr(inf) is the name "inf") and decides as the rule's closure does.
    from dataclasses import replace

    from alerts import RuleEngine
    from alerts.frames import build_frame

    text = '[[rule]]\nid = "hot"\nseverity = "major"\nkind = "threshold"\nfield = "max_temp_c"\n'
    base = RuleSet.from_toml(text + "value = 60\n")
    for value, raised in ((float("inf"), False), (float("-inf"), True), (float("nan"), False)):
        rule = replace(base.rules[0], params={**base.rules[0].params, "value": value})
        engine = RuleEngine(replace(base, rules=(rule,)))
        frame = build_frame("LTEST000000000001", 1_782_835_200_000, max_temp_c=61)
        assert [c.type for c in engine.evaluate([frame])] == (["raised"] if raised else [])


@pytest.mark.parametrize(
    ("guard", "message"),
    [
        ('{ field = "soc_pct", op = ["=="], value = 1 }', "a guard's op must be one of"),
        ('{ field = "soc_pct", op = { eq = 1 }, value = 1 }', "a guard's op must be one of"),
        ('{ field = "soc_pct", op = "=~", value = 1 }', "a guard's op must be one of"),
        ('{ field = ["soc_pct"], op = "==", value = 1 }', "a guard's field must be a string"),
        ('{ field = "soc_pct", op = "==", value = [1] }', "a guard's value must be a number"),
        ('{ field = "soc_pct", op = "==", value = inf }', "a guard's value must be a finite"),
    ],
)
def test_a_guard_of_the_wrong_type_is_a_rule_file_error(guard: str, message: str) -> None:
    text = (
        '[[rule]]\nid = "a"\nseverity = "info"\nkind = "threshold"\nfield = "max_temp_c"\n'
        f"value = 60\nwhen = [{guard}]\n"
    )
    got = problems(text)
    assert any(p.startswith("r.toml:7: error: rule a key 'when': " + message) for p in got), got
