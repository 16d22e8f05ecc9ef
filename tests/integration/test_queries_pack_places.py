"""Pack places that say less than a place: the views of 0009/0077 and ``nev-ingest query``
on both flavours (rows put straight into the tables, as in test_queries_entities.py).

A standalone pack frame without a site (no site block, or an all-NUL one: ``site_id`` NULL)
does not say the pack moved: it is no binding and no swap of its own."""

from __future__ import annotations

import json
from datetime import datetime

import psycopg
import pytest

from tests.integration.test_queries_entities import (
    SITE,
    Row,
    cli,
    code,
    h,
    insert,
    iso,
    sections,
    target,
)

pytestmark = pytest.mark.integration
__all__ = ["target"]  # the fixture, imported for its name

V6 = "LTESTPACK00000006"


def report(pack: str, at: datetime, stage: int, site: str | None) -> Row:
    """A standalone pack frame of ``pack`` at ``at``: lifecycle stage and site as given."""
    return (
        "pack_telemetry",
        (pack, at, at, 2016, 2, stage, 3, 50, 95, 812, 610.0, 0.0, 5000, site, 3, 2,
         [3301, 3302], 3301, 3302, 1, [25], 25, 25, 0, 0, 0),
    )  # fmt: skip


Binding = tuple[str, str | None, datetime, datetime | None]


def assert_bindings(
    target: tuple[str, str], capsys: pytest.CaptureFixture[str], p: str, bindings: list[Binding]
) -> dict[str, list[dict[str, object]]]:
    """``p``'s bindings are ``bindings`` in the pack_bindings view and in ``query pack`` (the
    CLI's own copy of the SQL); returns the CLI's sections."""
    dsn, schema = target
    with psycopg.connect(dsn, autocommit=True) as conn:
        view = conn.execute(
            f"SELECT place_kind, place_id, valid_from, valid_to FROM {schema}.pack_bindings "
            "WHERE pack_code = %s ORDER BY valid_from",
            [p],
        ).fetchall()
    assert [tuple(r) for r in view] == bindings
    code_, out, _ = cli(capsys, "query", "pack", p, *_db(target))
    assert code_ == 0
    got = sections(out)
    assert [
        (b["place_kind"], b["place_id"], b["valid_from"], b["valid_to"]) for b in got["bindings"]
    ] == [(k, i, iso(a), iso(b)) for k, i, a, b in bindings]
    return got


def _db(target: tuple[str, str]) -> tuple[str, ...]:
    dsn, schema = target
    return ("--dsn", dsn, "--schema", schema, "--tz", "UTC", "--format", "json")


def test_a_report_without_a_site_is_no_new_place(
    target: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    dsn, schema = target
    p = code(10)
    insert(
        dsn,
        schema,
        [
            report(p, h(0), 2, SITE),
            report(p, h(1), 2, None),  # the station's frame without its site block
            report(p, h(2), 2, SITE),
            report(p, h(3), 2, None),
            ("vehicle_sessions", (V6, h(4), "login", 1, None, [p])),
            report(p, h(5), 1, None),  # in the vehicle, reporting no site
        ],
    )
    bindings: list[Binding] = [("swap_station", SITE, h(0), h(4)), ("vehicle", V6, h(4), None)]
    swaps = [(h(4), "swap_station", SITE, "vehicle", V6)]
    got = assert_bindings(target, capsys, p, bindings)
    with psycopg.connect(dsn, autocommit=True) as conn:
        moved = conn.execute(
            f"SELECT ts, from_kind, from_id, to_kind, to_id FROM {schema}.pack_swaps "
            "WHERE pack_code = %s ORDER BY ts",
            [p],
        ).fetchall()
        assert [tuple(r) for r in moved] == swaps
    assert [(s["ts"], s["from_id"], s["to_id"]) for s in got["swaps"]] == [
        (iso(t), f, to) for t, _, f, _, to in swaps
    ]
    window = ("--from", iso(h(0)) or "", "--to", iso(h(24)) or "")
    code_, out, _ = cli(capsys, "query", "swaps", *window, *_db(target))
    assert code_ == 0
    assert [(r["pack_code"], r["ts"]) for r in map(json.loads, out.splitlines())] == [
        (p, iso(h(4)))
    ]


def test_a_report_of_another_kind_without_a_site_is_a_move(
    target: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    # From a swap station into a vehicle whose terminal names no pack, then to a recycler,
    # neither reporting a site: two moves, to places whose ids are unknown.
    dsn, schema = target
    p = code(11)
    insert(
        dsn,
        schema,
        [
            report(p, h(0), 2, SITE),
            report(p, h(1), 1, None),
            report(p, h(2), 1, None),  # the same stay goes on
            report(p, h(3), 5, None),
        ],
    )
    bindings: list[Binding] = [
        ("swap_station", SITE, h(0), h(1)),
        ("vehicle", None, h(1), h(3)),
        ("recycler", None, h(3), None),
    ]
    assert_bindings(target, capsys, p, bindings)


def test_a_login_naming_no_pack_does_not_cut_the_pack_s_history(
    target: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    # V7 logs in with p, then once without RESS codes (n = 0: says nothing, the binding goes
    # on), then with q. p's telemetry in position 1 runs until the login naming q, in the view
    # and in the CLI, as its binding does.
    dsn, schema = target
    v7, p, q = "LTESTPACK00000007", code(11), code(12)

    def frame(at: datetime) -> Row:
        return ("battery_pack_telemetry", (v7, at, 1, 600.0, 10.0, 2, 1, [3300, 3310], [30],
                                           3300, 3310, 30, 30))  # fmt: skip

    insert(
        dsn,
        schema,
        [
            ("vehicle_sessions", (v7, h(0), "login", 1, None, [p])),
            ("vehicle_sessions", (v7, h(1), "login", 2, None, [])),
            ("vehicle_sessions", (v7, h(3), "login", 3, None, [q])),
            frame(h(0.5)),
            frame(h(1.5)),  # after the login naming nothing: still p
            frame(h(2.5)),
            frame(h(3.5)),  # q's
        ],
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        history = conn.execute(
            f"SELECT pack_code, ts FROM {schema}.vehicle_pack_history WHERE vin = %s ORDER BY ts",
            [v7],
        ).fetchall()
    assert [tuple(r) for r in history] == [(p, h(0.5)), (p, h(1.5)), (p, h(2.5)), (q, h(3.5))]
    db = ("--dsn", dsn, "--schema", schema, "--tz", "UTC", "--format", "json")
    code_, out, _ = cli(capsys, "query", "pack", p, *db)
    assert code_ == 0
    got = sections(out)["bindings"]
    assert [(b["place_kind"], b["place_id"], b["valid_from"], b["valid_to"]) for b in got] == [
        ("vehicle", v7, iso(h(0)), iso(h(3))),
        ("unbound", v7, iso(h(3)), None),
    ]
    assert got[0]["vehicle_frames"] == 3
