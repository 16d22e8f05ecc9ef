"""Chargers and packs through the batch writer on the real PostgreSQL, with both loaders: a
batch mixing the three kinds (frames built with the profiles' encoders and decoded by the real
decoders, T/CEC pushes by the push decoder) lands in every table as sent; latest_state per
connector and per pack; replays fenced, reissues skipped, old times partitioned on demand."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from alerts import replay
from alerts.replay_kinds import recent_objects
from contract.clock import CHINA_TZ
from devtools.sim.synthetic import frame_rows, vin
from storage import (
    LoaderKind,
    OffsetRange,
    PoolParams,
    RetryParams,
    StorageWriter,
    WriterParams,
    queries_online,
)
from storage.batch import Decoded
from storage.connect import connect
from storage.params import DEFAULT_SCHEMA, TIMESERIES_TABLES
from tests.integration.kinds_frames import (
    OPERATOR,
    PACK,
    PACK_B,
    charger_login,
    charger_realtime,
    connector,
    pack_login,
    pack_realtime,
    seq,
    tcec_charge,
    tcec_status,
)

pytestmark = pytest.mark.integration

VEH, CHG, TCEC, BAT = (
    ("nev.vehicle.raw", 0),
    ("nev.charger.raw", 0),
    ("nev.charger.tcec", 0),
    ("nev.battery.raw", 0),
)
T0 = datetime.now(CHINA_TZ).replace(microsecond=0) - timedelta(hours=2)
C1, C2 = connector(1), connector(2)
WriterFactory = Callable[..., Awaitable[StorageWriter]]


# Like test_storage_writer.py's writer_factory (``duplicates`` pairs them by shape), with
# this module's application name.
@pytest.fixture(params=[LoaderKind.COPY, LoaderKind.UNNEST], ids=["copy", "unnest"])
async def writer_factory(
    migrated_database: str, request: pytest.FixtureRequest
) -> AsyncIterator[WriterFactory]:
    opened: list[StorageWriter] = []

    async def make(group: str = "g", **kw: Any) -> StorageWriter:
        kw.setdefault("retry", RetryParams(attempts=3, initial=0.01, maximum=0.05))
        kw.setdefault("loader", request.param)
        params = WriterParams(consumer_group=group, **kw)
        w = await StorageWriter.open(
            PoolParams(dsn=migrated_database, application_name="nev-test-kinds"), params
        )
        opened.append(w)
        return w

    yield make
    for w in opened:
        await w.close()


class Batch:
    """Frames of several topics with their partitions, raw bytes and Kafka offsets."""

    def __init__(self) -> None:
        self.frames: list[Decoded] = []
        self.sources: list[tuple[str, int]] = []
        self.raw: list[bytes] = []
        self.offsets: list[int] = []
        self.next: dict[tuple[str, int], int] = {}

    def add(self, tp: tuple[str, int], frame: tuple[bytes, Decoded] | Decoded) -> None:
        raw, rows = frame if isinstance(frame, tuple) else (b"rows", frame)
        self.frames.append(rows)
        self.sources.append(tp)
        self.raw.append(raw)
        at = self.next.get(tp, 0)
        self.offsets.append(at)
        self.next[tp] = at + 1

    def ranges(self, start: dict[tuple[str, int], int] | None = None) -> dict[Any, OffsetRange]:
        start = start or {}
        return {tp: OffsetRange(start.get(tp), start.get(tp, 0) + n) for tp, n in self.next.items()}

    async def write(self, w: StorageWriter, **kw: Any) -> Any:
        return await w.write_batch(
            self.frames,
            self.ranges(kw.pop("start", None)),
            partitions=self.sources,
            kafka_offsets=self.offsets,
            raw=self.raw,
            **kw,
        )


def mixed(t0: datetime = T0) -> Batch:
    """Vehicles, a charger (login, frames with an order and faults), T/CEC pushes and a pack
    (login, a frame with sentinels and an alarm) in one batch."""
    b = Batch()
    for k in range(2):
        b.add(VEH, frame_rows(vin(k), t0 + timedelta(seconds=10 * k), seq=k))
    b.add(CHG, charger_login(t0, C1, C2))
    b.add(
        CHG,
        charger_realtime(
            t0 + timedelta(seconds=30), C1, order=seq(1), faults=(7,), pile_faults=(1, 2)
        ),
    )
    b.add(TCEC, tcec_status(t0 + timedelta(seconds=40), C2, 1))
    b.add(TCEC, tcec_charge(t0 + timedelta(seconds=50), C2, seq(2), 10.5, 55.6))
    b.add(BAT, pack_login(t0))
    b.add(BAT, pack_realtime(t0 + timedelta(seconds=60), alarm=(2, 5, (11, 12))))
    b.add(BAT, pack_realtime(t0 + timedelta(seconds=60), PACK_B, cells=(3.2,), probes=(20,)))
    return b


EXPECTED_ROWS = {
    "vehicle_telemetry": 2,
    "drive_motor_telemetry": 2,
    "battery_pack_telemetry": 2,
    "charger_connectors": 2,
    "connector_status_events": 3,  # the frame's and both pushes'
    "charger_telemetry": 2,
    "charging_session_events": 2,
    "charger_faults": 2,  # the connector's and the pile's
    "pack_telemetry": 2,
    "pack_alarm_events": 1,
    "pack_sessions": 1,
}


async def check_mixed_rows(conn: Any, t0: datetime = T0) -> None:
    """The rows of ``mixed(t0)`` as the tables hold them (shared with the TimescaleDB test)."""
    for table, n in EXPECTED_ROWS.items():
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") == n, table
    p = await conn.fetchrow("SELECT * FROM pack_telemetry WHERE pack_code = $1", PACK)
    assert p["ts"] == t0 + timedelta(seconds=60) and p["edition"] == 2025
    assert p["cell_voltages_mv"] == [3301, 3305, None, 3298]  # the invalid cell is NULL
    assert p["probe_temps_c"] == [25, -5, None, 31]
    assert (p["cell_min_mv"], p["cell_max_mv"], p["probe_min_c"], p["probe_max_c"]) == (
        3298, 3305, -5, 31,
    )  # fmt: skip
    assert (p["lifecycle_stage"], p["soc_pct"], p["soh_pct"], p["cycle_count"]) == (2, 80, 97, 420)
    assert p["voltage_v"] == pytest.approx(652.4) and p["current_a"] == pytest.approx(-12.5)
    assert (p["site_id"], p["slot"], p["alarm_flags"], p["fault_count"]) == ("SWAP-SH-001", 7, 5, 2)
    a = await conn.fetchrow("SELECT * FROM pack_alarm_events")
    assert (a["pack_code"], a["max_level"], a["fault_codes"]) == (PACK, 2, [11, 12])
    s = await conn.fetchrow("SELECT * FROM pack_sessions")
    assert (s["event"], s["seq"], s["iccid"], s["original_code"]) == (
        "login", 3, "89860000000000000001", None,
    )  # fmt: skip
    t = await conn.fetchrow("SELECT * FROM charger_telemetry WHERE source = 'frame'")
    assert (t["connector_id"], t["charger_id"], t["vin"], t["connector_temp_c"]) == (
        C1, "MA01H3BQ2P0000001", "LSVAU2180N2183294", 35,
    )  # fmt: skip
    assert t["energy_kwh"] == pytest.approx(12.345) and t["power_kw"] == pytest.approx(50.2)
    pushed = await conn.fetchrow("SELECT * FROM charger_telemetry WHERE source = 'tcec'")
    assert (pushed["power_kw"], pushed["connector_temp_c"], pushed["charger_id"]) == (
        None, None, None,
    )  # fmt: skip
    faults = await conn.fetch("SELECT * FROM charger_faults ORDER BY connector_id")
    assert [(f["connector_id"], f["fault_codes"]) for f in faults] == [("", [1, 2]), (C1, [7])]
    orders = await conn.fetch("SELECT * FROM charging_session_events ORDER BY start_charge_seq")
    assert [(o["start_charge_seq"], o["event"], o["source"]) for o in orders] == [
        (seq(1), "progress", "frame"),
        (seq(2), "progress", "tcec"),
    ]
    assert orders[0]["start_time"] == (t0 + timedelta(seconds=30)).replace(minute=0, second=0)
    assert orders[0]["energy_kwh"] == pytest.approx(12.345) and orders[0]["total_money"] == 10.5
    c = await conn.fetchrow("SELECT * FROM charger_connectors WHERE connector_id = $1", C2)
    assert (c["station_id"], c["equipment_id"], c["connector_type"], c["power_kw"]) == (
        "3101150001", "3101150001000001", 4, 125.0,
    )  # fmt: skip
    latest = {
        (r["entity_kind"], r["entity_id"]): r
        for r in await conn.fetch("SELECT * FROM latest_state")
    }
    assert set(latest) == {
        ("vehicle", vin(0)),
        ("vehicle", vin(1)),
        ("charger", f"MA01H3BQ2:{C1}"),
        ("charger", f"MA01H3BQ2:{C2}"),
        ("battery", PACK),
        ("battery", PACK_B),
    }
    one = latest[("charger", f"MA01H3BQ2:{C1}")]
    assert (one["ts"], one["operator_id"], one["connector_status"], one["connected_vin"]) == (
        t0 + timedelta(seconds=30), "MA01H3BQ2", 3, "LSVAU2180N2183294",
    )  # fmt: skip
    assert (one["soc_pct"], one["max_temp_c"]) == (55, 35)
    assert one["total_voltage_v"] == pytest.approx(400.0)
    assert one["energy_kwh"] == pytest.approx(12.345) and one["power_kw"] == pytest.approx(50.2)
    # the status push (t0+40 s) and the charge push (t0+50 s) merge: the newest time, the last
    # non-null of each column, the SOC rounded to whole percent
    two = latest[("charger", f"MA01H3BQ2:{C2}")]
    assert (two["ts"], two["connector_status"], two["soc_pct"], two["power_kw"]) == (
        t0 + timedelta(seconds=50), 3, 56, None,
    )  # fmt: skip
    pack = latest[("battery", PACK)]
    assert (pack["ts"], pack["edition"], pack["soh_pct"], pack["cycle_count"]) == (
        t0 + timedelta(seconds=60), 2025, 97, 420,
    )  # fmt: skip
    assert (pack["lifecycle_stage"], pack["place_id"], pack["max_alarm_level"]) == (
        2, "SWAP-SH-001", 2,
    )  # fmt: skip
    assert (pack["max_temp_c"], pack["min_temp_c"], pack["general_flags"]) == (31, -5, 5)
    assert pack["max_cell_voltage_v"] == pytest.approx(3.305)
    assert pack["min_cell_voltage_v"] == pytest.approx(3.298)
    assert pack["insulation_kohm"] == 5000 and pack["total_current_a"] == pytest.approx(-12.5)


async def test_a_batch_of_three_kinds_lands_in_every_table(writer_factory: WriterFactory) -> None:
    w = await writer_factory()
    b = mixed()
    result = await b.write(w)
    assert not result.rejected and not result.fenced and result.frames == len(b.frames)
    assert result.committed == {VEH: 2, CHG: 2, TCEC: 2, BAT: 3}
    assert result.rows == EXPECTED_ROWS
    assert result.latest == 6 and result.conflict_fallbacks == 0
    async with w.pool.acquire() as conn:
        await check_mixed_rows(conn)


async def test_a_replayed_mixed_batch_is_fenced_and_stored_once(
    writer_factory: WriterFactory,
) -> None:
    w = await writer_factory()
    b = mixed()
    await b.write(w)
    again = await b.write(w)
    assert again.fenced == {VEH: 2, CHG: 2, TCEC: 2, BAT: 3}
    assert again.frames == 0 and again.rows == {} and again.latest == 0
    async with w.pool.acquire() as conn:
        await check_mixed_rows(conn)


async def test_reissued_charger_and_pack_frames_skip_what_is_stored(
    writer_factory: WriterFactory,
) -> None:
    w = await writer_factory()
    first = Batch()
    at = T0 + timedelta(minutes=5)
    first.add(CHG, charger_realtime(at, C1))
    first.add(BAT, pack_realtime(at))
    await first.write(w)
    reissue = Batch()
    reissue.add(CHG, charger_realtime(at, C1, command=0x03))  # the same data again
    reissue.add(CHG, charger_realtime(at - timedelta(minutes=1), C1, command=0x03))  # new
    reissue.add(BAT, pack_realtime(at, command=0x03))
    result = await reissue.write(w, start={CHG: 1, BAT: 1})
    assert result.committed == {CHG: 3, BAT: 2} and not result.rejected
    assert result.conflict_fallbacks == 0  # the reissues took the conflict-skipping path
    assert result.rows["connector_status_events"] == 1 and result.rows["charger_telemetry"] == 1
    assert result.rows.get("pack_telemetry", 0) == 0
    assert result.duplicates_skipped == 3  # the charger's status + output, the pack's row
    async with w.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM charger_telemetry") == 2
        assert await conn.fetchval("SELECT count(*) FROM pack_telemetry") == 1
        commands = await conn.fetch("SELECT command FROM pack_telemetry")
        assert [r["command"] for r in commands] == [0x02]  # the stored row is not replaced


async def test_latest_state_of_connectors_and_packs_only_moves_forward(
    writer_factory: WriterFactory,
) -> None:
    w = await writer_factory()
    t1, t2, t3 = (T0 + timedelta(minutes=m) for m in (1, 2, 3))
    first = Batch()
    first.add(CHG, charger_realtime(t2, C1, status=3, output=(400.0, 100.0, 40.0, 5.0, 30)))
    first.add(BAT, pack_realtime(t2, soc=70, stage=2, site="SWAP-SH-001"))
    await first.write(w)
    # An older frame with other values, then in one batch: an older status (t1) beside a newer
    # output without a status (t3) - the old status must not win over the stored one (t2).
    late = Batch()
    late.add(CHG, charger_realtime(t1, C1, status=1, output=None, vehicle=None))
    late.add(CHG, charger_realtime(t3, C1, status=None, output=(410.0, 90.0, 36.9, 6.0, None)))
    late.add(BAT, pack_realtime(t1, soc=99, stage=3, site="WH-001"))
    late.add(BAT, pack_realtime(t3, soc=None, soh=None, cycles=None, stage=None, site=None))
    result = await late.write(w, start={CHG: 1, BAT: 1})
    assert result.latest == 2
    async with w.pool.acquire() as conn:
        c = await conn.fetchrow("SELECT * FROM latest_state WHERE entity_kind = 'charger'")
        p = await conn.fetchrow("SELECT * FROM latest_state WHERE entity_kind = 'battery'")
    assert (c["ts"], c["connector_status"], c["max_temp_c"]) == (t3, 3, 30)  # kept from t2
    assert c["total_voltage_v"] == pytest.approx(410.0) and c["energy_kwh"] == pytest.approx(6.0)
    assert (p["ts"], p["soc_pct"], p["lifecycle_stage"], p["place_id"]) == (
        t3, 70, 2, "SWAP-SH-001",
    )  # fmt: skip
    # a status and an output of one frame are one latest row (counted once)
    now = Batch()
    now.add(CHG, charger_realtime(t3 + timedelta(minutes=1), C1, status=255))
    assert (await now.write(w, start={CHG: 3})).latest == 1


async def test_the_archive_keeps_charger_and_pack_frames_by_their_ids(
    writer_factory: WriterFactory,
) -> None:
    w = await writer_factory(raw_frames=True)
    b = mixed()
    await b.write(w)
    async with w.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT vin, entity_kind, command, edition, topic, kafka_offset, frame "
            "FROM raw_frames WHERE entity_kind <> 'vehicle' ORDER BY topic, kafka_offset"
        )
    got = [(r["vin"], r["entity_kind"], r["command"], r["edition"], r["topic"]) for r in rows]
    assert got == [
        (PACK, "battery", 0x01, 2025, BAT[0]),
        (PACK, "battery", 0x02, 2025, BAT[0]),
        (PACK_B, "battery", 0x02, 2025, BAT[0]),
        ("MA01H3BQ2P0000001", "charger", 0x01, 2016, CHG[0]),
        ("MA01H3BQ2P0000001", "charger", 0x02, 2016, CHG[0]),
    ]  # T/CEC pushes are JSON, not frames: not archived
    assert [r["frame"] for r in rows] == [b.raw[i] for i in (6, 7, 8, 2, 3)]


async def test_an_old_pack_frame_and_push_get_their_partitions(
    writer_factory: WriterFactory,
) -> None:
    w = await writer_factory(partition_interval=timedelta(days=1))
    # within the retention, far before the pre-made partitions; noon UTC: one day slot
    old = (T0 - timedelta(days=400)).astimezone(UTC).replace(hour=12, minute=0, second=0)
    b = Batch()
    b.add(BAT, pack_realtime(old.astimezone(CHINA_TZ)))
    b.add(TCEC, tcec_status(old.astimezone(CHINA_TZ) + timedelta(minutes=5), C1, 4))
    result = await b.write(w)
    assert not result.rejected and result.frames == 2
    assert result.partitions_created == len(TIMESERIES_TABLES)
    async with w.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM pack_telemetry WHERE ts = $1", old) == 1
        assert await conn.fetchval("SELECT count(*) FROM connector_status_events") == 1


async def test_a_connector_reporting_only_its_status_now_is_online(
    writer_factory: WriterFactory, migrated_database: str
) -> None:
    # Idle connectors send status rows only, which carry no receive time: the receive time of
    # an output two hours old must not stay beside the new status, or "online" (last seen =
    # received_at, else ts) would call a connector that just reported silent for two hours.
    w = await writer_factory()
    charging = Batch()
    charging.add(CHG, charger_realtime(T0, C1, status=3))
    await charging.write(w)
    now = datetime.now(CHINA_TZ).replace(microsecond=0)
    idle = Batch()
    idle.add(CHG, charger_realtime(now, C1, status=1, output=None, vehicle=None))
    idle.add(TCEC, tcec_status(now, C2, 1))
    await idle.write(w, start={CHG: 1})
    stmt = queries_online.offline(DEFAULT_SCHEMA, "charger", timedelta(minutes=10))
    async with w.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT ts, received_at FROM latest_state WHERE entity_id = $1", f"{OPERATOR}:{C1}"
        )
    with psycopg.connect(migrated_database) as pg:  # the driver the CLI runs queries with
        silent = pg.execute(stmt.sql, stmt.params).fetchall()
    assert row["ts"] == now and row["received_at"] in (None, now)
    assert silent == []


async def test_alert_replay_reads_back_connectors_and_packs(
    writer_factory: WriterFactory, migrated_database: str
) -> None:
    # On assignment the rule engines of chargers and packs re-warm from what is stored
    # (alerts.replay_kinds): each connector's telemetry and status of one time joined back into
    # one object, each pack's frames with their cells and probes as the decoder gave them.
    w = await writer_factory()
    await mixed().write(w)
    conn = await connect(PoolParams(dsn=migrated_database, schema=DEFAULT_SCHEMA))
    try:
        await replay.stamp(conn, "charger", "nev.charger.raw", {f"MA01H3BQ2:{C1}": 3})
        await replay.stamp(conn, "battery", "nev.battery.raw", {PACK: 3, PACK_B: 4})
        window = 3 * 3600.0  # the batch's frames are two hours old
        chargers = await recent_objects(conn, "charger", "nev.charger.raw", [3], window)
        packs = await recent_objects(conn, "battery", "nev.battery.raw", [3, 4], window)
        nothing = await recent_objects(conn, "charger", "nev.charger.tcec", [3], window)
    finally:
        await conn.close()
    (obj,) = chargers[3]  # C1's one real-time frame: its status and output rows, joined
    assert (obj.operator_id, obj.ts_ms) == ("MA01H3BQ2", ms(T0 + timedelta(seconds=30)))
    assert [t.connector_id for t in obj.telemetry] == [C1]
    assert obj.telemetry[0].power_kw == pytest.approx(50.2)
    assert [s.connector_id for s in obj.statuses] == [C1]
    assert [p.pack_code for p in packs[3]] == [PACK] and [p.pack_code for p in packs[4]] == [PACK_B]
    t = packs[3][0].telemetry
    assert t is not None and (t.cell_min_mv, t.cell_max_mv, t.probe_max_c) == (3298, 3305, 31)
    # the min and max of the valid cells and probes, not the cells: no rule reads one cell
    assert (t.cell_count, t.probe_count) == (4, 4)
    assert t.cell_voltages_raw == b"" and t.probe_temps_raw == b""
    assert nothing == {}  # stamped on nev.charger.raw: nothing of it is the T/CEC topic's


def ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)
