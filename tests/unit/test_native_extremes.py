"""The per-pack and frame extremes of the native path: pack minima / maxima against the obvious
implementation (any cells and probes, with extremes-block hints right, wrong or absent: hints
are checked and never trusted), and the benchmark's frames (which must be the typical frames it
claims to measure)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.rows import cell_voltages_mv, probe_temps_c
from devtools.sim.framebuilder import TIME_HEX, build
from ingest.decoders.fast import decode_rows
from loadtest.bench_decode import main, typical_frames
from tests.unit.vectors_support import load_vectors

pytestmark = pytest.mark.unit


# Frames are built from commented hex pieces as in test_fast.py (``duplicates`` pairs the calls
# by shape): each golden case reads as the spec table it checks.
def cells(*mv: int) -> str:
    return "".join(f"{v:04X}" for v in mv)


def test_all_sentinel_cells_and_probes_give_no_extremes() -> None:
    frame = build(
        2016,
        0x02,
        TIME_HEX,
        "08 01 01 1B58 2710 0002 0001 02" + cells(0xFFFF, 0xFFFE),
        "09 01 01 0003 FE FF FF",
    )
    (p,) = decode_rows(frame).packs
    assert (p.cell_min_mv, p.cell_max_mv, p.probe_min_c, p.probe_max_c) == (None,) * 4
    assert probe_temps_c(p) == [None, None, None]


def test_a_lying_extremes_block_does_not_change_pack_extremes() -> None:
    # The extremes block claims 3.310 V / 3.300 V, but a cell reads 3.350 V: the hint is
    # checked against the cells, not trusted.
    frame = build(
        2016,
        0x02,
        TIME_HEX,
        "06 01 01 0CEE 01 02 0CE4 01 01 46 01 02 41",
        "08 01 01 1B58 2710 0003 0001 03" + cells(3310, 3300, 3350),
        "09 01 01 0002 46 50",
    )
    rows = decode_rows(frame)
    (p,) = rows.packs
    assert (p.cell_min_mv, p.cell_max_mv, p.probe_min_c, p.probe_max_c) == (3300, 3350, 30, 40)
    assert rows.vehicle is not None and rows.vehicle.max_cell_voltage_v == 3.31  # as sent


@pytest.mark.parametrize("hinted", [True, False])
def test_pack_straddling_a_256_mv_boundary(hinted: bool) -> None:
    # LFP cells around 3.328 V = 0x0D00: high bytes 0x0C and 0x0D in one pack.
    values = [3320, 3335, 3327, 3328, 3340, 3319, 3330]
    extremes = "06 01 05 0D0C 01 06 0CF7 01 01 46 01 01 46" if hinted else ""
    frame = build(
        2016,
        0x02,
        TIME_HEX,
        extremes,
        "08 01 01 1B58 2710 0007 0001 07" + cells(*values),
    )
    (p,) = decode_rows(frame).packs
    assert (p.cell_min_mv, p.cell_max_mv) == (3319, 3340)


# --- pack extremes against the obvious implementation, through whole frames ----------------

_u16 = st.one_of(
    st.integers(0, 0xFFFF),
    st.sampled_from([0xFFFE, 0xFFFF, 0x0CFF, 0x0D00, 0x0FFF, 0x1000, 0xFEFF, 0xFF00]),
)


def _extremes_16(v_max: int, v_min: int, t_max: int, t_min: int) -> str:
    """A 2016 extremes block (Table 16) of pack 1 with these raw values: the hints."""
    return f"06 01 01 {v_max:04X} 01 01 {v_min:04X} 01 01 {t_max:02X} 01 01 {t_min:02X}"


@settings(max_examples=2000, deadline=None)
@given(
    st.integers(0, 0xFFFF),
    st.lists(st.integers(-300, 300), max_size=40),
    st.lists(_u16, max_size=3),
    st.data(),
)
def test_cell_extremes_match_min_max(
    base: int, deltas: list[int], odd: list[int], data: st.DataObject
) -> None:
    values = [min(0xFFFF, max(0, base + d)) for d in deltas] + odd or [base]
    values = data.draw(st.permutations(values))
    valid = [v for v in values if v < 0xFFFE]
    want = (min(valid), max(valid)) if valid else (None, None)
    # Hints: right, wrong, or none; they may only ever speed things up.
    hint = data.draw(
        st.sampled_from([want, None] + [(a, b) for a in values[:2] for b in values[:2]])
    )
    extremes = ""
    if hint is not None:
        lo, hi = (0xFFFF if v is None else v for v in hint)  # None: the invalid-value code
        extremes = _extremes_16(hi, lo, 0xFF, 0xFF)
    page = f"08 01 01 1B58 2710 {len(values):04X} 0001 {len(values):02X}" + cells(*values)
    rows = decode_rows(build(2016, 0x02, TIME_HEX, extremes, page))
    assert not rows.partial
    (p,) = rows.packs
    assert (p.cell_min_mv, p.cell_max_mv) == want
    assert cell_voltages_mv(p) == [None if v >= 0xFFFE else v for v in values]


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=40), st.integers(-1, 255), st.integers(-1, 255))
def test_probe_extremes_match_min_max(raw: bytes, hint_max: int, hint_min: int) -> None:
    valid = [b for b in raw if b < 0xFE]
    want = (min(valid) - 40, max(valid) - 40) if valid else (None, None)
    hints = [(hint_max, hint_min)] + ([(max(valid), min(valid))] if valid else [])
    for t_max, t_min in hints:
        extremes = "" if t_max < 0 else _extremes_16(0x0CE4, 0x0CE0, t_max, max(t_min, 0))
        probes = f"09 01 01 {len(raw):04X} {raw.hex()}"
        rows = decode_rows(build(2016, 0x02, TIME_HEX, extremes, probes))
        assert not rows.partial
        (p,) = rows.packs
        assert (p.probe_min_c, p.probe_max_c) == want


# --- the benchmark measures what it says --------------------------------------------------


def test_benchmark_frames_are_typical_real_time_frames() -> None:
    for edition in (2016, 2025):
        frames = typical_frames(edition, 50)
        for raw in frames:
            rows = decode_rows(raw)
            assert rows.vehicle is not None and not rows.partial
            assert len(rows.motors) == 1 and rows.alarm is None
            (p,) = rows.packs
            assert len(p.cell_voltages_raw) == 192 and len(p.probe_temps_raw) == 32
            mv = cell_voltages_mv(p)
            assert (p.cell_min_mv, p.cell_max_mv) == (min(mv), max(mv))  # type: ignore[type-var]
        if edition == 2016:
            assert 320 <= sum(map(len, frames)) / len(frames) <= 360  # "about 330 bytes"


def test_benchmark_prints_its_figures_as_the_last_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seconds", "0.01", "--frames", "20"]) == 0
    out = capsys.readouterr()
    result = json.loads(out.out.strip().splitlines()[-1])
    assert result["phases"]["fast_typical_2016"]["frames_per_s"] > 0
    assert result["params"]["vector_frames"] == len(load_vectors())
    assert "frames/s" in out.err  # the progress lines
