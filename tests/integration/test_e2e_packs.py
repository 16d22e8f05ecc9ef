"""The pack story of issue 11, end to end through the real service: vehicle V1 logs in with packs
A and B (GB/T 32960-2025 logins carry GB/T 34014 codes) and reports both packs' cells; later it
logs in with A and C; pack B shows up in swap station S (standalone pack frames on the battery
topic), then in vehicle V2. Every frame goes through Kafka and ``nev-ingest run``, in a shuffled
and in a fully reversed order: frame time alone must decide B's bindings, its swaps and whose
telemetry is B's. Read back as an operator would, with ``nev-ingest query pack``, and through
the views of 0009_pack_views."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime

import pytest

from devtools.sim.envelope import china_time
from ingest.decoders import (
    CellTemperatures,
    CellVoltages,
    Frame,
    Login,
    Logout,
    TemperaturePack,
    VoltagePack,
    encode_frame,
)
from tests.integration import pipeline_support as ps
from tests.integration.e2e_support import consume, fetch, query, sections, when
from tests.integration.kinds_frames import pack_login
from tests.integration.kinds_support import Out
from tests.integration.pipeline_support import PipelineEnv
from tests.kinds_traffic import pack_code, pack_realtime, received

pytestmark = pytest.mark.integration

V1, V2 = "LE2EPACK000000001", "LE2EPACK000000002"
A, B, C, D = (pack_code(n) for n in (101, 102, 103, 104))
SITE = "SWAP-E2E-S"
# Each place's cells for B, and C's (which must never count as B's): mV, distinct.
B_IN_V1_MV, C_IN_V1_MV, B_IN_V2_MV = 3310, 3400, 3290
B_IN_V1_C, C_IN_V1_C, B_IN_V2_C = 30, 50, 33
# Seconds after t0 (frame time).
V1_LOGIN_AB, V1_LOGOUT, V1_LOGIN_AC = 0, 90, 100
V1_AB_FRAMES = range(10, 70, 10)  # 6 frames: packs 1 = A, 2 = B
V1_AC_FRAMES = range(110, 160, 10)  # 5 frames: packs 1 = A, 2 = C
STATION_LOGIN, STATION_FRAMES = 195, range(200, 270, 10)  # 7 pack frames of B at S
V2_LOGIN = 300
V2_FRAMES = range(310, 360, 10)  # 5 frames: pack 1 = B, 2 = D


def _vehicle(topic: str, frame: Frame) -> Out:
    """The frame as a gateway produces it: key = VIN, received 0.3 s after its frame time."""
    assert frame.time is not None
    ms = int(frame.time.timestamp() * 1000)
    return Out(topic, frame.vin.encode(), encode_frame(frame), received(ms + 300))


def _login(vin: str, ms: int, seq: int, codes: tuple[str, ...]) -> Frame:
    body = Login(
        login_seq=seq, iccid="89860000000000000042", pack_codes=codes, bms_pack_counts=(2,)
    )
    return Frame(edition=2025, command=0x01, vin=vin, time=china_time(ms), body=body)


def _cells(vin: str, ms: int, packs: tuple[tuple[int, int, int], ...]) -> Frame:
    """A real-time frame whose pack blocks carry (position, cell mV, probe °C) per pack."""
    volts = tuple(
        VoltagePack(
            pack=p,
            voltage_v=640.0,
            current_a=-20.0,
            cell_count=3,
            first_cell=1,
            cell_voltages_v=((mv - 2) / 1000, mv / 1000, (mv - 1) / 1000),
        )
        for p, mv, _ in packs
    )
    temps = tuple(TemperaturePack(pack=p, probe_count=2, temps_c=(c - 1, c)) for p, _, c in packs)
    blocks = (CellVoltages(packs=volts), CellTemperatures(packs=temps))
    return Frame(edition=2025, command=0x02, vin=vin, time=china_time(ms), blocks=blocks)


def story(env: PipelineEnv, t0: int) -> list[Out]:
    def at(s: int) -> int:
        return t0 + s * 1000

    logout = Frame(
        edition=2025, command=0x04, vin=V1, time=china_time(at(V1_LOGOUT)), body=Logout(1)
    )
    frames = [
        _login(V1, at(V1_LOGIN_AB), 1, (A, B)),
        logout,
        _login(V1, at(V1_LOGIN_AC), 2, (A, C)),
        _login(V2, at(V2_LOGIN), 1, (B, D)),
    ]
    frames += [_cells(V1, at(s), ((1, 3200, 28), (2, B_IN_V1_MV, B_IN_V1_C))) for s in V1_AB_FRAMES]
    frames += [_cells(V1, at(s), ((1, 3200, 28), (2, C_IN_V1_MV, C_IN_V1_C))) for s in V1_AC_FRAMES]
    frames += [_cells(V2, at(s), ((1, B_IN_V2_MV, B_IN_V2_C), (2, 3250, 29))) for s in V2_FRAMES]
    records = [_vehicle(env.topic, f) for f in frames]

    def pack_out(ms: int, raw: bytes) -> Out:
        return Out(env.battery, B.encode(), raw, received(ms + 300))

    records.append(pack_out(at(STATION_LOGIN), pack_login(china_time(at(STATION_LOGIN)), B)[0]))
    for i, s in enumerate(STATION_FRAMES):  # B charging up at the station
        raw = pack_realtime(
            at(s), B, soc=40 + 5 * i, cycles=812, stage=2, site=SITE, cells=(3.301, 3.305),
            probes=(25, 26),
        )  # fmt: skip
        records.append(pack_out(at(s), raw))
    return records


@pytest.mark.parametrize("order", ["shuffled", "reversed"])
async def test_pack_bindings_swaps_and_history_by_frame_time(env: PipelineEnv, order: str) -> None:
    t0 = (time.time_ns() // 10**9 - 12 * 60) * 1000  # whole seconds, inside the stored window
    records = story(env, t0)
    if order == "shuffled":
        random.Random(34014).shuffle(records)
    else:
        records.sort(key=lambda r: int(dict(r.headers)["received_at"]), reverse=True)

    async with ps.serving(env, f"packs-{order}"):
        await consume(env, records)
        dead = await ps.read_topic(env.kafka, env.dlq, expect=0, timeout_s=1)
        assert dead == [], "every frame of the story is good"

    def at(s: int) -> datetime:
        return datetime.fromtimestamp(t0 / 1000 + s, UTC)

    # Every frame became its rows once: 4 logins + 1 logout; 16 vehicle frames of 2 packs.
    sessions = await fetch(env.dsn, "SELECT vin, event FROM {s}.vehicle_sessions")
    assert sorted(sessions) == sorted([(V1, "login"), (V1, "logout"), (V1, "login"), (V2, "login")])
    (n_packs,) = (await fetch(env.dsn, "SELECT count(*) FROM {s}.battery_pack_telemetry"))[0]
    assert n_packs == 2 * (len(V1_AB_FRAMES) + len(V1_AC_FRAMES) + len(V2_FRAMES))

    # The views: B's bindings V1 (position 2) -> station S -> V2 (position 1), by frame time.
    b_bindings = [
        ("vehicle", V1, 2, at(V1_LOGIN_AB), at(V1_LOGIN_AC), 1),
        # V1's second login names A and C: B's stay in V1 ends there, before S reports it
        ("unbound", V1, None, at(V1_LOGIN_AC), at(STATION_FRAMES[0]), 1),
        ("swap_station", SITE, None, at(STATION_FRAMES[0]), at(V2_LOGIN), len(STATION_FRAMES)),
        ("vehicle", V2, 1, at(V2_LOGIN), None, 1),
    ]
    view = await fetch(
        env.dsn,
        "SELECT place_kind, place_id, position, valid_from, valid_to, reports "
        "FROM {s}.pack_bindings WHERE pack_code = $1 ORDER BY valid_from",
        B,
    )
    assert view == b_bindings
    b_swaps = [
        (at(STATION_FRAMES[0]), "vehicle", V1, "swap_station", SITE),
        (at(V2_LOGIN), "swap_station", SITE, "vehicle", V2),
    ]
    swaps = await fetch(
        env.dsn,
        "SELECT ts, from_kind, from_id, to_kind, to_id FROM {s}.pack_swaps ORDER BY ts",
    )
    assert swaps == b_swaps, "A, C and D never moved"
    # Vehicle telemetry under the pack in that position at that time: C's cells in V1's
    # position 2 are C's, never B's.
    history = await fetch(
        env.dsn,
        "SELECT pack_code, vin, position, count(*), max(cell_max_mv), max(probe_max_c) "
        "FROM {s}.vehicle_pack_history WHERE pack_code IN ($1, $2) "
        "GROUP BY 1, 2, 3 ORDER BY 1, 2",
        B,
        C,
    )
    assert sorted(history) == sorted(
        [
            (B, V1, 2, len(V1_AB_FRAMES), B_IN_V1_MV, B_IN_V1_C),
            (B, V2, 1, len(V2_FRAMES), B_IN_V2_MV, B_IN_V2_C),
            (C, V1, 2, len(V1_AC_FRAMES), C_IN_V1_MV, C_IN_V1_C),
        ]
    )

    # The operator's question: `nev-ingest query pack B`.
    report = sections(query(env, "pack", B))
    (about,) = report["pack"]
    assert about["pack_code"] == B and about["manufacturer"] == B[:3]
    assert about["place_kind"] == "swap_station" and about["place_id"] == SITE
    assert about["soc_pct"] == 40 + 5 * (len(STATION_FRAMES) - 1)  # B's newest own report
    got = [
        (b["place_kind"], b["place_id"], b["position"], when(b["valid_from"]),
         when(b["valid_to"]), b["reports"])
        for b in report["bindings"]
    ]  # fmt: skip
    assert got == b_bindings
    # B's telemetry spans the three places: counts per place and one value of each place.
    per_place = [
        (b["vehicle_frames"], b["pack_frames"], b["cell_max_mv"], b["max_temp_c"])
        for b in report["bindings"]
    ]
    assert per_place == [
        (len(V1_AB_FRAMES), 0, B_IN_V1_MV, B_IN_V1_C),  # not C's 3400 mV / 50 °C
        (0, 0, None, None),  # out of V1, not yet seen at S
        (0, len(STATION_FRAMES), 3305, 26),
        (len(V2_FRAMES), 0, B_IN_V2_MV, B_IN_V2_C),
    ]
    station = report["bindings"][2]
    assert (station["soc_min_pct"], station["soc_max_pct"]) == (40, 70)
    assert [(when(s["ts"]), s["from_id"], s["to_id"]) for s in report["swaps"]] == [
        (t, f, to) for t, _, f, _, to in b_swaps
    ]
    # `query swaps` over the story: B's two swaps, nobody else's.
    window = ("--from", at(-60).isoformat(), "--to", at(3600).isoformat())
    assert [(r["pack_code"], when(r["ts"])) for r in query(env, "swaps", *window)] == [
        (B, t) for t, *_ in b_swaps
    ]
    # C was only ever in V1: one binding, no swap.
    c_report = query(env, "pack", C)
    assert [r["place_id"] for r in c_report if r["section"] == "bindings"] == [V1]
    assert not [r for r in c_report if r["section"] == "swaps"]
