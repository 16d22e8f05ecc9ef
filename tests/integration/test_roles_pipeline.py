"""The service end to end as a writer login (least privilege, plain PostgreSQL): rows once, bad
frames dead-lettered with their reasons, an alert raised and published, offsets stored, a
partition created on demand for an old frame through the owner's function, and no permission
error anywhere in the log."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from devtools.sim.fleet import Message, SimVehicle
from ingest.decoders import encode_frame
from storage.roles import RoleNames
from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.roles_support import RolesDb, drop_roles
from tests.integration.traffic import HOT_PACK_RULES, HOT_VIN, hot_frames, recent_fleet

pytestmark = pytest.mark.integration

OLD_VIN = "LNEVOLD0000000001"
OLD_DAYS = 20  # beyond the 8 days of partitions made behind: this slot has none yet


def _old_frame() -> Message:
    v = SimVehicle(OLD_VIN, random.Random(5), 2016)
    v.step(10.0)
    t = time.time_ns() // 1_000_000 - OLD_DAYS * 86_400_000
    return Message(t, OLD_VIN.encode(), encode_frame(v.frame(t)), "realtime")


@pytest.fixture
async def roles_env(
    env: PipelineEnv, unique_name: Callable[[str], str]
) -> AsyncIterator[tuple[PipelineEnv, RolesDb]]:
    prefix = unique_name("r")
    names = RoleNames(
        *(
            f"{prefix}_{f}"
            for f in ("owner", "writer", "regulator", "operator", "oem", "charging", "public")
        )
    )
    rdb = RolesDb(dsn=env.dsn, names=names, prefix=prefix)
    try:
        rdb.cli("migrate")  # the schema env made, now with the roles
        yield env, rdb
    finally:
        await drop_roles(rdb)


async def test_the_service_runs_end_to_end_as_a_writer_login(
    roles_env: tuple[PipelineEnv, RolesDb], tmp_path: Path
) -> None:
    env, rdb = roles_env
    login = rdb.login("writer")
    rules = tmp_path / "rules.toml"
    rules.write_text(HOT_PACK_RULES)
    start = time.time_ns() // 1_000_000 - 600_000
    messages = [*recent_fleet(20, 2, bad_ratio=0.05), _old_frame(), *hot_frames(start, [60.0] * 4)]
    expected = ps.Expected.of(messages)
    assert sum(expected.bad.values()) >= 3, "the traffic must hold bad frames"

    async with ps.serving(
        env, "writer", NEV_POSTGRES_DSN=rdb.dsn_of(login), NEV_ALERTS_RULES_FILE=str(rules)
    ) as svc:
        await ps.produce_and_store(env, messages)
        assert await ps.stored_rows(env.dsn) == expected.rows  # each frame once, the old one too
        dead = await ps.read_topic(env.kafka, env.dlq, expect=sum(expected.bad.values()))
        reasons = Counter((ps.header(r.headers, "error.reason") or b"").decode() for r in dead)
        assert reasons == expected.bad
        published = await ps.read_topic(env.kafka, env.alerts, expect=1)
        assert any(HOT_VIN.encode() in (r.key or b"") for r in published)
        async with rdb.connect() as conn:
            users = await conn.fetch(
                "SELECT DISTINCT usename FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name LIKE 'nev-ingest%'"
            )
            assert [u["usename"] for u in users] == [login]
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM nev.alerts WHERE entity_id = $1 AND cleared_at IS NULL",
                    HOT_VIN,
                )
                == 1
            )
            # the old frame's slot: created on demand through the owner's function
            owner = await conn.fetchval(
                "SELECT DISTINCT c.relowner::regrole::text FROM pg_inherits i "
                "JOIN pg_class c ON c.oid = i.inhrelid "
                "JOIN nev.vehicle_telemetry t ON t.tableoid = c.oid WHERE t.vin = $1",
                OLD_VIN,
            )
            assert owner == rdb.names.owner
    log = svc.log.read_text()
    assert "permission denied" not in log
    assert "storage maintenance failed" not in log
    assert "created" in log and "partitions on demand" in log
