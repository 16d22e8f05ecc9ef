"""Pure pieces of storing chargers and packs: one latest_state row per entity from a batch's
rows (frame-time order, last non-null, never older than the stored state), rows per table of
a batch that mixes the kinds, and the pack_telemetry COPY stream read back."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract.battery import PackFrameRows
from contract.charger import ChargerRows, ChargerTelemetryRow, ConnectorStatusRow
from devtools.sim.synthetic import frame_rows, vin
from ingest.pipeline.adapters import decode_charger_batch
from storage import latest_kinds
from storage.batch import is_reissue, row_times_ms, rows_by_table
from storage.binary import COPY_SIGNATURE, COPY_TRAILER
from storage.latest_kinds import charger_values, merge_newest, several_times
from storage.tables import CONNECTOR_STATUS, PACK_TELEMETRY, VEHICLES
from tests.unit.test_charger_golden import LOGIN
from tests.unit.test_storage_binary import _array

pytestmark = pytest.mark.unit

T = datetime(2025, 3, 10, tzinfo=UTC)
S = timedelta(seconds=1)


def test_rows_of_one_entity_merge_in_frame_time_order() -> None:
    # (ts, received_at, x, y): per column the last non-null value, but received_at goes with
    # ts (the newest report's, NULL for a status row), never an older report's.
    items = [
        ("a", (T + 2 * S, None, 3, None)),  # newest: a status row, no receipt
        ("a", (T, T, 1, 7)),
        ("a", (T + S, None, 2, None)),
        ("b", (T, T, 5, None)),
    ]
    assert several_times(items) == {"a"}
    assert merge_newest(items) == [("a", (T + 2 * S, None, 3, 7)), ("b", (T, T, 5, None))]
    # rows of the newest time: their last receipt
    newest = [("c", (T + S, T + S, None, 1)), ("c", (T + S, None, 4, None)), ("c", (T, T, 9, 9))]
    assert merge_newest(newest) == [("c", (T + S, T + S, 4, 1))]
    # what is not newer than the stored state takes no part: its 7 would overwrite a newer value
    assert merge_newest(items, {"a": T, "b": T}) == [("a", (T + 2 * S, None, 3, None))]


def test_rows_of_one_time_keep_their_order() -> None:
    items = [("a", (T, 1, None)), ("a", (T, None, 2)), ("a", (T, 3, None))]
    assert merge_newest(items) == [("a", (T, 3, 2))]


def test_a_pack_s_place_goes_with_its_stage() -> None:
    # (ts, ..., lifecycle_stage, place_id, ...) as BATTERY's columns: a site is kept only while
    # the stage stays; a report of a new stage without a site leaves the place unknown.
    stage, place = latest_kinds.BATTERY.index("lifecycle_stage"), 10
    assert latest_kinds.BATTERY.index("place_id") == place

    def pack(t: datetime, s: int | None, site: str | None) -> tuple[Any, ...]:
        v: list[Any] = [t, *[None] * (len(latest_kinds.BATTERY.columns) - 1)]
        v[stage], v[place] = s, site
        return tuple(v)

    def merged(*reports: tuple[Any, ...]) -> tuple[Any, Any]:
        [(_, v)] = merge_newest([("p", r) for r in reports], spec=latest_kinds.BATTERY)
        return v[stage], v[place]

    cleared = latest_kinds.CLEARED  # emptied by a stage change: the stored site must not fill it
    assert merged(pack(T, 2, "ST1"), pack(T + S, 2, None)) == (2, "ST1")
    assert merged(pack(T, 2, "ST1"), pack(T + S, 1, None)) == (1, cleared)
    assert merged(pack(T, 2, "ST1"), pack(T + S, 1, None), pack(T + 2 * S, 1, None)) == (1, cleared)
    assert merged(pack(T, 1, None), pack(T + S, 2, None)) == (2, cleared)
    assert merged(pack(T, 2, "ST1"), pack(T + S, None, None)) == (2, "ST1")
    assert merged(pack(T, 1, "V1"), pack(T + S, 2, "ST1"), pack(T + 2 * S, 2, None)) == (2, "ST1")
    # without the spec, per column as before (the other kinds)
    [(_, v)] = merge_newest([("p", pack(T, 2, "ST1")), ("p", pack(T + S, 1, None))])
    assert (v[stage], v[place]) == (1, "ST1")


def test_a_mixed_batch_goes_to_each_kind_s_tables() -> None:
    charger = ChargerRows(operator_id="MA01H3BQ2", charger_id="MA01H3BQ2P0000001", command=3)
    charger.statuses.append(ConnectorStatusRow("MA01H3BQ2", "01", T, 3, None, None, "frame"))
    pack = PackFrameRows(edition=2016, command=0x07, pack_code="TRACE01E3F0000042", ts_ms=None)
    vehicle = frame_rows(vin(1), T)
    tables = rows_by_table([vehicle, charger, pack], [0, 1, 2])
    assert [t.name for t, _ in tables][:1] == [VEHICLES.name]
    assert dict((t.name, len(r)) for t, r in tables)[CONNECTOR_STATUS.name] == 1
    assert PACK_TELEMETRY.name not in {t.name for t, _ in tables}  # a heartbeat has no rows
    assert [is_reissue(f) for f in (vehicle, charger, pack)] == [False, True, False]
    assert list(row_times_ms([charger, pack])) == [int(T.timestamp() * 1000)]
    # a pile's login: only its archive row (raw_frames) is partitioned, at the login's time
    (login,) = decode_charger_batch([LOGIN], [0])
    assert isinstance(login, ChargerRows) and login.connectors and not login.statuses
    assert list(row_times_ms([login])) == [int(login.connectors[0].ts.timestamp() * 1000)]
    with pytest.raises(TypeError, match="not one of the decoded kinds"):
        rows_by_table([object()], [0])  # type: ignore[list-item]


def _fields(stream: bytes) -> list[list[bytes | None]]:
    """The tuples of a binary COPY stream, each as its raw field values."""
    assert stream.startswith(COPY_SIGNATURE) and stream.endswith(COPY_TRAILER)
    pos = len(COPY_SIGNATURE)
    rows: list[list[bytes | None]] = []
    while True:
        (count,) = struct.unpack_from(">h", stream, pos)
        pos += 2
        if count == -1:
            return rows
        row: list[bytes | None] = []
        for _ in range(count):
            (size,) = struct.unpack_from(">i", stream, pos)
            pos += 4
            row.append(None if size == -1 else stream[pos : pos + size])
            pos += max(size, 0)
        rows.append(row)


def test_pack_telemetry_copy_stream_reads_back() -> None:
    from tests.integration.kinds_frames import pack_realtime

    _, rows = pack_realtime(T, cells=(3.301, None), probes=(25, None), soc=None)
    assert rows.telemetry is not None
    row: Any = rows.telemetry
    assert PACK_TELEMETRY.encode is not None
    stream = b"".join(PACK_TELEMETRY.encode([row, row._replace(cell_voltages_raw=b"")]))
    first, second = _fields(stream)
    assert len(first) == len(PACK_TELEMETRY.columns) == 26
    assert first[0] == row.pack_code.encode()
    assert _array(first[16] or b"") == [3301, None] and _array(first[20] or b"") == [25, None]
    assert first[7] is None  # soc_pct absent
    assert struct.unpack(">f", first[10] or b"")[0] == pytest.approx(row.voltage_v)
    assert second[16] is None  # no cells block: NULL, not an empty array


def _forward_merge(rows: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    # the rule as stated: in frame-time order (stable), each non-null value replaces the last;
    # column 1 (received_at) is the last non-null of the newest time's rows, else null
    ordered = sorted(rows, key=lambda r: r[0])
    merged = list(ordered[0])
    for values in ordered[1:]:
        for j, v in enumerate(values):
            if v is not None:
                merged[j] = v
    newest = [r for r in ordered if r[0] == ordered[-1][0]]
    receipts = [r[1] for r in newest if r[1] is not None]
    merged[1] = receipts[-1] if receipts else None
    return tuple(merged)


@given(
    st.lists(
        st.tuples(
            st.sampled_from("abc"),
            st.integers(0, 3),
            st.lists(st.none() | st.integers(0, 9), min_size=4, max_size=4),
        ),
        max_size=12,
    ),
    st.dictionaries(st.sampled_from("abc"), st.integers(0, 3)),
)
def test_the_merge_is_the_forward_rule(
    raw: list[tuple[str, int, list[int | None]]], stored_s: dict[str, int]
) -> None:
    items: list[tuple[str, tuple[Any, ...]]] = [(e, (T + t * S, *vs)) for e, t, vs in raw]
    stored = {e: T + t * S for e, t in stored_s.items()}
    expected = []
    for entity in sorted({e for e, _ in items}):
        rows = [v for e, v in items if e == entity and v[0] > stored.get(entity, T - S)]
        if rows:
            expected.append((entity, _forward_merge(rows)))
    assert merge_newest(items, stored) == expected


@given(
    st.lists(st.tuples(st.sampled_from("12"), st.integers(0, 2), st.integers(0, 4)), max_size=6),
    st.lists(
        st.tuples(st.sampled_from("12"), st.integers(0, 2), st.none() | st.floats(0, 500)),
        max_size=6,
    ),
)
def test_a_status_joined_to_its_telemetry_row_merges_as_two_rows(
    raw_statuses: list[tuple[str, int, int]], raw_telemetry: list[tuple[str, int, float | None]]
) -> None:
    statuses = [
        ConnectorStatusRow("OP", c, T + t * S, v, None, None, "x") for c, t, v in raw_statuses
    ]
    telemetry = [
        ChargerTelemetryRow(
            "OP", c, T + t * S, T, None, v, None, None, None, None, None, None, None, None, "x"
        )
        for c, t, v in raw_telemetry
    ]
    # the rule as the merge states it: every status and telemetry row an item of its own
    apart = [(f"OP:{s.connector_id}", latest_kinds._status(s)) for s in statuses]
    apart += [(f"OP:{t.connector_id}", latest_kinds._output(t, None)) for t in telemetry]
    assert merge_newest(charger_values(statuses, telemetry)) == merge_newest(apart)
