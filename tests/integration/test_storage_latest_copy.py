"""latest_state of connectors and packs through the COPY form (staging table + UPDATE ... FROM +
insert of the new entities) on the real PostgreSQL: the rules of storage/latest_kinds.py one
by one, and the same end state as the unnest form on the same batches."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contract.battery import PackTelemetryRow
from contract.charger import ChargerTelemetryRow, ConnectorStatusRow
from storage import PoolParams
from storage.connect import connect
from storage.latest_kinds import BATTERY, CHARGER, KindLatest, battery_values, charger_values
from storage.latest_kinds import upsert as upsert_kind
from storage.params import DEFAULT_SCHEMA
from tests.integration.recording import Recording

pytestmark = pytest.mark.integration

OP = "MA01H3BQ2"
T0 = datetime(2026, 1, 5, 8, tzinfo=UTC)
S = timedelta(seconds=1)
RECEIVED = timedelta(milliseconds=300)


def status(cid: str, ts: datetime, value: int) -> ConnectorStatusRow:
    return ConnectorStatusRow(OP, cid, ts, value, None, None, "frame")


def output(cid: str, ts: datetime, volts: float | None, vin: str | None = None) -> Any:
    return ChargerTelemetryRow(
        OP, cid, ts, ts + RECEIVED, "MA01H3BQ2P0000001", volts, 100.0 if volts else None,
        None, 1.5, 30, vin, 55.4, None, None, "frame",
    )  # fmt: skip


def pack(code: str, ts: datetime, soc: int | None, site: str | None = None) -> PackTelemetryRow:
    return PackTelemetryRow(
        code, ts, ts + RECEIVED, 2016, 0x02, 2, 1, soc, 92, 480, 355.2, -80.5, 5000, site, 3,
        96, b"", 3301, 3305, 32, b"", -5, 31, 1, 8, 0,
    )  # fmt: skip


@pytest.fixture
def conn(migrated_conn: Any) -> Any:
    return migrated_conn


async def write(
    conn: Any,
    *,
    copy: bool = True,
    statuses: Sequence[ConnectorStatusRow] = (),
    telemetry: Sequence[ChargerTelemetryRow] = (),
    packs: Sequence[PackTelemetryRow] = (),
) -> int:
    """One batch, both kinds, in one transaction (as storage/isolate.py sends them)."""
    n = 0
    async with conn.transaction():
        if statuses or telemetry:
            items = charger_values(statuses, telemetry)
            n += await upsert_kind(conn, DEFAULT_SCHEMA, CHARGER, items, copy=copy)
        if packs:
            n += await upsert_kind(conn, DEFAULT_SCHEMA, BATTERY, battery_values(packs), copy=copy)
    return n


async def state(conn: Any, spec: KindLatest) -> dict[str, dict[str, Any]]:
    cols = ", ".join(c for c, _ in spec.columns)
    rows = await conn.fetch(
        f"SELECT entity_id, xmin::text AS version, {cols} FROM {DEFAULT_SCHEMA}.latest_state "
        "WHERE entity_kind = $1",
        spec.kind,
    )
    return {r["entity_id"]: dict(r) for r in rows}


async def test_ts_only_moves_forward_and_columns_keep_their_last_non_null_value(
    conn: Any,
) -> None:
    await write(
        conn,
        statuses=[status("01", T0 + 2 * S, 3)],
        telemetry=[output("01", T0 + 2 * S, 400.0, "LSVAU2180N2183294")],
        packs=[pack("P1", T0 + 2 * S, 70, "SWAP-SH-001")],
    )
    # older rows with other values: nothing moves, not even a column the stored row has
    assert (
        await write(
            conn,
            statuses=[status("01", T0, 1)],
            telemetry=[output("01", T0, 380.0, "LOLDVIN0000000000")],
            packs=[pack("P1", T0, 99, "WH-001")],
        )
        == 2
    )
    # newer rows without some values: ts moves, those columns keep the stored values
    await write(
        conn,
        telemetry=[output("01", T0 + 3 * S, None, None)],
        packs=[pack("P1", T0 + 3 * S, None, None)],
    )
    c = (await state(conn, CHARGER))[f"{OP}:01"]
    assert (c["ts"], c["connector_status"], c["connected_vin"]) == (
        T0 + 3 * S, 3, "LSVAU2180N2183294",
    )  # fmt: skip
    assert c["total_voltage_v"] == pytest.approx(400.0) and c["total_current_a"] is not None
    assert c["received_at"] == T0 + 3 * S + RECEIVED  # goes with ts
    p = (await state(conn, BATTERY))["P1"]
    assert (p["ts"], p["soc_pct"], p["place_id"]) == (T0 + 3 * S, 70, "SWAP-SH-001")
    # a status alone moves ts; its missing receive time is not the older report's
    await write(conn, statuses=[status("01", T0 + 4 * S, 255)])
    c = (await state(conn, CHARGER))[f"{OP}:01"]
    assert (c["ts"], c["connector_status"], c["received_at"]) == (T0 + 4 * S, 255, None)
    assert c["total_voltage_v"] == pytest.approx(400.0)


async def test_a_mixed_batch_merges_in_frame_time_order_without_undoing_a_newer_state(
    conn: Any,
) -> None:
    await write(
        conn, statuses=[status("01", T0 + 5 * S, 3)], packs=[pack("P1", T0 + 5 * S, 70, "A")]
    )
    # rows older than the stored state (t0+1 s) beside newer ones (t0+6, 7 s), out of order:
    # the old status and the old site must not win over the stored ones
    await write(
        conn,
        statuses=[status("01", T0 + 7 * S, 2), status("01", T0 + S, 1)],
        telemetry=[
            output("01", T0 + 7 * S, None),
            output("01", T0 + 6 * S, 410.0, "VIN6"),
            output("01", T0 + S, 300.0, "VIN1"),
        ],
        packs=[
            pack("P1", T0 + 7 * S, None),
            pack("P1", T0 + 6 * S, 60),
            pack("P1", T0 + S, 9, "B"),
        ],
    )
    c = (await state(conn, CHARGER))[f"{OP}:01"]
    assert (c["ts"], c["connector_status"], c["connected_vin"]) == (T0 + 7 * S, 2, "VIN6")
    assert c["total_voltage_v"] == pytest.approx(410.0)
    p = (await state(conn, BATTERY))["P1"]
    assert (p["ts"], p["soc_pct"], p["place_id"]) == (T0 + 7 * S, 60, "A")
    # a new entity with rows of several times in one batch: merged the same way
    await write(conn, packs=[pack("P2", T0 + 2 * S, None, "C"), pack("P2", T0 + S, 40, "D")])
    p2 = (await state(conn, BATTERY))["P2"]
    assert (p2["ts"], p2["soc_pct"], p2["place_id"]) == (T0 + 2 * S, 40, "C")


async def test_a_redelivered_batch_rewrites_no_row(conn: Any) -> None:
    batch: dict[str, Any] = {
        "statuses": [status("01", T0, 3), status("02", T0, 1)],
        "telemetry": [output("01", T0, 400.0, "VIN")],
        "packs": [pack("P1", T0, 70), pack("P2", T0 + S, 71)],
    }
    assert await write(conn, **batch) == 4
    before = {**await state(conn, CHARGER), **await state(conn, BATTERY)}
    assert await write(conn, **batch) == 4
    after = {**await state(conn, CHARGER), **await state(conn, BATTERY)}
    assert after == before  # xmin included: no row was updated, none inserted
    assert len(after) == 4


async def test_two_kinds_with_one_entity_id_stay_apart(conn: Any) -> None:
    same = f"{OP}:01"  # a pack code that happens to equal a connector's entity id
    await write(conn, statuses=[status("01", T0, 3)], packs=[pack(same, T0 + S, 70)])
    await write(conn, statuses=[status("01", T0 + 2 * S, 1)], packs=[pack(same, T0 + 9 * S, 20)])
    rows = await conn.fetch(
        f"SELECT * FROM {DEFAULT_SCHEMA}.latest_state WHERE entity_id = $1 ORDER BY entity_kind",
        same,
    )
    p, c = (dict(r) for r in rows)  # battery, charger
    assert (c["ts"], c["connector_status"], c["soc_pct"], c["edition"]) == (
        T0 + 2 * S, 1, None, None,
    )  # fmt: skip
    assert (p["ts"], p["soc_pct"], p["connector_status"], p["edition"]) == (
        T0 + 9 * S, 20, None, 2016,
    )  # fmt: skip


async def test_new_entities_are_inserted_only_when_the_update_missed_some(conn: Any) -> None:
    rec = Recording(conn)
    await write(rec, packs=[pack("P1", T0, 70)])
    assert rec.sent[-2:] == ["UPDATE", "INSERT"]  # P1 is new
    rec.sent.clear()
    await write(rec, packs=[pack("P1", T0 + S, 71)])
    assert rec.sent[-1] == "UPDATE"  # every staged entity was updated: no INSERT sent
    rec.sent.clear()
    await write(rec, packs=[pack("P0", T0 + 2 * S, 50), pack("P1", T0 + 2 * S, 72)])
    assert rec.sent[-2:] == ["UPDATE", "INSERT"]
    got = await state(conn, BATTERY)
    assert {k: (v["ts"], v["soc_pct"]) for k, v in got.items()} == {
        "P0": (T0 + 2 * S, 50),
        "P1": (T0 + 2 * S, 72),
    }
    # an old row of a known entity makes the UPDATE miss it: the INSERT goes and adds nothing
    rec.sent.clear()
    await write(rec, packs=[pack("P1", T0, 1)])
    assert rec.sent[-2:] == ["UPDATE", "INSERT"]
    assert await state(conn, BATTERY) == got


async def test_a_new_entity_inserted_meanwhile_by_another_writer_is_skipped(
    conn: Any, migrated_database: str
) -> None:
    other = await connect(PoolParams(dsn=migrated_database))

    class Interleaved(Recording):
        async def execute(self, sql: str, *args: Any) -> str:
            if sql.lstrip().startswith("INSERT"):
                # between this writer's UPDATE (P9 unknown then) and its INSERT of new entities
                await write(other, packs=[pack("P9", T0 + 5 * S, 11)])
            return await super().execute(sql, *args)

    try:
        rec = Interleaved(conn)
        assert await write(rec, packs=[pack("P9", T0 + 9 * S, 22), pack("P8", T0, 33)]) == 2
    finally:
        await other.close()
    got = await state(conn, BATTERY)
    # no error, P8 inserted; P9 keeps the other writer's row until its next report
    assert {k: (v["ts"], v["soc_pct"]) for k, v in got.items()} == {
        "P8": (T0, 33),
        "P9": (T0 + 5 * S, 11),
    }


def _random_batches(seed: int, count: int) -> list[dict[str, list[Any]]]:
    """Batches of both kinds with nulls, several times per entity, rows older than the stored
    state, redeliveries and new entities."""
    rnd = random.Random(seed)
    connectors, codes = [f"{i:02d}" for i in range(1, 7)], [f"P{i}" for i in range(5)]
    batches: list[dict[str, list[Any]]] = []
    for _ in range(count):
        if batches and rnd.random() < 0.15:
            batches.append(rnd.choice(batches))  # redelivered
            continue
        b: dict[str, list[Any]] = {"statuses": [], "telemetry": [], "packs": []}
        for _ in range(rnd.randint(1, 12)):
            ts = T0 + rnd.randint(0, 25) * S
            kind = rnd.random()
            if kind < 0.3:
                b["statuses"].append(status(rnd.choice(connectors), ts, rnd.choice([0, 1, 3, 255])))
            elif kind < 0.6:
                volts = rnd.choice([None, 380.0 + rnd.randint(0, 40)])
                vin = rnd.choice([None, f"VIN{rnd.randint(0, 9)}"])
                b["telemetry"].append(output(rnd.choice(connectors), ts, volts, vin))
            else:
                soc = rnd.choice([None, rnd.randint(0, 100)])
                site = rnd.choice([None, "A", "B"])
                b["packs"].append(pack(rnd.choice(codes), ts, soc, site))
        batches.append(b)
    return batches


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_the_copy_form_ends_where_the_unnest_form_ends(conn: Any, seed: int) -> None:
    batches = _random_batches(seed, 40)
    ends = []
    for copy in (False, True):
        await conn.execute(f"TRUNCATE {DEFAULT_SCHEMA}.latest_state")
        sent = [await write(conn, copy=copy, **b) for b in batches]
        end = {**await state(conn, CHARGER), **await state(conn, BATTERY)}
        for row in end.values():
            del row["version"]
        ends.append((sent, end))
    assert ends[0] == ends[1]
    assert len(ends[1][1]) >= 8  # the batches reached most entities of both kinds
