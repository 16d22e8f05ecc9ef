"""Packs, chargers and being online, on plain PostgreSQL and the TimescaleDB engine: rows put
straight into the 0002/0006/0007 tables (no writer), then the views of 0009_pack_views and
every new ``nev-ingest query`` read them back.

The pack story of issue 11: a vehicle logs in with packs A and B, later with A and C; B shows
up in a swap station, then in a second vehicle. Bindings, swaps and B's telemetry must come out
the same whatever order the rows arrived in (frame time decides)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest

from ingest.cli import main
from ingest.decoders.pack_code import encode_date_code
from storage import queries, queries_packs

pytestmark = pytest.mark.integration

T0 = datetime(2025, 6, 1, 0, 0, tzinfo=UTC)  # a past day: plain rows land in DEFAULT partitions
V1, V2 = "LTESTPACK00000001", "LTESTPACK00000002"
SITE = "SWAPSZ001"
OP = "MA01H3BQ1"
PILE = OP + "PILE0001"
SEQ = OP + "202506010100000001"


def code(n: int) -> str:
    return f"ABCPE01TRACE{n:02d}"[:14] + encode_date_code(date(2024, 5, 1)) + f"{n:07d}"


A, B, C, D = code(1), code(2), code(3), code(4)


def h(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def m(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


Row = tuple[str, tuple[Any, ...]]


def pack_rows() -> list[Row]:
    def bpt(vin: str, ts: datetime, pack: int, lo: int, hi: int, temp: int) -> Row:
        return (
            "battery_pack_telemetry",
            (vin, ts, pack, 600.0, 10.0, 2, 1, [lo, hi], [temp], lo, hi, temp, temp),
        )

    def pt(ts: datetime, stage: int | None, site: str | None, soc: int) -> Row:
        state = (3, soc, 95, 812, 610.0, 0.0, 5000) if stage else (None,) * 7
        return (
            "pack_telemetry",
            (B, ts, ts, 2016, 2, stage, *state, site, 3, 2, [3301, 3302], 3301, 3302, 1, [25],
             25, 25, 0, 0, 0),
        )  # fmt: skip

    return [
        ("vehicle_sessions", (V1, h(0), "login", 1, None, [A, B])),
        ("vehicle_sessions", (V1, h(1.5), "logout", 2, None, None)),
        ("vehicle_sessions", (V1, h(2), "login", 3, None, [A, C])),
        ("vehicle_sessions", (V2, h(5), "login", 1, None, [D, B])),
        bpt(V1, m(30), 1, 3200, 3210, 28),  # A
        bpt(V1, m(30), 2, 3300, 3310, 30),  # B
        bpt(V1, m(60), 2, 3300, 3311, 30),  # B
        bpt(V1, m(150), 2, 3000, 3400, 50),  # C now: must not count for B
        bpt(V2, m(330), 2, 3290, 3320, 31),  # B
        bpt(V2, m(390), 2, 3295, 3321, 32),  # B
        pt(h(3), 2, SITE, 40),
        pt(h(3.5), 2, SITE, 90),
        pt(h(4), None, None, 0),  # no pack-state block: says nothing of the place
        pt(h(6), 1, V2, 80),
    ]


def charger_rows() -> list[Row]:
    rows: list[Row] = [
        (
            "charger_connectors",
            (OP, c, h(0), "ST1", "EQ1", PILE, 2, 750, 200, 250, 120.0, 2, "frame"),
        )
        for c in ("C0001", "C0002")
    ]
    # C0001: an order session 61..91 min; peak 120 kW once.
    for ts, status in ((60, 1), (61, 3), (91, 1)):
        rows.append(("connector_status_events", (OP, "C0001", m(ts), status, None, None, "frame")))
    for k in range(61, 91):
        power = 120.0 if k == 70 else 60.0
        rows.append(
            (
                "charger_telemetry",
                (
                    OP,
                    "C0001",
                    m(k),
                    m(k) + timedelta(seconds=2),
                    PILE,
                    500.0,
                    power * 2,
                    power,
                    (k - 60) * 1.0,
                    40,
                    V1,
                    50.0,
                    510.0,
                    250.0,
                    "frame",
                ),
            )
        )
    for ts, energy, money in ((70, 10.0, 8.0), (80, 25.0, 20.0)):
        rows.append(
            (
                "charging_session_events",
                (
                    OP,
                    "C0001",
                    m(ts),
                    SEQ,
                    "progress",
                    2,
                    m(61),
                    m(ts),
                    energy,
                    None,
                    None,
                    money,
                    None,
                    None,
                    "tcec",
                ),
            )
        )
    rows.append(
        (
            "charging_session_events",
            (
                OP,
                "C0001",
                m(91),
                SEQ,
                "order",
                None,
                m(61),
                m(91),
                30.5,
                30.0,
                15.0,
                45.0,
                1,
                V1,
                "tcec",
            ),
        )
    )
    # C0002: no orders, a charging run 125..155 min from status alone.
    for ts, status in ((120, 1), (125, 3), (130, 3), (155, 1)):
        rows.append(("connector_status_events", (OP, "C0002", m(ts), status, None, None, "frame")))
    for k in range(126, 155):
        late = timedelta(minutes=5) if k == 140 else timedelta(seconds=2)
        soc = 150.0 if k == 141 else 60.0
        rows.append(
            (
                "charger_telemetry",
                (
                    OP,
                    "C0002",
                    m(k),
                    m(k) + late,
                    PILE,
                    400.0,
                    100.0,
                    50.0 if k == 150 else 40.0,
                    (k - 125) * 0.4,
                    35,
                    V2,
                    soc,
                    None,
                    None,
                    "frame",
                ),
            )
        )
    rows.append(("charger_faults", (OP, "C0001", m(65), PILE, [1001], "frame")))
    rows.append(("charger_faults", (OP, "", m(66), PILE, [9], "frame")))
    return rows


def latest_rows() -> list[Row]:
    def state(kind: str, ident: str, ago_min: float, **extra: Any) -> Row:
        # now, not at import: in a full run the test starts minutes after the module loads,
        # and "1 minute ago" must still be inside the --stale window
        seen = datetime.now(UTC) - timedelta(minutes=ago_min)
        return ("latest_state", (kind, ident, seen, seen, json.dumps(extra)))

    return [
        state("vehicle", V1, 1),
        state("vehicle", V2, 60),
        state("charger", f"{OP}:C0001", 1, operator_id=OP, connector_status=3, power_kw=60.0),
        state("charger", f"{OP}:C0002", 1, operator_id=OP, connector_status=0),
        state("battery", A, 1, lifecycle_stage=1, place_id=V1),
        state("battery", B, 120, lifecycle_stage=1, place_id=V2, soc_pct=80, soh_pct=95),
    ]


PARTITIONED = (
    "vehicle_sessions",
    "battery_pack_telemetry",
    "pack_telemetry",
    "connector_status_events",
    "charger_telemetry",
    "charging_session_events",
    "charger_faults",
)


def insert(dsn: str, schema: str, rows: list[Row]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in PARTITIONED:  # plain: partitions are made ahead of now; T0 is long past
            kind = conn.execute(
                "SELECT relkind::text FROM pg_class WHERE oid = %s::regclass", [f"{schema}.{table}"]
            ).fetchone()
            if kind == ("p",):
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {schema}.{table}_test PARTITION OF "
                    f"{schema}.{table} DEFAULT"
                )
        for table, values in rows:
            if table == "latest_state":
                kind, ident, ts, received, extra = values
                conn.execute(
                    f"""INSERT INTO {schema}.latest_state
                    SELECT * FROM jsonb_populate_record(NULL::{schema}.latest_state,
                        jsonb_build_object('entity_kind', %s::text, 'entity_id', %s::text,
                                           'ts', %s::timestamptz, 'received_at', %s::timestamptz,
                                           'updated_at', now()) || %s::jsonb)""",
                    (kind, ident, ts, received, extra),
                )
                continue
            marks = ", ".join(["%s"] * len(values))
            conn.execute(f"INSERT INTO {schema}.{table} VALUES ({marks})", values)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def sections(out: str) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for line in out.splitlines():
        row = json.loads(line)
        found.setdefault(row.pop("section"), []).append(row)
    return found


def iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat(timespec="seconds")


@pytest.fixture(params=["plain", "timescale"])
def target(
    request: pytest.FixtureRequest,
    unique_name: Callable[[str], str],
    capsys: pytest.CaptureFixture[str],
) -> tuple[str, str]:
    if request.param == "plain":
        dsn, schema = request.getfixturevalue("fresh_database"), "nev"
    else:
        dsn = request.getfixturevalue("timescale_dsn").replace("postgres@", "postgres:pglite@", 1)
        schema = unique_name("qe")
    code, out, _ = cli(capsys, "migrate", "--dsn", dsn, "--schema", schema, "--format", "json")
    assert code == 0 and json.loads(out)["mode"] == request.param
    return dsn, schema


B_BINDINGS = [
    ("vehicle", V1, 2, h(0), h(2), 1),
    # V1's login of 2 h names A and C: B's stay in V1 ends there (a departure)
    ("unbound", V1, None, h(2), h(3), 1),
    ("swap_station", SITE, None, h(3), h(5), 2),
    ("vehicle", V2, 2, h(5), None, 2),
]
B_SWAPS = [(h(3), "vehicle", V1, "swap_station", SITE), (h(5), "swap_station", SITE, "vehicle", V2)]


@pytest.mark.parametrize("order", ["as_written", "shuffled", "reversed"])
def test_pack_history_by_frame_time(
    target: tuple[str, str], capsys: pytest.CaptureFixture[str], order: str
) -> None:
    dsn, schema = target
    rows = pack_rows()
    if order == "shuffled":
        random.Random(11).shuffle(rows)
    elif order == "reversed":
        rows.reverse()
    insert(dsn, schema, rows + latest_rows())
    with psycopg.connect(dsn, autocommit=True) as conn:
        view = conn.execute(
            f"SELECT place_kind, place_id, position, valid_from, valid_to, reports "
            f"FROM {schema}.pack_bindings WHERE pack_code = %s ORDER BY valid_from",
            [B],
        ).fetchall()
        assert [tuple(r) for r in view] == B_BINDINGS
        swaps = conn.execute(
            f"SELECT ts, from_kind, from_id, to_kind, to_id FROM {schema}.pack_swaps ORDER BY ts"
        ).fetchall()
        assert [tuple(r) for r in swaps] == B_SWAPS  # A, C and D never moved
        history = conn.execute(
            f"SELECT vin, ts, position FROM {schema}.vehicle_pack_history WHERE pack_code = %s "
            "ORDER BY ts",
            [B],
        ).fetchall()
        assert [tuple(r) for r in history] == [(V1, m(30), 2), (V1, m(60), 2), (V2, m(330), 2),
                                                (V2, m(390), 2)]  # fmt: skip
        kinds = conn.execute(
            f"SELECT DISTINCT place_kind FROM {schema}.pack_places WHERE pack_code = %s", [B]
        ).fetchall()
        assert {k for (k,) in kinds} == {"vehicle", "swap_station", "unknown", "unbound"}

    db = ("--dsn", dsn, "--schema", schema, "--tz", "UTC", "--format", "json")
    code, out, _ = cli(capsys, "query", "pack", B, *db)
    assert code == 0
    report = sections(out)
    assert report["pack"][0]["manufacturer"] == "ABC" and report["pack"][0]["soh_pct"] == 95
    got = [(b["place_kind"], b["place_id"], b["position"], b["valid_from"], b["valid_to"],
            b["reports"]) for b in report["bindings"]]  # fmt: skip
    assert got == [(k, i, p, iso(f), iso(t), n) for k, i, p, f, t, n in B_BINDINGS]
    # B's telemetry spans three places; C's 3400 mV / 50 °C in V1's position 2 is not B's.
    assert [(b["vehicle_frames"], b["pack_frames"]) for b in report["bindings"]] == [
        (2, 0), (0, 0), (0, 3), (2, 1)]  # fmt: skip
    assert (
        report["bindings"][0]["cell_max_mv"] == 3311 and report["bindings"][0]["max_temp_c"] == 30
    )
    assert (report["bindings"][2]["soc_min_pct"], report["bindings"][2]["soc_max_pct"]) == (40, 90)
    assert [(s["ts"], s["from_id"], s["to_id"]) for s in report["swaps"]] == [
        (iso(t), f, to) for t, _, f, _, to in B_SWAPS
    ]
    code, out, _ = cli(capsys, "query", "pack", A, *db)
    assert [b["place_id"] for b in sections(out)["bindings"]] == [V1] and "swaps" not in sections(
        out
    )

    window = ("--from", iso(h(0)) or "", "--to", iso(h(24)) or "")
    code, out, _ = cli(capsys, "query", "swaps", *window, *db)
    assert [(r["pack_code"], r["ts"]) for r in map(json.loads, out.splitlines())] == [
        (B, iso(h(3))), (B, iso(h(5)))]  # fmt: skip
    # From 4 h on: the station report of 3.5 h is inside the default lookback, so 5 h is a swap;
    # with a 1-minute lookback the place B left is unknown and no swap is claimed.
    later = ("--from", iso(h(4)) or "", "--to", iso(h(24)) or "")
    code, out, _ = cli(capsys, "query", "swaps", *later, *db)
    assert [json.loads(r)["ts"] for r in out.splitlines()] == [iso(h(5))]
    code, out, _ = cli(capsys, "query", "swaps", *later, "--lookback", "1m", *db)
    assert out == ""
    code, out, _ = cli(capsys, "query", "pack", B, *db[:-2], "--explain")
    assert code == 0 and out.count("Execution Time") == 3 and "== bindings" in out
    with psycopg.connect(dsn, autocommit=True) as conn:
        # a handful of rows is a sequential scan's; what matters is that the index can serve
        conn.execute("SET enable_seqscan = off")
        plan = queries.explain(conn, queries_packs.bindings(schema, B), analyze=False)
    assert any("Index Cond: (pack_codes @>" in line for line in plan), plan


def test_chargers_sessions_and_online(
    target: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    dsn, schema = target
    insert(dsn, schema, charger_rows() + latest_rows())
    db = ("--dsn", dsn, "--schema", schema, "--tz", "UTC", "--format", "json")
    window = ("--from", iso(h(0)) or "", "--to", iso(h(24)) or "")

    code, out, _ = cli(capsys, "query", "charger", PILE, *window, *db)
    report = sections(out)
    assert code == 0 and [c["connector"] for c in report["connectors"]] == [
        f"{OP}:C0001", f"{OP}:C0002"]  # fmt: skip
    assert report["connectors"][0]["connector_status"] == 3
    by_source = {s["source"]: s for s in report["sessions"]}
    assert set(by_source) == {"order", "status"}  # C0001's status run is its order: not twice
    order = by_source["order"]
    assert (order["start_charge_seq"], order["vin"], order["state"]) == (SEQ, V1, 4)
    assert (order["start_time"], order["end_time"]) == (iso(m(61)), iso(m(91)))
    assert (order["energy_kwh"], order["peak_power_kw"], order["total_money"]) == (30.5, 120, 45)
    status = by_source["status"]
    assert (status["connector"], status["vin"], status["state"]) == (f"{OP}:C0002", V2, 4)
    assert (status["start_time"], status["end_time"]) == (iso(m(125)), iso(m(155)))
    assert status["energy_kwh"] == pytest.approx(29 * 0.4) and status["peak_power_kw"] == 50
    assert [(f["connector"], f["fault_codes"]) for f in report["faults"]] == [
        ("(pile)", [9]), (f"{OP}:C0001", [1001])]  # fmt: skip

    code, out, _ = cli(capsys, "query", "charger", f"{OP}:C0002", *window, *db)
    report = sections(out)
    assert [c["connector"] for c in report["connectors"]] == [f"{OP}:C0002"]
    assert [s["source"] for s in report["sessions"]] == ["status"]
    assert [f["connector"] for f in report["faults"]] == ["(pile)"]
    code, out, _ = cli(capsys, "query", "charger", "EQ1", "--operator", OP, *window, *db)
    assert len(sections(out)["connectors"]) == 2

    code, out, _ = cli(capsys, "query", "sessions", "--vin", V1, *window, *db)
    assert [json.loads(r)["start_charge_seq"] for r in out.splitlines()] == [SEQ]
    code, out, _ = cli(capsys, "query", "sessions", "--charger", f"{OP}:C0001", *window, *db)
    assert [json.loads(r)["energy_kwh"] for r in out.splitlines()] == [30.5]
    code, out, _ = cli(capsys, "query", "sessions", "--vin", V1, *db)  # default: the last 7 days
    assert code == 0 and out == ""

    code, out, _ = cli(capsys, "query", "chargers", "--operator", OP, "--status", "charging", *db)
    assert [json.loads(r)["connector"] for r in out.splitlines()] == [f"{OP}:C0001"]
    code, out, _ = cli(capsys, "query", "latest", f"{OP}:C0001", "--kind", "charger", *db)
    assert json.loads(out)["power_kw"] == 60 and json.loads(out)["connector_status"] == 3
    code, out, _ = cli(capsys, "query", "latest", B, "--kind", "battery", *db)
    assert (json.loads(out)["place_id"], json.loads(out)["soh_pct"]) == (V2, 95)

    expected = {"vehicle": (2, 1, [V2]), "charger": (2, 1, [f"{OP}:C0002"]), "battery": (2, 1, [B])}
    for kind, (entities, online, offline) in expected.items():
        code, out, _ = cli(capsys, "query", "online", "--kind", kind, *db)
        report = sections(out)
        summary = report["summary"][0]
        assert (summary["entities"], summary["online"], summary["online_pct"]) == (
            entities, online, 50)  # fmt: skip
        assert [r["entity_id"] for r in report["offline"]] == offline
    code, out, _ = cli(capsys, "query", "online", "--kind", "vehicle", "--stale", "2h", *db)
    assert sections(out)["summary"][0]["online"] == 2

    code, out, _ = cli(capsys, "query", "online", "--kind", "charger", "--quality",
                       "--day", T0.date().isoformat(), "--interval", "1m", *db)  # fmt: skip
    quality = {q["entity_id"]: q for q in map(json.loads, out.splitlines())}
    one, two = quality[f"{OP}:C0001"], quality[f"{OP}:C0002"]
    assert (one["frames"], one["expected"], one["completeness_pct"]) == (30, 30, 100)
    assert (one["out_of_range"], one["skewed_frames"], one["max_skew_s"]) == (0, 0, 2)
    assert (two["frames"], two["out_of_range"], two["skewed_frames"]) == (29, 1, 1)
    assert two["max_skew_s"] == 300


def test_a_login_naming_no_pack_does_not_end_a_stay(
    target: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Terminals that do not report their RESS codes log in with n = 0: no information, so the
    # pack stays bound; only a login naming other packs ends its stay (pack_places' departures).
    dsn, schema = target
    v3, e, f = "LTESTPACK00000003", code(5), code(6)
    insert(
        dsn,
        schema,
        [
            ("vehicle_sessions", (v3, h(0), "login", 1, None, [e])),
            ("vehicle_sessions", (v3, h(1), "login", 2, None, [])),
            ("vehicle_sessions", (v3, h(2), "login", 3, None, [e])),
            ("vehicle_sessions", (v3, h(3), "login", 4, None, [f])),
        ],
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        view = conn.execute(
            f"SELECT place_kind, place_id, valid_from, valid_to FROM {schema}.pack_bindings "
            "WHERE pack_code = %s ORDER BY valid_from",
            [e],
        ).fetchall()
        swaps = conn.execute(
            f"SELECT count(*) FROM {schema}.pack_swaps WHERE pack_code = %s", [e]
        ).fetchone()
    expected = [("vehicle", v3, h(0), h(3)), ("unbound", v3, h(3), None)]
    assert [tuple(r) for r in view] == expected
    assert swaps == (0,)  # leaving without appearing elsewhere is no swap
    db = ("--dsn", dsn, "--schema", schema, "--tz", "UTC", "--format", "json")
    code_, out, _ = cli(capsys, "query", "pack", e, *db)
    assert code_ == 0
    got = [(b["place_kind"], b["place_id"], b["valid_from"], b["valid_to"])
           for b in sections(out)["bindings"]]  # fmt: skip
    assert got == [(k, i, iso(a), iso(b)) for k, i, a, b in expected]


def test_a_tcec_connector_is_judged_by_its_status_not_its_silence(
    target: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Operators push a connector's status when it changes: an idle T/CEC connector is silent
    # for hours and online; a profile connector silent that long is offline.
    dsn, schema = target
    op = "MA02TCEC1"

    def registered(connector: str, source: str) -> Row:
        return (
            "charger_connectors",
            (op, connector, h(0), "ST2", "EQ2", None, 2, 750, 200, 250, 60.0, 2, source),
        )

    def state(connector: str, status: int, ago_h: float) -> Row:
        seen = datetime.now(UTC) - timedelta(hours=ago_h)
        extra = {"operator_id": op, "connector_status": status}
        return ("latest_state", ("charger", f"{op}:{connector}", seen, None, json.dumps(extra)))

    insert(
        dsn,
        schema,
        [
            registered("T1", "tcec"),
            registered("T2", "tcec"),
            registered("F1", "frame"),
            state("T1", 1, 3),  # idle, silent 3 h: online
            state("T2", 0, 0),  # reported offline just now: offline
            state("F1", 1, 3),  # profile connector silent 3 h: offline
        ],
    )
    db = ("--dsn", dsn, "--schema", schema, "--tz", "UTC", "--format", "json")
    code, out, _ = cli(capsys, "query", "online", "--kind", "charger", *db)
    assert code == 0
    report = sections(out)
    assert (report["summary"][0]["entities"], report["summary"][0]["online"]) == (3, 1)
    assert sorted(r["entity_id"] for r in report["offline"]) == [f"{op}:F1", f"{op}:T2"]


def test_a_departure_counts_only_from_the_place_the_pack_is_in(
    target: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    # G is seen at a station before its vehicle logs in with another pack: that login's
    # departure is old news (no 'unbound' gap, no station -> station swap). H is taken out of
    # its vehicle and put back: a gap, but no swap (it never appeared anywhere else).
    dsn, schema = target
    v4, g, h_, k = "LTESTPACK00000004", code(7), code(8), code(9)
    v5 = "LTESTPACK00000005"

    def station(pack: str, at: datetime) -> Row:
        return (
            "pack_telemetry",
            (pack, at, at, 2016, 2, 2, 3, 50, 95, 812, 610.0, 0.0, 5000, SITE, 3, 2,
             [3301, 3302], 3301, 3302, 1, [25], 25, 25, 0, 0, 0),
        )  # fmt: skip

    insert(
        dsn,
        schema,
        [
            ("vehicle_sessions", (v4, h(0), "login", 1, None, [g])),
            station(g, h(1)),
            ("vehicle_sessions", (v4, h(2), "login", 2, None, [k])),
            station(g, h(3)),
            ("vehicle_sessions", (v5, h(0), "login", 1, None, [h_])),
            ("vehicle_sessions", (v5, h(1), "login", 2, None, [k])),
            ("vehicle_sessions", (v5, h(2), "login", 3, None, [h_])),
        ],
    )
    db = ("--dsn", dsn, "--schema", schema, "--tz", "UTC", "--format", "json")
    expected = {
        g: ([("vehicle", v4, h(0), h(1)), ("swap_station", SITE, h(1), None)],
            [(h(1), v4, SITE)]),
        h_: ([("vehicle", v5, h(0), h(1)), ("unbound", v5, h(1), h(2)),
              ("vehicle", v5, h(2), None)], []),
    }  # fmt: skip
    with psycopg.connect(dsn, autocommit=True) as conn:
        for pack, (bindings, swaps) in expected.items():
            view = conn.execute(
                f"SELECT place_kind, place_id, valid_from, valid_to FROM {schema}.pack_bindings "
                "WHERE pack_code = %s ORDER BY valid_from",
                [pack],
            ).fetchall()
            assert [tuple(r) for r in view] == bindings, pack
            moved = conn.execute(
                f"SELECT ts, from_id, to_id FROM {schema}.pack_swaps WHERE pack_code = %s",
                [pack],
            ).fetchall()
            assert [tuple(r) for r in moved] == swaps, pack
    for pack, (bindings, swaps) in expected.items():
        code_, out, _ = cli(capsys, "query", "pack", pack, *db)
        assert code_ == 0
        report = sections(out)
        got = [(b["place_kind"], b["place_id"], b["valid_from"], b["valid_to"])
               for b in report["bindings"]]  # fmt: skip
        assert got == [(kd, i, iso(a), iso(b)) for kd, i, a, b in bindings], pack
        assert [(s["ts"], s["from_id"], s["to_id"]) for s in report.get("swaps", [])] == [
            (iso(t), f, to) for t, f, to in swaps
        ], pack
