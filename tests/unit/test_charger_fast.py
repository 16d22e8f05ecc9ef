"""The charger fast path (``decode_charger_rows``) agrees with the structured decoder: for the
golden frames, generated frames of every command (Hypothesis, from the round-trip test's
strategies, connectors repeated so that the join by ConnectorID is exercised) and mutated
bytes, its rows equal ``rows_of_charger_frame(decode_charger_frame(raw))``, and when one
rejects a frame the other rejects it with the same reason at the same offset."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from contract.charger import ChargerRows
from ingest.decoders import FrameError
from ingest.decoders.charger import (
    ChargeOrder,
    ChargerFrame,
    decode_charger_frame,
    decode_charger_rows,
    decode_charger_rows_batch,
    encode_charger_frame,
    rows_of_charger_frame,
)
from ingest.decoders.errors import REASONS
from tests.unit.frame_mutations import mutate, reseal
from tests.unit.test_charger_golden import LOGIN, REALTIME
from tests.unit.test_charger_roundtrip import _own_orders, blocks, charger_ids, frames, times

pytestmark = pytest.mark.unit

RECEIVED = datetime(2026, 3, 1, 0, 0, 1, tzinfo=UTC)
SETTINGS = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_SLOTS = ("operator_id", "charger_id", "command", "ts_ms", "response", "encrypted")
_LISTS = ("connectors", "statuses", "telemetry", "sessions", "faults")


def as_data(rows: ChargerRows) -> dict[str, Any]:
    """Every slot of ``rows`` (the fast path fills them directly: all must be set)."""
    out: dict[str, Any] = {name: getattr(rows, name) for name in _SLOTS}
    for name in _LISTS:
        out[name] = [tuple(r) for r in getattr(rows, name)]
    return out


def assert_agree(raw: bytes) -> str:
    """Both paths on ``raw``: equal rows, or the same rejection. Returns what happened.
    (test_battery_fast.py's and test_fast_agreement.py's are the same shape on purpose: each
    spells out its own profile's decoders, for a reader of that test alone.)"""
    try:
        frame = decode_charger_frame(raw)
    except FrameError as exc:
        assert exc.reason in REASONS
        with pytest.raises(FrameError) as fast:
            decode_charger_rows(raw, RECEIVED)
        assert (fast.value.reason, fast.value.offset, fast.value.detail) == (
            exc.reason,
            exc.offset,
            exc.detail,
        )
        return exc.reason
    want = as_data(rows_of_charger_frame(frame, RECEIVED))
    assert as_data(decode_charger_rows(raw, RECEIVED)) == want
    assert as_data(decode_charger_rows(memoryview(raw), RECEIVED)) == want
    return "ok"


# Blocks of a few connectors only, so that outputs, demands, orders and statuses of the same
# connector meet in one frame (the join) and a type repeats for one connector (last wins).
_POOL = ("MA01H3BQ2P000000101", "MA01H3BQ2P000000102", "X")
shared_blocks = st.builds(
    lambda b, cid: dataclasses.replace(b, connector_id=cid),
    blocks,
    st.sampled_from(_POOL),
)
realtime = st.builds(
    ChargerFrame,
    st.sampled_from([0x02, 0x03]),
    charger_ids,
    time=times,
    blocks=st.lists(shared_blocks | blocks, max_size=8).map(tuple),
).map(_own_orders)  # mostly kept; a foreign StartChargeSeq comes from the mutations


def test_golden_frames_agree() -> None:
    assert assert_agree(REALTIME) == "ok" and assert_agree(LOGIN) == "ok"
    rows = decode_charger_rows(REALTIME, RECEIVED)
    assert len(rows.statuses) == len(rows.telemetry) == 1
    assert rows.telemetry[0].received_at == RECEIVED


@SETTINGS
@given(realtime)
def test_generated_realtime_frames_agree(frame: ChargerFrame) -> None:
    event(assert_agree(encode_charger_frame(frame)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames)
def test_generated_frames_of_every_command_agree(frame: ChargerFrame) -> None:
    assert_agree(encode_charger_frame(frame))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(realtime | frames, st.sampled_from([0, 24, 24, 24]), st.data())
def test_mutated_frames_agree(frame: ChargerFrame, first: int, data: st.DataObject) -> None:
    event(assert_agree(mutate(encode_charger_frame(frame), data, first)))


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([0x01, 0x02, 0x03, 0x04, 0x07, 0x09]))
def test_random_data_units_agree(body: bytes, command: int) -> None:
    head = b"##" + bytes((command, 0xFE)) + b"MA01H3BQ2P0000001\x01\x00\x00"
    event(assert_agree(reseal(head + bytes.fromhex("190301100000") + body + b"\x00")))


def test_a_code_outside_tcec_102_is_rejected_by_both_paths() -> None:
    status = 24 + 6 + 1 + 26  # the connector status byte of the golden frame's first block
    bad = reseal(REALTIME[:status] + b"\x07" + REALTIME[status + 1 :])
    assert assert_agree(bad) == "bad_field"
    # The fast path has seen this connector (cached) and still defers to the records' rules.
    assert assert_agree(REALTIME) == "ok" and assert_agree(bad) == "bad_field"


def test_an_order_of_another_operator_is_rejected_by_both_paths() -> None:
    # StartChargeSeq is OperatorID + 18: under another prefix it would suppress that operator's
    # real order of the same time (the session key has no operator). The native walk checks
    # only the length; the fast path hands such a frame to the structured decoder.
    t = datetime(2026, 3, 1, 10, tzinfo=UTC)

    def frame(seq: str) -> bytes:
        order = ChargeOrder("MA01H3BQ2P000000101", seq, 2, t, 1.0, 0.5, 1.5)
        return encode_charger_frame(
            ChargerFrame(0x02, "MA01H3BQ2P0000001", time=t, blocks=(order,))
        )

    own, foreign = frame("MA01H3BQ2" + "7" * 18), frame("ZZ9999999" + "7" * 18)
    assert assert_agree(own) == "ok"
    assert assert_agree(foreign) == "bad_field"
    with pytest.raises(FrameError) as exc:
        decode_charger_frame(foreign)
    assert exc.value.offset == 24 + 6 + 1 + 26  # the StartChargeSeq of the first block
    assert "MA01H3BQ2" in exc.value.detail
    batch = decode_charger_rows_batch([own, foreign, own], [0, 0, 0])
    assert [type(r).__name__ for r in batch] == ["ChargerRows", "FrameError", "ChargerRows"]
    bad = batch[1]
    assert isinstance(bad, FrameError) and (bad.reason, bad.offset) == (
        "bad_field",
        exc.value.offset,
    )
