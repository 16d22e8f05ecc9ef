"""A charger frame that repeats blocks of one connector, through the real decoders and the batch
writer on the real PostgreSQL: every fault code is stored (one row per connector and one for
the pile, codes in block order, a code sent twice once), and the status that
connector_status_events keeps is the one latest_state shows (the last block's), with nothing
skipped as a duplicate."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from contract.charger import ChargerRows
from contract.clock import CHINA_TZ
from ingest.decoders.charger import (
    ChargeOrder,
    ChargerFrame,
    ConnectorStatus,
    Faults,
    Output,
    decode_charger_frame,
    decode_charger_rows,
    decode_charger_rows_batch,
    encode_charger_frame,
    rows_of_charger_frame,
)
from ingest.decoders.native import nev_native
from storage import (
    OffsetRange,
    StorageWriter,
)
from tests.integration.kinds_frames import CHARGER, connector, seq

pytestmark = pytest.mark.integration

CHG = ("nev.charger.raw", 0)
T0 = datetime.now(CHINA_TZ).replace(microsecond=0) - timedelta(hours=3)
C = connector(7)
T1 = T0 + timedelta(seconds=1)


def repeating_frame() -> bytes:
    start = T0.replace(minute=0, second=0)
    return encode_charger_frame(
        ChargerFrame(
            0x02,
            CHARGER,
            time=T0,
            blocks=(
                ConnectorStatus(C, 3, 50, 10),
                Output(C, 400.0, 100.0, 40.0, 1.0, 30),
                Faults(C, (1, 2)),
                Faults(None, (9,)),
                ChargeOrder(C, seq(1), 2, start, 1.0, 0.5, 1.5),
                ConnectorStatus(C, 255, 50, 10),
                Output(C, 401.0, 0.0, 0.0, 2.0, 31),
                Faults(C, (3, 4)),
                Faults(None, (10,)),
                ChargeOrder(C, seq(1), 3, start, 2.0, 1.0, 3.0),
            ),
        )
    )


def summary(rows: ChargerRows) -> tuple[Any, ...]:
    return (
        [(s.connector_id, s.status) for s in rows.statuses],
        [(f.connector_id, f.fault_codes) for f in rows.faults],
        [(t.connector_id, t.voltage_v, t.energy_kwh) for t in rows.telemetry],
        [(r.start_charge_seq, r.state, r.total_money, r.energy_kwh) for r in rows.sessions],
    )


def test_the_native_and_structured_paths_merge_repeats_alike() -> None:
    raw = repeating_frame()
    merged = (
        [(C, 255)],
        [(C, [1, 2, 3, 4]), ("", [9, 10])],
        [(C, 401.0, 2.0)],
        [(seq(1), 3, 3.0, 2.0)],
    )
    structured = rows_of_charger_frame(decode_charger_frame(raw))
    (batch,) = decode_charger_rows_batch([raw], [0])
    assert isinstance(batch, ChargerRows)
    assert summary(structured) == summary(decode_charger_rows(raw)) == summary(batch) == merged


async def test_repeated_blocks_are_stored_whole_and_agree_with_latest_state(
    loader_writer: StorageWriter,
) -> None:
    (rows,) = decode_charger_rows_batch([repeating_frame()], [0])
    assert isinstance(rows, ChargerRows)
    ranges = {CHG: OffsetRange(None, 1)}
    result = await loader_writer.write_batch([rows], ranges, partitions=[CHG], kafka_offsets=[0])
    assert result.duplicates_skipped == 0 and result.conflict_fallbacks == 0
    async with loader_writer.pool.acquire() as conn:
        faults = await conn.fetch(
            "SELECT connector_id, fault_codes FROM charger_faults WHERE ts = $1 "
            "ORDER BY connector_id",
            T0,
        )
        statuses = await conn.fetch(
            "SELECT status FROM connector_status_events WHERE connector_id = $1 AND ts = $2",
            C,
            T0,
        )
        latest = await conn.fetchval(
            "SELECT connector_status FROM latest_state WHERE entity_kind = 'charger'"
        )
        orders = await conn.fetch(
            "SELECT state, total_money FROM charging_session_events WHERE start_charge_seq = $1",
            seq(1),
        )
    assert [(r["connector_id"], r["fault_codes"]) for r in faults] == [
        ("", [9, 10]),
        (C, [1, 2, 3, 4]),
    ]
    assert [r["status"] for r in statuses] == [255] and latest == 255
    assert [(r["state"], r["total_money"]) for r in orders] == [(3, pytest.approx(3.0))]


def fault_frame(*blocks: tuple[int, ...]) -> bytes:
    """A real-time frame of connector C's fault blocks ``blocks`` at T1."""
    return encode_charger_frame(
        ChargerFrame(0x02, CHARGER, time=T1, blocks=tuple(Faults(C, b) for b in blocks))
    )


async def stored_faults(w: StorageWriter) -> list[Any]:
    async with w.pool.acquire() as conn:
        rows = await conn.fetch("SELECT fault_codes FROM charger_faults WHERE ts = $1", T1)
    return [r["fault_codes"] for r in rows]


async def test_a_code_repeated_in_one_frame_is_stored_once(
    loader_writer: StorageWriter,
) -> None:
    # Two fault blocks of one connector both holding 9 (and 10 in the second): a row is the
    # set of the connector's faults at that second, as two frames of that second give [9, 10],
    # so one frame gives it too, by either decoder path (it gave [9, 9, 10]).
    raw = fault_frame((9,), (9, 10))
    structured = rows_of_charger_frame(decode_charger_frame(raw))
    (batch,) = decode_charger_rows_batch([raw], [0])
    assert isinstance(batch, ChargerRows)
    for rows in (structured, decode_charger_rows(raw), batch):
        assert [(f.connector_id, f.fault_codes) for f in rows.faults] == [(C, [9, 10])]
    ranges = {CHG: OffsetRange(None, 1)}
    await loader_writer.write_batch([batch], ranges, partitions=[CHG], kafka_offsets=[0])
    assert await stored_faults(loader_writer) == [[9, 10]]


async def test_the_writer_stores_a_rows_repeated_code_once(
    loader_writer: StorageWriter,
) -> None:
    # The native walk's own rows (before fast.py merges them) keep a block's codes as sent:
    # one block holding 9 twice is [9, 9] there. The writer joins a batch's fault rows of one
    # key into one set, so it stores such a row once too, whoever built it (it stored [9, 9]).
    native = nev_native.decode_charger(fault_frame((9, 9, 10)), None)
    assert isinstance(native, ChargerRows)
    assert [f.fault_codes for f in native.faults] == [[9, 9, 10]]
    ranges = {CHG: OffsetRange(None, 1)}
    await loader_writer.write_batch([native], ranges, partitions=[CHG], kafka_offsets=[0])
    assert await stored_faults(loader_writer) == [[9, 10]]
