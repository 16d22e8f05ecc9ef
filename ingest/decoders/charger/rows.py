"""Charger frames to the flat rows of ``contract.charger``, from the structured records: the
reference the fast path (``charger/fast.py``, the pipeline's ``decode_charger_rows``) agrees
with, and the path of the rare frames it hands over (login, logout, responses, rejects).

One walk of the frame (``decode_charger_frame``) and a join by ConnectorID: a connector's
output block (0x02) and vehicle/BMS block (0x03) in one frame make one telemetry row; its
order block (0x04) a session ``progress`` row carrying that output's energy and that vehicle's
VIN; a status block (0x01) a status row; a fault block (0x05) a fault row. A login gives the
connectors' registration rows, at the frame time + login_seq µs. Responses and encrypted
frames carry only the envelope.

Blocks that repeat for one connector in one frame make one row per table (``merge_repeated``,
which the fast path applies to the native rows too): every row of a frame has the frame's
time, so a second row of one connector would share its table's key with the first and the
writer would keep the first, while ``latest_state`` (and the alert rules) took the last. A
status, output, demand or order block: the last wins; fault blocks: one row per connector (and
one for the pile), each code once, in the order first sent (a row is the set of faults of its
connector at that second, as the writer joins several frames' rows: storage/batch.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

from contract.charger import (
    SOURCE_FRAME,
    ChargerFaultRow,
    ChargerRows,
    ChargerTelemetryRow,
    ChargingSessionRow,
    ConnectorInfoRow,
    ConnectorStatusRow,
)
from ingest.decoders.charger.blocks import (
    ChargeOrder,
    ConnectorStatus,
    Faults,
    Output,
    VehicleDemand,
)
from ingest.decoders.charger.frame import (
    RESPONSE_COMMAND,
    ChargerFrame,
    ChargerLogin,
)

__all__ = ["merge_repeated", "rows_of_charger_frame"]

_NO_OUTPUT: Final = (None, None, None, None, None)
_NO_DEMAND: Final = (None, None, None, None)


def rows_of_charger_frame(frame: ChargerFrame, received_at: datetime | None = None) -> ChargerRows:
    """The rows of a decoded charger frame."""
    op = frame.operator_id
    rows = ChargerRows(
        operator_id=op,
        charger_id=frame.charger_id,
        command=frame.command,
        ts_ms=frame.ts_ms,
        response=frame.response,
        encrypted=frame.encrypted,
    )
    ts = frame.time
    if ts is None or frame.response != RESPONSE_COMMAND:
        return rows
    body = frame.body
    if isinstance(body, ChargerLogin):
        # The registration's time is the frame time + login_seq µs (a WORD: < 66 ms), as a
        # T/CEC push's is its TimeStamp + Seq µs: two logins of one pile in one second (a
        # reconnect with changed ratings) were one key of charger_connectors, the second
        # skipped as a duplicate and the first taken as the latest registration. Now both are
        # kept, the later numbered one the latest; the same login sent again is one row.
        login_ts = ts + timedelta(microseconds=body.login_seq)
        for e in body.connectors:
            rows.connectors.append(
                ConnectorInfoRow(
                    op,
                    e.connector_id,
                    login_ts,
                    body.station_id,
                    body.equipment_id,
                    frame.charger_id,
                    e.connector_type,
                    e.voltage_upper_v,
                    e.voltage_lower_v,
                    e.current_a,
                    e.power_kw,
                    e.national_standard,
                    SOURCE_FRAME,
                )
            )
        return rows
    outputs: dict[str, Output] = {}
    demands: dict[str, VehicleDemand] = {}
    orders: list[ChargeOrder] = []
    for b in frame.blocks:
        if isinstance(b, Output):
            outputs[b.connector_id] = b
        elif isinstance(b, VehicleDemand):
            demands[b.connector_id] = b
        elif isinstance(b, ConnectorStatus):
            rows.statuses.append(
                ConnectorStatusRow(
                    op, b.connector_id, ts, b.status, b.park_status, b.lock_status, SOURCE_FRAME
                )
            )
        elif isinstance(b, ChargeOrder):
            orders.append(b)
        elif isinstance(b, Faults):
            rows.faults.append(
                ChargerFaultRow(
                    op, b.connector_id or "", ts, frame.charger_id, list(b.codes), SOURCE_FRAME
                )
            )
    # Connectors in first-seen order (output first, then demand-only ones): stable rows.
    for cid in dict.fromkeys([*outputs, *demands]):
        o = outputs.get(cid)
        d = demands.get(cid)
        out = (
            _NO_OUTPUT
            if o is None
            else (o.voltage_v, o.current_a, o.power_kw, o.energy_kwh, o.connector_temp_c)
        )
        dem = (
            _NO_DEMAND
            if d is None
            else (d.vin, d.soc_pct, d.bms_voltage_demand_v, d.bms_current_demand_a)
        )
        rows.telemetry.append(
            ChargerTelemetryRow(
                op, cid, ts, received_at, frame.charger_id, *out, *dem, SOURCE_FRAME
            )
        )
    for r in orders:
        o = outputs.get(r.connector_id)
        d = demands.get(r.connector_id)
        rows.sessions.append(
            ChargingSessionRow(
                op,
                r.connector_id,
                ts,
                r.start_charge_seq,
                "progress",
                r.state,
                r.start_time,
                None,
                None if o is None else o.energy_kwh,
                r.elec_money,
                r.service_money,
                r.total_money,
                None,
                None if d is None else d.vin,
                SOURCE_FRAME,
            )
        )
    return merge_repeated(rows)


def merge_repeated(rows: ChargerRows) -> ChargerRows:
    """``rows`` (of one frame: one time) with one status row per connector (the last block's,
    at the first one's place), one fault row per connector and one for the pile (the codes of
    all its blocks, each once, in the order first sent) and one session row per StartChargeSeq
    (the last). Telemetry is joined by connector already (the last output / demand wins). In
    place; returns ``rows``. Costs a length test per list on the usual frame (no repeats), and
    a set of the codes of a frame's one fault row."""
    statuses = rows.statuses
    if len(statuses) > 1:
        last = {s.connector_id: s for s in statuses}
        if len(last) < len(statuses):
            statuses[:] = last.values()
    faults = rows.faults
    if len(faults) > 1 or (faults and _repeats(faults[0].fault_codes)):
        # Each connector's codes gathered in one list (extend), its row rebuilt once: adding
        # the lists block by block copied the codes so far each time, quadratic in a crafted
        # frame of 1,276 fault blocks of one connector (6.4 ms). A code sent again (two blocks
        # of one connector holding 9) is kept once, as when two frames of that second carry
        # it: [9] + [9] was stored [9, 9] from one frame, [9] from two.
        first: dict[str, ChargerFaultRow] = {}
        codes: dict[str, list[int]] = {}
        for f in faults:
            cid = f.connector_id
            if cid in first:
                codes[cid].extend(f.fault_codes)
            else:
                first[cid] = f
                codes[cid] = list(f.fault_codes)
        joined = [(f, list(dict.fromkeys(codes[c]))) for c, f in first.items()]
        faults[:] = [
            f if once == f.fault_codes else f._replace(fault_codes=once) for f, once in joined
        ]
    sessions = rows.sessions
    if len(sessions) > 1:
        by_seq = {r.start_charge_seq: r for r in sessions}
        if len(by_seq) < len(sessions):
            sessions[:] = by_seq.values()
    return rows


def _repeats(codes: list[int]) -> bool:
    """True when a code appears twice in ``codes`` (one block sending 9 twice)."""
    return len(codes) > 1 and len(set(codes)) < len(codes)
