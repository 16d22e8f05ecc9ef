"""Hypothesis strategies for every record of both editions, built from the layouts' own field
declarations (valid values, sentinels - abnormal and invalid - and out-of-range raws), so the
round-trip property covers each field's whole raw domain."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hypothesis import strategies as st

from contract.clock import CHINA_TZ
from ingest.decoders import (
    Activation,
    ActivationResponse,
    Alarm,
    BitLevel,
    CellTemperatures,
    CellVoltages,
    Control,
    CustomBlock,
    DriveMotors,
    Frame,
    KeyExchange,
    Login,
    Logout,
    Motor,
    Param,
    ParamList,
    PlatformLogin,
    Position,
    QueryRequest,
    Signature,
    Stack,
    SuperCapacitor,
    TemperaturePack,
    Vehicle,
    VoltagePack,
)
from ingest.decoders.blocks import (
    alarm,
    cell_voltages,
    drive_motors,
    engine,
    extremes,
    fuel_cell,
    fuel_cell_stacks,
    super_capacitor,
    super_capacitor_extremes,
    vehicle,
)
from ingest.decoders.fields import Field, Layout

# ``duplicates`` pairs the import list above with ingest/decoders/registry.py's (the same block
# modules, one a line): imports, not repeated logic.

_TOP = {"B": 0xFF, "H": 0xFFFF, "I": 0xFFFFFFFF}
Q = list[tuple[str, str]]


def _convert(f: Field, raw: int) -> tuple[Any, Q]:
    top = _TOP[f.code]
    hi = f.hi if f.hi is not None else (top - 2 if f.sentinel else top)
    if f.sentinel and raw >= top - 1:
        return None, [(f.name, "abnormal")] if raw == top - 1 else []
    q: Q = [(f.name, "out_of_range")] if raw < f.lo or raw > hi else []
    return (raw - f.sub if f.div == 1 else (raw - f.sub) / f.div), q


def scalar(f: Field) -> st.SearchStrategy[tuple[Any, Q]]:
    """A field's engineering value (and its quality) from any raw value of its width."""
    top = _TOP[f.code]
    hi = f.hi if f.hi is not None else (top - 2 if f.sentinel else top)
    raws = [st.integers(f.lo, hi)]
    if f.sentinel:
        raws.append(st.sampled_from([top - 1, top]))
    limit = top - 2 if f.sentinel else top
    if hi < limit:
        raws.append(st.integers(hi + 1, limit))
    if f.lo > 0:
        raws.append(st.integers(0, f.lo - 1))
    return st.one_of(raws).map(lambda raw: _convert(f, raw))


def layout(lay: Layout) -> st.SearchStrategy[tuple[dict[str, Any], Q]]:
    """Keyword values and quality (in field order) for a whole layout."""

    def join(items: tuple[tuple[Any, Q], ...]) -> tuple[dict[str, Any], Q]:
        kw = {f.name: v for f, (v, _) in zip(lay.fields, items, strict=True)}
        return kw, [x for _, q in items for x in q]

    return st.tuples(*[scalar(f) for f in lay.fields]).map(join)


def counted(
    items: st.SearchStrategy[Any], name: str, lo: int, hi: int, max_size: int = 3
) -> st.SearchStrategy[tuple[Any, Q]]:
    """A counted list: a tuple (quality out_of_range outside lo..hi) or None (sentinel)."""

    def q_of(xs: list[Any]) -> tuple[Any, Q]:
        return tuple(xs), ([(name, "out_of_range")] if not lo <= len(xs) <= hi else [])

    sentinel = st.sampled_from([(None, [(name, "abnormal")]), (None, [])])
    return st.one_of(st.lists(items, max_size=max_size).map(q_of), sentinel)


def _fixed(lay: Layout, cls: Any) -> st.SearchStrategy[Any]:
    return layout(lay).map(lambda kq: cls(**kq[0], quality=tuple(kq[1])))


def _raw_array(code: str, div: int, sub: int, sentinel: bool = True) -> st.SearchStrategy[Any]:
    top = _TOP[code]
    valid = st.integers(0, top - 2 if sentinel else top).map(
        lambda r: r - sub if div == 1 else (r - sub) / div
    )
    return st.one_of(valid, st.none()) if sentinel else valid


def drive_motors_block(edition: int) -> st.SearchStrategy[DriveMotors]:
    lay = drive_motors.LAYOUT_2016 if edition == 2016 else drive_motors.LAYOUT_2025
    motor = _fixed(lay, Motor)
    return counted(motor, "motors", 1, 253).map(lambda lq: DriveMotors(lq[0], tuple(lq[1])))


def position_block(edition: int) -> st.SearchStrategy[Position]:
    coord = st.one_of(
        st.integers(0, 0xFFFFFFFD), st.sampled_from([0xFFFFFFFE, 0xFFFFFFFF, 180_000_000])
    )

    def build(args: tuple[int, int | None, int, int]) -> Position:
        status, cs, lon, lat = args
        q: Q = []

        def one(raw: int, neg: bool, name: str, limit: int) -> float | None:
            if raw >= 0xFFFFFFFE:
                if raw == 0xFFFFFFFE:
                    q.append((name, "abnormal"))
                return None
            if raw > limit:
                q.append((name, "out_of_range"))
            return (-raw if neg else raw) / 1e6  # as the decoder: a west or south 0 is 0.0

        lo = one(lon, bool(status & 4), "longitude", 180_000_000)
        la = one(lat, bool(status & 2), "latitude", 90_000_000)
        if cs is not None and not 1 <= cs <= 3:
            q.append(("coord_system", "out_of_range"))
        return Position(not status & 1, lo, la, cs, status, tuple(q))

    cs = st.none() if edition == 2016 else st.integers(0, 255)
    return st.tuples(st.integers(0, 255), cs, coord, coord).map(build)


def alarm_block(edition: int) -> st.SearchStrategy[Alarm]:
    head = alarm.HEAD_2016 if edition == 2016 else alarm.HEAD_2025
    hi = 252 if edition == 2016 else 253
    code = st.integers(0, 0xFFFFFFFF)
    lists = [counted(code, n, 0, hi) for n in alarm._FAULT_LISTS]
    levels = (
        st.just((None, []))
        if edition == 2016
        else counted(
            st.builds(BitLevel, st.integers(0, 255), st.integers(0, 255)), "bit_levels", 0, hi
        )
    )

    def build(args: tuple[Any, ...]) -> Alarm:
        (kw, q), *parts = args
        quality = list(q)
        values = []
        for v, pq in parts:
            values.append(v)
            quality += pq
        ress, motor, eng, other, levels = values
        return Alarm(
            kw["max_level"], kw["general_flags"], ress, motor, eng, other, levels, tuple(quality)
        )

    return st.tuples(layout(head), *lists, levels).map(build)


def cell_voltages_block(edition: int) -> st.SearchStrategy[CellVoltages]:
    cells = _raw_array("H", 1000, 0)
    if edition == 2016:

        def pack16(args: tuple[Any, Any]) -> VoltagePack:
            (kw, q), (vs, cq) = args
            return VoltagePack(**kw, cell_voltages_v=vs, quality=tuple(q + cq))

        head = layout(cell_voltages.HEAD_2016)
        pack = st.tuples(head, counted(cells, "cell_voltages_v", 1, 200, 6)).map(pack16)
        lo, hi = 1, 250
    else:

        def pack25(args: tuple[Any, Any]) -> VoltagePack:
            (kw, q), (vs, cq) = args
            n = None if vs is None else len(vs)
            return VoltagePack(
                **kw, cell_count=n, first_cell=1, cell_voltages_v=vs, quality=tuple(q + cq)
            )

        head = layout(cell_voltages.HEAD_2025)
        pack = st.tuples(head, counted(cells, "cell_count", 1, 65_531, 6)).map(pack25)
        lo, hi = 0, 50
    return counted(pack, "packs", lo, hi).map(lambda pq: CellVoltages(pq[0], tuple(pq[1])))


def cell_temperatures_block(edition: int) -> st.SearchStrategy[CellTemperatures]:
    pack_hi, count_lo = (250, 1) if edition == 2016 else (50, 0)
    pack_field = Field("pack", "B", lo=1, hi=pack_hi, sentinel=edition == 2025)

    def build(args: tuple[Any, Any]) -> TemperaturePack:
        (p, q), (temps, tq) = args
        n = None if temps is None else len(temps)
        return TemperaturePack(p, n, temps, tuple(q + tq))

    temps = counted(_raw_array("B", 1, 40), "probe_count", 1, 65_531, 6)
    pack = st.tuples(scalar(pack_field), temps).map(build)
    return counted(pack, "packs", count_lo, pack_hi).map(
        lambda pq: CellTemperatures(pq[0], tuple(pq[1]))
    )


def fuel_cell_block(edition: int) -> st.SearchStrategy[Any]:
    if edition == 2025:
        return _fixed(fuel_cell.LAYOUT_2025, fuel_cell.FuelCell)
    probes = counted(_raw_array("B", 1, 40, sentinel=False), "probe_temps_c", 0, 65_531, 6)

    def build(args: tuple[Any, Any, Any]) -> Any:
        (hk, hq), (temps, pq), (tk, tq) = args
        return fuel_cell.FuelCell(**hk, **tk, probe_temps_c=temps, quality=tuple(hq + pq + tq))

    return st.tuples(layout(fuel_cell.HEAD_2016), probes, layout(fuel_cell.TAIL_2016)).map(build)


def fuel_cell_stacks_block() -> st.SearchStrategy[Any]:
    def build(args: tuple[Any, Any]) -> Stack:
        (kw, q), (temps, tq) = args
        return Stack(**kw, coolant_temps_c=temps, quality=tuple(q + tq))

    temps = counted(_raw_array("B", 1, 40), "coolant_temps_c", 0, 65_531, 6)
    stack = st.tuples(layout(fuel_cell_stacks.HEAD), temps).map(build)
    return counted(stack, "stacks", 1, 253).map(
        lambda sq: fuel_cell_stacks.FuelCellStacks(sq[0], tuple(sq[1]))
    )


def super_capacitor_block() -> st.SearchStrategy[SuperCapacitor]:
    def build(args: tuple[Any, Any, Any]) -> SuperCapacitor:
        (kw, q), (cells, cq), (temps, tq) = args
        return SuperCapacitor(
            **kw, cell_voltages_v=cells, temps_c=temps, quality=tuple(q + cq + tq)
        )

    cells = counted(_raw_array("H", 1000, 0), "cell_voltages_v", 1, 65_531, 6)
    temps = counted(_raw_array("B", 1, 40), "temps_c", 1, 65_531, 6)
    return st.tuples(layout(super_capacitor.HEAD), cells, temps).map(build)


def custom_block() -> st.SearchStrategy[CustomBlock]:
    return st.builds(CustomBlock, st.integers(0x80, 0xFE), st.binary(max_size=40))


def block(edition: int) -> st.SearchStrategy[Any]:
    """Any information block of the edition."""
    common = [
        drive_motors_block(edition),
        position_block(edition),
        alarm_block(edition),
        cell_voltages_block(edition),
        cell_temperatures_block(edition),
        fuel_cell_block(edition),
        custom_block(),
    ]
    if edition == 2016:
        return st.one_of(
            _fixed(vehicle.LAYOUT_2016, Vehicle),
            _fixed(engine.LAYOUT_2016, engine.Engine),
            _fixed(extremes.LAYOUT_2016, extremes.Extremes),
            *common,
        )
    return st.one_of(
        _fixed(vehicle.LAYOUT_2025, Vehicle),
        _fixed(engine.LAYOUT_2025, engine.Engine),
        _fixed(
            super_capacitor_extremes.LAYOUT_2025, super_capacitor_extremes.SuperCapacitorExtremes
        ),
        fuel_cell_stacks_block(),
        super_capacitor_block(),
        *common,
    )


# --- envelope and command bodies -----------------------------------------------------------

ALNUM = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
# The ID of a frame whose rows are keyed by it: a VIN (ingest/decoders/identity.py).
vins = st.text(ALNUM, min_size=17, max_size=17)
# Aware times in Beijing time, whole seconds (the wire has no sub-second part).
times = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive
    max_value=datetime(2099, 12, 31, 23, 59, 59),  # noqa: DTZ001
).map(lambda t: t.replace(microsecond=0, tzinfo=CHINA_TZ))


def text(max_bytes: int, alphabet: str = ALNUM) -> st.SearchStrategy[str]:
    return st.text(alphabet, max_size=max_bytes)


def platform_text(width: int) -> st.SearchStrategy[str]:
    """ASCII or Chinese (GB 18030, 2 bytes a character) that fits ``width`` bytes."""
    chinese = st.text("威海广泰空港新能源", max_size=width // 2)
    return st.one_of(text(width), chinese)


def signature(no_ff: bool = False) -> st.SearchStrategy[Signature]:
    data = st.binary(max_size=40)
    if no_ff:
        data = data.map(lambda b: b.replace(b"\xff", b"\x00"))
    return st.builds(Signature, st.integers(1, 3) if no_ff else st.integers(0, 255), data, data)


def login_body(edition: int) -> st.SearchStrategy[Login]:
    if edition == 2016:

        @st.composite
        def build(draw: st.DrawFn) -> Login:
            n = draw(st.integers(0, 4))
            m = draw(st.integers(0, 30))
            codes = (
                tuple(draw(st.text(ALNUM, min_size=m, max_size=m)) for _ in range(n)) if m else ()
            )
            return Login(draw(st.integers(0, 65535)), draw(text(20)), codes, n, m, None)

        return build()

    @st.composite
    def build25(draw: st.DrawFn) -> Login:
        counts = tuple(draw(st.lists(st.integers(0, 3), max_size=3)))
        codes = tuple(draw(st.text(ALNUM, min_size=24, max_size=24)) for _ in range(sum(counts)))
        return Login(draw(st.integers(0, 65535)), draw(text(20)), codes, None, None, counts)

    return build25()


def param_list(edition: int) -> st.SearchStrategy[ParamList]:
    byte_ids = [0x09, 0x0C, 0x10] + ([0x02, 0x03] if edition == 2025 else [])
    word_ids = [0x01, 0x06, 0x0A, 0x0B, 0x0F] + ([0x02, 0x03] if edition == 2016 else [])
    item = st.one_of(
        st.tuples(st.sampled_from(byte_ids), st.one_of(st.none(), st.integers(0, 253))).map(
            lambda t: [Param(*t)]
        ),
        st.tuples(st.sampled_from(word_ids), st.one_of(st.none(), st.integers(0, 65533))).map(
            lambda t: [Param(*t)]
        ),
        st.tuples(st.sampled_from([0x07, 0x08]), text(5)).map(lambda t: [Param(*t)]),
        st.tuples(st.sampled_from([(0x04, 0x05), (0x0D, 0x0E)]), text(30, ALNUM.lower() + ".")).map(
            lambda t: [Param(t[0][0], len(t[1])), Param(t[0][1], t[1])]
        ),
    )
    return st.one_of(
        st.lists(item, max_size=5).map(lambda xs: ParamList(tuple(p for x in xs for p in x))),
        st.just(ParamList(None)),
    )


def _frame(edition: int, command: int, response: Any, **kw: Any) -> st.SearchStrategy[Frame]:
    resp = response if isinstance(response, st.SearchStrategy) else st.just(response)
    vin = vins if command in (0x01, 0x04) and response == 0xFE else text(17)
    return st.builds(Frame, st.just(edition), st.just(command), resp, vin=vin, **kw)


def realtime_frame(edition: int) -> st.SearchStrategy[Frame]:
    blocks = st.lists(block(edition), max_size=6).map(tuple)
    if edition == 2016:
        unknown = st.integers(0x0A, 0x7F)
    else:
        unknown = st.one_of(st.integers(0x09, 0x2F), st.integers(0x33, 0x7F))
    tail = st.one_of(
        st.none(),
        st.tuples(unknown, st.binary(max_size=30)).map(
            # No 0xFF in a 2025 tail: after a stopped walk the signature is found by a
            # backwards heuristic (§3.12), which a look-alike inside the tail could fool.
            lambda t: bytes([t[0]]) + (t[1].replace(b"\xff", b"\x00") if edition == 2025 else t[1])
        ),
    )

    @st.composite
    def build(draw: st.DrawFn) -> Frame:
        t = draw(tail)
        sig = None
        if edition == 2025:
            sig = draw(st.one_of(st.none(), signature(no_ff=t is not None)))
        return Frame(
            edition,
            draw(st.sampled_from([2, 3])),
            0xFE,
            draw(vins),
            1,
            draw(times),
            None,
            draw(blocks),
            sig,
            t,
        )

    return build()


def body_frame(edition: int) -> st.SearchStrategy[Frame]:
    """Commands other than real-time data, command and response packets, custom and
    encrypted payloads."""
    fe = 0xFE
    resp = st.sampled_from([1, 2, 3, 4, 5, 6, 7])
    options = [
        _frame(edition, 0x01, fe, time=times, body=login_body(edition)),
        _frame(edition, 0x01, 1, time=times, body=st.one_of(st.none(), login_body(edition))),
        _frame(edition, 0x04, fe, time=times, body=st.builds(Logout, st.integers(0, 65535))),
        _frame(edition, 0x06, fe, time=times, body=st.builds(Logout, st.integers(0, 65535))),
        _frame(
            edition,
            0x05,
            fe,
            time=times,
            body=st.builds(
                PlatformLogin,
                st.integers(0, 65535),
                platform_text(12),
                platform_text(20),
                st.integers(0, 255),
            ),
        ),
        _frame(edition, 0x07, fe),
        _frame(edition, 0x08, fe),
        _frame(edition, 0x07, 1, time=st.one_of(st.none(), times)),
        _frame(edition, 0x08, 1, time=st.one_of(st.none(), times)),
        _frame(edition, 0x02, 1, time=times),
        _frame(
            edition,
            0x80,
            fe,
            time=times,
            body=st.builds(QueryRequest, st.one_of(st.none(), st.binary(max_size=10).map(tuple))),
        ),
        _frame(edition, 0x80, 1, time=times, body=param_list(edition)),
        _frame(edition, 0x81, st.sampled_from([fe, 1]), time=times, body=param_list(edition)),
        _frame(
            edition,
            0x82,
            fe,
            time=times,
            body=st.builds(Control, st.integers(0, 255), st.binary(max_size=40)),
        ),
        _frame(edition, 0x04, resp, time=times),
        st.builds(
            Frame,
            st.just(edition),
            st.integers(0xC0, 0xFE),
            st.just(fe),
            text(17),
            st.just(1),
            tail=st.binary(min_size=1, max_size=40),
        ),
        st.builds(
            Frame,
            st.just(edition),
            st.sampled_from([1, 2, 3, 4]),
            st.just(fe),
            vins,
            st.integers(2, 255),
            tail=st.binary(min_size=1, max_size=40),
        ),
    ]
    if edition == 2025:
        options += [
            _frame(
                2025,
                0x09,
                fe,
                time=times,
                body=st.builds(Activation, text(16), st.binary(max_size=64), text(17)),
                signature=signature(),
            ),
            _frame(
                2025,
                0x0A,
                fe,
                body=st.builds(ActivationResponse, st.integers(0, 255), st.integers(0, 255)),
            ),
            _frame(
                2025,
                0x0B,
                fe,
                body=st.builds(
                    KeyExchange, st.integers(0, 255), st.binary(max_size=40), times, times
                ),
            ),
        ]
    return st.one_of(options)


def any_frame() -> st.SearchStrategy[Frame]:
    """Any frame of either edition the decoder can produce from valid bytes."""
    return st.one_of(realtime_frame(2016), realtime_frame(2025), body_frame(2016), body_frame(2025))
