"""Several frames of one pile in one second (a real-time frame per connector, a status change
beside the periodic report), through the real decoder and the batch writer on the real
PostgreSQL, with both loaders and with latest_state merged with every batch or pending:

* in one batch their rows of one key are merged as one frame's repeated blocks are (statuses
  and orders: the last in Kafka order; fault codes joined in order), so every code is stored,
  nothing is skipped as a duplicate, and latest_state shows the status its table keeps;
* a code an earlier frame of the key carried is not joined again: a resent frame (two identical
  messages at adjacent offsets) stores what one frame stores, in one batch or in two;
* in a later batch, a status, telemetry or order row of a key already stored is a duplicate
  (the first stored stays, as for a redelivered batch), and latest_state keeps that first
  report too; a fault row's codes the stored row lacks join it (none lost), and one whose
  codes are all stored changes nothing."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any, TypeAlias

import pytest

from contract.charger import ChargerRows
from contract.clock import CHINA_TZ
from ingest.decoders.charger import (
    ChargeOrder,
    ChargerFrame,
    ConnectorStatus,
    Faults,
    Output,
    decode_charger_rows_batch,
    encode_charger_frame,
)
from storage import (
    LoaderKind,
    OffsetRange,
    StorageWriter,
)
from storage.batch import WriteResult
from tests.integration.conftest import OpenWriter
from tests.integration.kinds_frames import CHARGER, OPERATOR, connector, seq

pytestmark = pytest.mark.integration

CHG = ("nev.charger.raw", 0)
T0 = datetime.now(CHINA_TZ).replace(microsecond=0) - timedelta(hours=2)
C = connector(9)

Writer: TypeAlias = Callable[[int], Coroutine[Any, Any, StorageWriter]]


@pytest.fixture(params=[LoaderKind.COPY, LoaderKind.UNNEST], ids=["copy", "unnest"])
def writer(open_writers: OpenWriter, request: pytest.FixtureRequest) -> Writer:
    def make(latest_interval_ms: int) -> Coroutine[Any, Any, StorageWriter]:
        return open_writers(loader=request.param, latest_interval_ms=latest_interval_ms)

    return make


def frame(
    ts: datetime,
    status: int,
    pile_fault: int | tuple[int, ...],
    order_state: int,
    command: int = 0x02,
) -> ChargerRows:
    start = T0.replace(minute=0, second=0)
    raw = encode_charger_frame(
        ChargerFrame(
            command,
            CHARGER,
            time=ts,
            blocks=(
                ConnectorStatus(C, status, 50, 10),
                Output(C, 400.0 + order_state, 10.0, 4.0, 1.0, 30),
                Faults(None, pile_fault if isinstance(pile_fault, tuple) else (pile_fault,)),
                ChargeOrder(C, seq(9), order_state, start, 1.0, 0.5, float(order_state)),
            ),
        )
    )
    (rows,) = decode_charger_rows_batch([raw], [0])
    assert isinstance(rows, ChargerRows)
    return rows


async def write(
    w: StorageWriter, frames: list[ChargerRows], first: int, start: int | None
) -> WriteResult:
    offsets = list(range(first, first + len(frames)))
    ranges = {CHG: OffsetRange(start, first + len(frames))}
    return await w.write_batch(
        frames, ranges, partitions=[CHG] * len(frames), kafka_offsets=offsets
    )


async def stored(w: StorageWriter) -> tuple[Any, ...]:
    async with w.pool.acquire() as conn:
        faults = await conn.fetch(
            "SELECT fault_codes FROM charger_faults WHERE connector_id = '' AND ts = $1", T0
        )
        statuses = await conn.fetch(
            "SELECT status FROM connector_status_events WHERE connector_id = $1 AND ts = $2",
            C,
            T0,
        )
        orders = await conn.fetch(
            "SELECT state FROM charging_session_events WHERE start_charge_seq = $1 AND ts = $2",
            seq(9),
            T0,
        )
        volts = await conn.fetch(
            "SELECT voltage_v FROM charger_telemetry WHERE connector_id = $1 AND ts = $2",
            C,
            T0,
        )
        latest = await conn.fetchrow(
            "SELECT ts, connector_status FROM latest_state "
            "WHERE entity_kind = 'charger' AND entity_id = $1",
            f"{OPERATOR}:{C}",
        )
    return (
        [r["fault_codes"] for r in faults],
        [r["status"] for r in statuses],
        [r["state"] for r in orders],
        [r["voltage_v"] for r in volts],
        (latest["ts"], latest["connector_status"]),
    )


@pytest.mark.parametrize("interval_ms", [0, 600_000], ids=["merged", "pending"])
async def test_frames_of_one_second_in_one_batch_are_stored_whole(
    writer: Writer, interval_ms: int
) -> None:
    w = await writer(interval_ms)
    a, b = frame(T0, 3, 9, 2), frame(T0, 255, 10, 3)
    result = await write(w, [a, b], 0, None)
    await w.flush_latest([CHG])
    assert (result.duplicates_skipped, result.conflict_fallbacks) == (0, 0)
    assert await stored(w) == ([[9, 10]], [255], [3], [403.0], (T0, 255))


@pytest.mark.parametrize("interval_ms", [0, 600_000], ids=["merged", "pending"])
async def test_a_later_batchs_report_of_a_stored_second_keeps_the_first_and_its_faults(
    writer: Writer, interval_ms: int
) -> None:
    # The partition's first batch (merged at once in either mode), then the second's two
    # frames in two batches: pending, both wait for the flush, where latest_state took the
    # later one's status 255 while connector_status_events kept 3. The later frame's pile
    # fault 10 was skipped with its row (stored [9]): it joins the stored row.
    w = await writer(interval_ms)
    await write(w, [frame(T0 - timedelta(seconds=10), 1, 7, 1)], 0, None)
    await write(w, [frame(T0, 3, 9, 2)], 1, 1)
    later = await write(w, [frame(T0, 255, (10, 9, 11), 3)], 2, 2)
    await w.flush_latest([CHG])
    assert later.duplicates_skipped == 3  # its status, telemetry and order rows
    assert later.rows["charger_faults"] == 1  # merged into the stored row
    assert await stored(w) == ([[9, 10, 11]], [3], [2], [402.0], (T0, 3))
    # A third report of that second with codes all stored: nothing changes, a duplicate.
    again = await write(w, [frame(T0, 255, (11, 9), 3)], 3, 3)
    assert again.duplicates_skipped == 4
    assert await stored(w) == ([[9, 10, 11]], [3], [2], [402.0], (T0, 3))


async def test_a_reissued_fault_of_a_stored_second_joins_its_row(writer: Writer) -> None:
    # A reissue (0x03) takes the conflict path from the start, not after a failed COPY.
    w = await writer(0)
    await write(w, [frame(T0, 3, 9, 2)], 0, None)
    result = await write(w, [frame(T0, 3, (9, 12), 2, command=0x03)], 1, 1)
    assert result.conflict_fallbacks == 0
    assert await stored(w) == ([[9, 12]], [3], [2], [402.0], (T0, 3))


@pytest.mark.parametrize("batches", [1, 2], ids=["one-batch", "two-batches"])
async def test_a_resent_frame_adds_nothing_wherever_the_batch_ends(
    writer: Writer, batches: int
) -> None:
    # A pile resending a frame for want of an ack, or the T/CEC gateway taking an operator's
    # retry after a produce timeout: two identical messages at adjacent offsets. In one batch
    # the pile's fault row was stored as [9, 9] (a duplicate counted), in two as [9].
    w = await writer(0)
    sent, resent = frame(T0, 3, 9, 2), frame(T0, 3, 9, 2)
    if batches == 1:
        await write(w, [sent, resent], 0, None)
    else:
        await write(w, [sent], 0, None)
        await write(w, [resent], 1, 1)
    assert await stored(w) == ([[9]], [3], [2], [402.0], (T0, 3))


async def test_frames_of_one_second_join_each_fault_code_once(writer: Writer) -> None:
    # Fault 9, then 9 and 10 still active, then 10 and 9 again: the pile's faults in that
    # second are 9 and 10 (a set per connector and second), in the order first reported.
    w = await writer(0)
    frames = [frame(T0, 3, 9, 2), frame(T0, 3, (9, 10), 2), frame(T0, 255, (10, 9), 3)]
    result = await write(w, frames, 0, None)
    assert (result.duplicates_skipped, result.conflict_fallbacks) == (0, 0)
    assert await stored(w) == ([[9, 10]], [255], [3], [403.0], (T0, 255))
