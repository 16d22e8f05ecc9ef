"""The query database's views that aggregate or window across entities, on two real shards:
re-made over the union of the tables, they give what one database holding every row would
(a union of each shard's answer counted a bucket once per shard and missed a pack's swap
between vehicles of two shards). Every view of a shard is classified (storage.fdw_views)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from ingest.cli import main
from storage.fdw_views import NOT_IN_QUERY_DATABASE, RECREATED_VIEWS, union_safe
from tests.conftest import ShardDatabases

pytestmark = pytest.mark.integration

T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
PACK = "PACKSHARDVIEW0001"


def _migrate(db: ShardDatabases, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    flags = [
        "--set",
        f"storage.shards={','.join(db.shards)}",
        "--set",
        f"storage.query_dsn={db.query}",
    ]
    assert main(["migrate", *flags]) == 0
    return capsys.readouterr().out


def _put(dsn: str, vin: str, login_at: datetime, charger: str) -> None:
    """One vehicle (an hour of stats, a latest position, a login naming PACK) and one
    charger connector of operator MA0000001, on one shard."""
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO nev.vehicle_stats_1h (vin, bucket, frames, first_ts, last_ts, "
            "distance_km, alarm_frames, severe_alarm_frames) "
            "VALUES (%s, %s, 360, %s, %s, 10, 0, 0)",
            (vin, T0, T0, T0 + timedelta(minutes=59)),
        )
        conn.execute(
            "INSERT INTO nev.latest_state (entity_kind, entity_id, ts, longitude, latitude, "
            "position_valid) VALUES ('vehicle', %s, %s, 116.40, 39.90, true)",
            (vin, T0),
        )
        conn.execute(
            "INSERT INTO nev.latest_state (entity_kind, entity_id, ts, operator_id, "
            "connector_status) VALUES ('charger', %s, %s, 'MA0000001', 2)",
            (charger, T0),
        )
        conn.execute(
            "INSERT INTO nev.vehicle_sessions (vin, ts, event, pack_codes) "
            "VALUES (%s, %s, 'login', %s)",
            (vin, login_at, [PACK]),
        )


def _fetch(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql).fetchall()


def test_aggregating_views_are_made_over_the_union_of_the_shards(
    fresh_shards: ShardDatabases, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _migrate(fresh_shards, capsys)
    assert "left out" not in out
    shard0, shard1 = fresh_shards.shards
    # the pack leaves a vehicle of shard 0 for one of shard 1: a swap neither shard sees alone
    _put(shard0, "LSHARDVIEWS000001", T0, "CHARGERSHARD00001")
    _put(shard1, "LSHARDVIEWS000002", T0 + timedelta(hours=1), "CHARGERSHARD00002")
    query = fresh_shards.query

    assert _fetch(query, "SELECT bucket, vehicles, distance_km FROM nev.public_fleet_stats_1h") == [
        (T0, 2, 20.0)
    ]
    assert _fetch(query, "SELECT vehicles FROM nev.public_vehicle_positions") == [(2,)]
    assert _fetch(
        query, "SELECT operator_id, connector_status, connectors FROM nev.public_connector_status"
    ) == [("MA0000001", 2, 2)]
    assert _fetch(
        query, f"SELECT from_id, to_id FROM nev.pack_swaps WHERE pack_code = '{PACK}'"
    ) == [("LSHARDVIEWS000001", "LSHARDVIEWS000002")]
    bindings = _fetch(
        query,
        f"SELECT place_id, valid_to IS NULL FROM nev.pack_bindings WHERE pack_code = '{PACK}' "
        "AND place_kind = 'vehicle' ORDER BY valid_from",
    )
    assert bindings == [("LSHARDVIEWS000001", False), ("LSHARDVIEWS000002", True)]
    # a re-made view reads the union views, not one shard
    definition = _fetch(query, "SELECT pg_get_viewdef('nev.pack_swaps'::regclass)")[0][0]
    assert "shard_0" not in definition and "pack_bindings" in definition
    # and a second migrate rebuilds them (the union views they read are dropped with them)
    assert "left out" not in _migrate(fresh_shards, capsys)
    assert _fetch(query, "SELECT vehicles FROM nev.public_fleet_stats_1h") == [(2,)]


def test_every_view_of_a_shard_is_classified(
    fresh_shards: ShardDatabases, capsys: pytest.CaptureFixture[str]
) -> None:
    _migrate(fresh_shards, capsys)
    views = {
        name
        for (name,) in _fetch(
            fresh_shards.shards[0],
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'nev' AND c.relkind IN ('v', 'm')",
        )
    }
    known = set(RECREATED_VIEWS) | set(NOT_IN_QUERY_DATABASE)
    assert views and all(union_safe(v) or v in known for v in views), views
    assert set(RECREATED_VIEWS) <= views
