"""Chargers: the GB/T 32960-style charger profile (``nev.charger.raw``) and the operators'
T/CEC 102 pushes (``nev.charger.tcec``), both to the rows of ``contract.charger``.

    decode_charger_frame(bytes) -> ChargerFrame     structured records; FrameError only
    encode_charger_frame(ChargerFrame) -> bytes     the inverse (tests, load generator)
    decode_charger_rows(bytes, received_at)         the pipeline's fast path: flat rows
    decode_charger_rows_batch(values, received_ms)  the same for a batch (one native call)
    rows_of_charger_frame(ChargerFrame, received_at) the same rows from the records
    decode_tcec(json, interface, operator, t)       a T/CEC 102 push: the same rows
    parse_tcec_timestamp("20250301100000")          the envelope TimeStamp header
    push_time("20250301100000", "0002")             TimeStamp + Seq: the time of status pushes
    charger_rows_to_dict(rows)                      the JSON view (``nev-ingest decode``)

Layouts, codes and sources: docs/protocols/charger.md.
"""

from __future__ import annotations

from ingest.decoders.charger.blocks import (
    ChargeOrder,
    ConnectorEntry,
    ConnectorStatus,
    Faults,
    Output,
    VehicleDemand,
)
from ingest.decoders.charger.fast import decode_charger_rows, decode_charger_rows_batch
from ingest.decoders.charger.frame import (
    COMMANDS,
    ChargerFrame,
    ChargerLogin,
    ChargerLogout,
    decode_charger_frame,
    encode_charger_frame,
)
from ingest.decoders.charger.jsonview import charger_rows_to_dict
from ingest.decoders.charger.rows import rows_of_charger_frame
from ingest.decoders.charger.tcec import (
    INTERFACES,
    OPERATOR_ID_RULE,
    TCEC_REASONS,
    decode_tcec,
    is_operator_id,
    is_seq,
    parse_tcec_timestamp,
    push_time,
)

__all__ = [
    "COMMANDS",
    "INTERFACES",
    "OPERATOR_ID_RULE",
    "TCEC_REASONS",
    "ChargeOrder",
    "ChargerFrame",
    "ChargerLogin",
    "ChargerLogout",
    "ConnectorEntry",
    "ConnectorStatus",
    "Faults",
    "Output",
    "VehicleDemand",
    "charger_rows_to_dict",
    "decode_charger_frame",
    "decode_charger_rows",
    "decode_charger_rows_batch",
    "decode_tcec",
    "encode_charger_frame",
    "is_operator_id",
    "is_seq",
    "parse_tcec_timestamp",
    "push_time",
    "rows_of_charger_frame",
]
