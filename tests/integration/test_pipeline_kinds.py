"""End to end through the real service for chargers, packs and T/CEC 102 pushes: charger
profile frames, standalone pack frames and T/CEC pushes (with their headers) on their own
topics become rows once, in every table of their kind, with latest_state per connector and per
pack (newest frame time wins, whatever the arrival order); bad frames and bad or partial
pushes reach the dead-letter topic with their reason; the offsets of all four raw topics are
stored; the frame metrics carry the entity kind."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from devtools.sim.envelope import china_time, reseal
from ingest.pipeline import wire
from tests.integration import kinds_frames as kf
from tests.integration import kinds_support as ks
from tests.integration import pipeline_support as ps
from tests.integration.kinds_support import Out
from tests.integration.pipeline_support import PipelineEnv
from tests.kinds_traffic import (
    CHARGE,
    OPERATOR,
    ORDER,
    STATUS,
    VIN,
    charge_status,
    connector,
    order_info,
    pack_code,
    received,
    station_status,
    tcec_headers,
)

pytestmark = pytest.mark.integration

C1, C2, C3 = connector(1), connector(2), connector(3)  # C3 reports by T/CEC pushes only
PACK_A, PACK_B, PACK_BAD = pack_code(1), pack_code(2), pack_code(3)


def _charger_records(env: PipelineEnv, t0: int) -> list[Out]:
    def out(ms: int, raw: bytes, cid: str = C1) -> Out:
        return Out(env.charger, f"{OPERATOR}:{cid}".encode(), raw, received(ms + 200))

    recs = [out(t0, kf.charger_login(china_time(t0), C1, C2)[0])]
    for i in range(20):  # connector 1 charging: energy rising by 0.14 kWh per 10 s
        ms = t0 + 10_000 * (i + 1)
        output = (400.0, 125.5, 50.2, round(1.0 + 0.14 * i, 3), 30 + i // 4)
        recs.append(out(ms, kf.charger_realtime(china_time(ms), C1, output=output)[0]))
    ms = t0 + 5_000
    recs.append(out(ms, kf.charger_realtime(china_time(ms), C1, pile_faults=(7, 9))[0]))
    for i in range(3):  # connector 2 idle: status only
        ms = t0 + 30_000 * (i + 1)
        raw = kf.charger_realtime(china_time(ms), C2, status=1, output=None, vehicle=None)[0]
        recs.append(out(ms, raw, C2))
    wrong_id = bytearray(kf.charger_realtime(china_time(t0 + 1000), C1)[0])
    wrong_id[4] = ord("m")  # OperatorID: digits and upper-case letters only
    bad_sum = bytearray(kf.charger_realtime(china_time(t0 + 2000), C1)[0])
    bad_sum[-1] ^= 0xFF
    recs += [out(t0 + 1000, reseal(wrong_id)), out(t0 + 2000, bytes(bad_sum))]
    return recs


def _pack_records(env: PipelineEnv, t0: int) -> list[Out]:
    def out(ms: int, raw: bytes, code: str) -> Out:
        return Out(env.battery, code.encode(), raw, received(ms + 200))

    recs = [out(t0, kf.pack_login(china_time(t0), PACK_A)[0], PACK_A)]
    for i in range(10):  # pack A in a swap station, charging up
        ms = t0 + 10_000 * (i + 1)
        raw = kf.pack_realtime(china_time(ms), PACK_A, soc=80 + i, cycles=420)[0]
        recs.append(out(ms, raw, PACK_A))
    # pack B in storage, its frames arriving newest first: latest_state keeps the newest
    for i in reversed(range(4)):
        ms = t0 + 20_000 * (i + 1)
        raw = kf.pack_realtime(china_time(ms), PACK_B, soc=50 + i, stage=3, site="WH-01")[0]
        recs.append(out(ms, raw, PACK_B))
    lower = bytearray(kf.pack_realtime(china_time(t0 + 3000), PACK_BAD)[0])
    lower[30] = ord("c")  # the pack code: upper-case letters and digits only
    recs.append(out(t0 + 3000, reseal(lower), PACK_BAD))
    recs.append(out(t0 + 4000, kf.pack_realtime(china_time(t0 + 4000), PACK_A)[0][:-6], PACK_A))
    return recs


def _tcec_records(env: PipelineEnv, t0: int) -> list[Out]:
    key = f"{OPERATOR}:{C3}".encode()

    def out(value: bytes, interface: str, ms: int, operator: str = OPERATOR) -> Out:
        return Out(env.tcec, key, value, tcec_headers(interface, ms, operator=operator))

    start = t0 + 1000
    recs = [out(station_status(C3, 3), STATUS, start)]
    for i in range(5):  # progress samples every minute
        ms = start + 60_000 * (i + 1)
        recs.append(out(charge_status(ms, C3, 1, start, 1.25 * (i + 1), 40.0 + i), CHARGE, ms))
    end = start + 6 * 60_000
    recs.append(out(order_info(C3, 1, start, end, 7.5), ORDER, end + 1000))
    recs.append(out(station_status(C3, 1), STATUS, end + 2000))
    # bad and partial pushes
    no_time = out(station_status(C3, 1), STATUS, end)
    no_time.headers[:] = [(k, v) for k, v in no_time.headers if k != wire.TCEC_TIMESTAMP]
    recs += [
        no_time,
        out(station_status(C3, 1), STATUS, end, operator="MA01"),
        out(b'{"ConnectorStatusInfo": ', STATUS, end),
        out(b'{"ConnectorStatusInfo": {"ConnectorID": "X"}}', STATUS, end),
        out(station_status(C3, 7), STATUS, end),
        out(station_status(C3, 1), "notification_nope", end),
    ]
    return recs


async def test_chargers_packs_and_tcec_pushes_are_stored_once(env: PipelineEnv) -> None:
    t0 = (time.time_ns() // 10**9 - 15 * 60) * 1000  # whole seconds, as frames carry
    records = [*_charger_records(env, t0), *_pack_records(env, t0), *_tcec_records(env, t0)]
    want = ks.expected(env, records)
    assert want.bad == {
        (env.charger, "bad_identity"): 1,
        (env.charger, "bad_checksum"): 1,
        (env.battery, "bad_identity"): 1,
        (env.battery, "length_mismatch"): 1,
        (env.tcec, wire.MISSING_HEADER): 1,
        (env.tcec, wire.BAD_HEADER): 1,
        (env.tcec, "bad_json"): 1,
        (env.tcec, "missing_field"): 1,
        (env.tcec, "bad_code"): 1,
        (env.tcec, "unknown_interface"): 1,
    }, "the traffic holds one record of each bad kind"

    async with ps.serving(env, "kinds") as svc:
        assert await ks.produce_records(env.kafka, records) == len(records)
        await ps.until(
            lambda: ps.caught_up(env, env.raw_topics), timeout_s=90, what="every offset stored"
        )

        # Every row of every decodable record, each exactly once.
        assert await ks.stored(env.dsn) == want.rows
        assert all(want.rows[t] for t in ks.KEYS if t != "pack_alarm_events")
        assert svc.metric("nev_ingest_duplicate_rows_skipped_total") == 0

        # Dead letters: the original record with its reason, from its own topic.
        dead = await ps.read_topic(env.kafka, env.dlq, expect=sum(want.bad.values()))
        got = Counter(
            (
                (ps.header(r.headers, wire.SOURCE_TOPIC) or b"").decode(),
                (ps.header(r.headers, wire.ERROR_REASON) or b"").decode(),
            )
            for r in dead
        )
        assert got == want.bad
        sent = {(r.topic.encode(), r.value) for r in records}
        assert {(ps.header(r.headers, wire.SOURCE_TOPIC), r.value) for r in dead} <= sent
        reason_of = {ps.header(r.headers, wire.ERROR_REASON): r for r in dead}
        missing = reason_of[wire.MISSING_HEADER.encode()]
        assert ps.header(missing.headers, wire.TCEC_INTERFACE) == STATUS.encode()

        # Metrics by kind: the T/CEC topic counts as charger.
        n_charger = sum(1 for r in records if r.topic in (env.charger, env.tcec))
        n_dead_charger = sum(n for (t, _), n in want.bad.items() if t in (env.charger, env.tcec))
        written = "nev_ingest_frames_written_total"
        assert svc.metric(written, kind="charger") == n_charger - n_dead_charger
        assert svc.metric(written, kind="battery") == sum(
            1 for r in records if r.topic == env.battery
        ) - sum(n for (t, _), n in want.bad.items() if t == env.battery)
        assert svc.metric(written, kind="vehicle") == 0
        dead_metric = "nev_ingest_frames_dead_lettered_total"
        assert svc.metric(dead_metric, kind="charger", reason="missing_header") == 1
        assert svc.metric(dead_metric, kind="battery", topic=env.battery) == 2

    chargers = await ks.latest(env.dsn, "charger")
    assert set(chargers) == {f"{OPERATOR}:{c}" for c in (C1, C2, C3)}
    one = chargers[f"{OPERATOR}:{C1}"]
    assert int(one["ts"].timestamp() * 1000) == t0 + 200_000  # the last of the 20 frames
    assert one["operator_id"] == OPERATOR and one["connector_status"] == 3
    assert one["energy_kwh"] == pytest.approx(1.0 + 0.14 * 19)
    assert one["power_kw"] == pytest.approx(50.2, abs=1e-3)
    assert one["connected_vin"] == VIN and one["soc_pct"] == 55 and one["max_temp_c"] == 34
    assert chargers[f"{OPERATOR}:{C2}"]["connector_status"] == 1
    three = chargers[f"{OPERATOR}:{C3}"]
    assert three["connector_status"] == 1  # the last status push, after the order
    assert three["energy_kwh"] == pytest.approx(6.25) and three["soc_pct"] == 44
    # received_at goes with ts: the newest report is a status push, which carries none
    # (docs/storage.md); an older push's receipt beside it would make "last seen" old.
    assert three["received_at"] is None

    packs = await ks.latest(env.dsn, "battery")
    assert set(packs) == {PACK_A, PACK_B}
    a, b = packs[PACK_A], packs[PACK_B]
    assert int(a["ts"].timestamp() * 1000) == t0 + 100_000 and a["soc_pct"] == 89
    assert a["place_id"] == "SWAP-SH-001" and a["lifecycle_stage"] == 2
    assert a["cycle_count"] == 420 and a["soh_pct"] == 97
    assert int(b["ts"].timestamp() * 1000) == t0 + 80_000  # arrived first, newest
    assert b["soc_pct"] == 53 and b["place_id"] == "WH-01" and b["lifecycle_stage"] == 3
