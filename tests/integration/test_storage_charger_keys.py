"""The charger tables' keys on the real PostgreSQL: what two reports of one second keep apart.

A pile fault (connector '' in charger_faults) is the pile's: two piles of one operator
reporting one in the same second are two rows, also when the batch is delivered again. Two
T/CEC status pushes of one connector in one second (same TimeStamp, the gateway's Seq apart)
are two status rows, and the later is the connector's state, in one batch or two; a Seq that
wraps inside one second is stored as numbered. Two charge status pushes with one EndTime are
kept the same way (EndTime + Seq µs). Two logins of one pile in one second are two
registrations (frame time + login_seq µs), the later numbered one the latest."""

from __future__ import annotations

from datetime import datetime, timedelta

import orjson
import pytest

from contract.charger import ChargerFaultRow, ChargerRows
from contract.clock import CHINA_TZ
from ingest.decoders.charger import (
    ChargerFrame,
    ChargerLogin,
    ConnectorEntry,
    Faults,
    decode_charger_rows,
    encode_charger_frame,
)
from ingest.pipeline import wire
from ingest.pipeline.adapters import decode_tcec_record
from storage import LoaderKind, StorageWriter
from storage.tables import CHARGER_FAULTS
from tests.integration.conftest import OpenWriter
from tests.integration.kinds_frames import OPERATOR, connector
from tests.integration.test_storage_kinds import CHG, TCEC, Batch
from tests.kinds_traffic import charge_status, station_status, tcec_headers

pytestmark = pytest.mark.integration

T0 = datetime.now(CHINA_TZ).replace(microsecond=0) - timedelta(hours=2)
PILE_1, PILE_2 = OPERATOR + "P0000001", OPERATOR + "P0000002"


@pytest.fixture
def writer(loader_writer: StorageWriter) -> StorageWriter:
    return loader_writer


def pile_fault(charger_id: str, ts: datetime, *codes: int) -> tuple[bytes, ChargerRows]:
    """A real-time frame of one pile with a fault block of the pile (no ConnectorID)."""
    raw = encode_charger_frame(
        ChargerFrame(0x02, charger_id, time=ts, blocks=(Faults(None, codes),))
    )
    return raw, decode_charger_rows(raw, ts)


async def test_pile_faults_of_two_piles_in_one_second_are_both_kept(
    writer: StorageWriter,
) -> None:
    b = Batch()
    b.add(CHG, pile_fault(PILE_1, T0, 101))
    b.add(CHG, pile_fault(PILE_2, T0, 202))
    first = await b.write(writer)
    assert first.rows["charger_faults"] == 2 and first.duplicates_skipped == 0
    # delivered again (a reissue of both): nothing new, nothing lost
    again = Batch()
    again.add(CHG, pile_fault(PILE_1, T0, 101))
    again.add(CHG, pile_fault(PILE_2, T0, 202))
    res = await again.write(writer, start={CHG: 2})
    assert res.rows.get("charger_faults", 0) == 0 and res.duplicates_skipped == 2
    async with writer.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT connector_id, charger_id, fault_codes FROM charger_faults ORDER BY charger_id"
        )
    assert [tuple(r) for r in rows] == [("", PILE_1, [101]), ("", PILE_2, [202])]


async def test_a_resent_fault_leaves_its_stored_row_unlocked(writer: StorageWriter) -> None:
    # A fault row whose codes are all stored changes nothing: the conflict path leaves it out
    # before the upsert, which would lock the stored row however false its WHERE (two such
    # resends in opposite key order deadlocked: 40P01) and on TimescaleDB decompress it.
    first = Batch()
    first.add(CHG, pile_fault(PILE_1, T0, 101))
    await first.write(writer)
    async with writer.pool.acquire() as a, writer.pool.acquire() as b:
        stored = ChargerFaultRow(*await a.fetchrow("SELECT * FROM charger_faults"))
        schema = await a.fetchval("SELECT current_schema()")
        async with a.transaction():
            n = await writer.loader.load(a, schema, CHARGER_FAULTS, [stored], skip_conflicts=True)
            assert n == 0
            # the resend's transaction is still open: the row is free for another writer
            held = "SELECT fault_codes FROM charger_faults WHERE charger_id = $1 FOR UPDATE NOWAIT"
            assert await b.fetchval(held, PILE_1) == [101]


def status_push(status: int, seq: str) -> tuple[bytes, ChargerRows]:
    """A notification_stationStatus of connector 1 as the pipeline decodes it from the topic,
    every push with the envelope TimeStamp T0 and Seq ``seq``."""
    ms = int(T0.timestamp() * 1000)
    value = station_status(connector(1), status)
    headers = [*tcec_headers("notification_stationStatus", ms), (wire.TCEC_SEQ, seq.encode())]
    return value, decode_tcec_record(value, ms + 200, headers)


async def _statuses(w: StorageWriter) -> tuple[list[int], list[int]]:
    async with w.pool.acquire() as conn:
        table = await conn.fetch("SELECT status FROM connector_status_events ORDER BY ts")
        latest = await conn.fetch("SELECT connector_status FROM latest_state")
    return [r[0] for r in table], [r[0] for r in latest]


async def test_two_status_pushes_of_one_second_in_two_batches(writer: StorageWriter) -> None:
    first = Batch()
    first.add(TCEC, status_push(2, "0001"))  # occupied
    await first.write(writer)
    second = Batch()
    second.add(TCEC, status_push(3, "0002"))  # then charging, the same second
    res = await second.write(writer, start={TCEC: 1})
    assert res.rows["connector_status_events"] == 1 and res.duplicates_skipped == 0
    assert await _statuses(writer) == ([2, 3], [3])
    # the second push delivered again: the same row, skipped
    again = Batch()
    again.add(TCEC, status_push(3, "0002"))
    res = await again.write(writer, start={TCEC: 2})
    assert res.rows.get("connector_status_events", 0) == 0 and res.duplicates_skipped == 1
    assert await _statuses(writer) == ([2, 3], [3])


async def test_two_status_pushes_of_one_second_in_one_batch(writer: StorageWriter) -> None:
    b = Batch()
    b.add(TCEC, status_push(2, "0001"))
    b.add(TCEC, status_push(3, "0002"))
    res = await b.write(writer)
    assert res.rows["connector_status_events"] == 2 and res.duplicates_skipped == 0
    assert await _statuses(writer) == ([2, 3], [3])


async def test_a_seq_that_wraps_within_one_second_is_stored_as_numbered(
    writer: StorageWriter,
) -> None:
    # The standard restarts Seq each second; a sender that counts on across seconds may wrap
    # inside one. Its order cannot be told from (TimeStamp, Seq), so the rows are at the
    # times the pushes were numbered with (docs/protocols/charger.md, "Seq's rule"): the push
    # sent second (0000) is first, and latest_state keeps the status of the higher Seq.
    b = Batch()
    b.add(TCEC, status_push(3, "9999"))  # charging
    b.add(TCEC, status_push(255, "0000"))  # then a fault, after the sender's wrap
    res = await b.write(writer)
    assert res.rows["connector_status_events"] == 2 and res.duplicates_skipped == 0
    assert await _statuses(writer) == ([255, 3], [3])


def charge_push(state: int, status: int, seq: str) -> tuple[bytes, ChargerRows]:
    """A notification_equip_charge_status of connector 1 sampled at T0 (EndTime, whole
    seconds), pushed with Seq ``seq``: ``state`` is StartChargeSeqStat, ``status`` the
    connector's."""
    ms = int(T0.timestamp() * 1000)
    doc = orjson.loads(charge_status(ms, connector(1), 1, ms - 600_000, 30.0, 80))
    doc.update(StartChargeSeqStat=state, ConnectorStatus=status)
    value = orjson.dumps(doc)
    headers = [
        *tcec_headers("notification_equip_charge_status", ms),
        (wire.TCEC_SEQ, seq.encode()),
    ]
    return value, decode_tcec_record(value, ms + 200, headers)


async def test_two_charge_status_pushes_with_one_end_time_are_both_kept(
    writer: StorageWriter,
) -> None:
    # Charging, then ended, sampled in the same second: EndTime + Seq µs keeps them apart, as
    # the status pushes' TimeStamp + Seq µs does, so the tables and latest_state agree.
    b = Batch()
    b.add(TCEC, charge_push(2, 3, "0001"))
    b.add(TCEC, charge_push(4, 2, "0002"))
    res = await b.write(writer)
    assert res.duplicates_skipped == 0
    assert res.rows["charging_session_events"] == 2 and res.rows["charger_telemetry"] == 2
    assert await _statuses(writer) == ([3, 2], [2])
    async with writer.pool.acquire() as conn:
        states = await conn.fetch("SELECT state FROM charging_session_events ORDER BY ts")
    assert [r[0] for r in states] == [2, 4]
    # the later push delivered again: the same rows, skipped
    again = Batch()
    again.add(TCEC, charge_push(4, 2, "0002"))
    res = await again.write(writer, start={TCEC: 2})
    assert sum(res.rows.values()) == 0 and res.duplicates_skipped == 3
    assert await _statuses(writer) == ([3, 2], [2])


def login(login_seq: int, power_kw: float) -> tuple[bytes, ChargerRows]:
    """A login of pile 1 at T0 registering one connector rated ``power_kw``."""
    entry = ConnectorEntry(connector(5), 4, 1000, 200, 250, power_kw, 2)
    body = ChargerLogin(login_seq, "3101150001", "3101150001000001", (entry,))
    raw = encode_charger_frame(ChargerFrame(0x01, PILE_1, time=T0, body=body))
    return raw, decode_charger_rows(raw)


def at_offset(first: int, *frames: tuple[bytes, ChargerRows]) -> Batch:
    """A batch of ``frames`` on the charger partition from Kafka offset ``first`` (their
    archive rows are keyed by it)."""
    b = Batch()
    for f in frames:
        b.add(CHG, f)
    b.offsets = [first + k for k in range(len(frames))]
    return b


@pytest.mark.parametrize("loader", [LoaderKind.COPY, LoaderKind.UNNEST], ids=["copy", "unnest"])
@pytest.mark.parametrize("batches", [1, 2], ids=["one-batch", "two-batches"])
async def test_two_logins_of_one_pile_in_one_second_are_both_kept(
    open_writers: OpenWriter, loader: LoaderKind, batches: int
) -> None:
    # A pile logging in again within the second (a reconnect, its connector's rating changed):
    # both logins had the key (operator, connector, frame time, source), the second was
    # skipped as a duplicate and the registration kept saying 60 kW.
    w = await open_writers(loader=loader, raw_frames=True)
    first, second = login(7, 60.0), login(8, 120.0)
    if batches == 1:
        res = await at_offset(0, first, second).write(w)
        assert res.rows["charger_connectors"] == 2 and res.duplicates_skipped == 0
    else:
        for k, frame in enumerate((first, second)):
            res = await at_offset(k, frame).write(w, start={CHG: k} if k else None)
            assert res.rows["charger_connectors"] == 1 and res.duplicates_skipped == 0
    # The second login sent again (a resend, the next offset): the same row, skipped.
    res = await at_offset(2, second).write(w, start={CHG: 2})
    assert res.rows["charger_connectors"] == 0 and res.duplicates_skipped == 1
    async with w.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT ts, power_kw FROM charger_connectors WHERE connector_id = $1 ORDER BY ts",
            connector(5),
        )
        archived = await conn.fetch(
            "SELECT ts FROM raw_frames WHERE vin = $1 AND command = 1", PILE_1
        )
    assert [(r["ts"], r["power_kw"]) for r in rows] == [
        (T0 + timedelta(microseconds=7), 60.0),
        (T0 + timedelta(microseconds=8), 120.0),
    ]
    # the frames are archived at their own time (a whole second), each of its offset
    assert [r["ts"] for r in archived] == [T0, T0, T0]
