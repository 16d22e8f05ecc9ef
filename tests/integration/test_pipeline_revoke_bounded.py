"""A revoke during a database stall does not hold the consumer group's rebalance: the worker's
steps after its drain (merging the pending latest_state tuples first) are left behind at their
bounds and it rejoins, while the database still answers nothing. They were bounded with
``asyncio.wait_for``, which cancels at the bound and then waits for the cancelled merge to end
(asyncpg's ROLLBACK and connection release on a server that answers nothing), so the revoke
callback, which every member of the group waits for, was held as long as the stall.

The database stays suspended after the rejoin: the assignment callback's read of the stored
offsets must give up for real too (on an idle pooled connection, ``asyncio.wait_for`` waited for
asyncpg's shielded release as long as the stall), or aiokafka, which starts the heartbeat only
once the callback returns, has the broker drop the worker and the group rebalances again.

The database is the test's own cluster, suspended with SIGSTOP (connections stay open, nothing
answers); the rebalance is a second member joining the worker's group."""

from __future__ import annotations

import time

import pytest
from aiokafka import AIOKafkaConsumer

from ingest.pipeline.closing import FLUSH_LATEST_S
from tests.integration import pipeline_support as ps
from tests.integration.pipeline_support import PipelineEnv
from tests.integration.private_services import PrivateCluster
from tests.integration.traffic import recent_fleet

pytestmark = pytest.mark.integration

# A safety net for each wait (a regression fails instead of hanging the suite), far above the
# bounds under test; nothing here asserts how fast anything is.
NET_S = 120.0

CANNOT_READ = "cannot read the stored offsets and alert state yet"

LEFT_BEHIND = (
    f"merging latest_state did not finish within {FLUSH_LATEST_S:g}s: left behind, the revoke "
    "goes on"
)


async def test_a_revoke_while_the_database_stalls_leaves_the_merge_behind_and_stays_in_the_group(
    cluster_env: PipelineEnv, cluster: PrivateCluster
) -> None:
    env = cluster_env
    messages = recent_fleet(40, 2)
    async with ps.serving(
        env,
        "revoke-stall",
        # The tuples stay pending until the revoke merges them (no merge with the batches).
        NEV_STORAGE_LATEST_INTERVAL_MS="600000",
        NEV_PIPELINE_REVOKE_TIMEOUT_S="1",
        # Idle connections in the pool: the read after the rejoin takes one that hangs (a new
        # connection would fail to connect instead, which was bounded already).
        NEV_POSTGRES_POOL_MIN_SIZE="4",
        # A short session: a worker the group drops shows within the window watched below.
        **ps.SHORT_SESSION,
    ) as svc:
        # A partition's first batch merges (its interval starts there); the second's tuples
        # are what stays pending.
        half = len(messages) // 2
        for part in (messages[:half], messages[half:]):
            await ps.produce(env.kafka, env.topic, part, rate=2000)
            await ps.until(lambda: ps.caught_up(env), timeout_s=NET_S, what="every offset stored")

        def msgs() -> list[str]:
            return [r.get("msg", "") for r in svc.logs()]

        def assigned() -> int:
            return sum(1 for m in msgs() if m == "partitions assigned")

        before = assigned()
        joiner = AIOKafkaConsumer(
            env.topic, bootstrap_servers=env.kafka, group_id=env.group, enable_auto_commit=False
        )
        with cluster.frozen():
            await joiner.start()
            try:

                async def joined() -> bool:
                    await joiner.getmany(timeout_ms=200)
                    return bool(joiner.assignment())

                # Held until the worker's revoke callback ends (or the group drops it).
                await ps.until(joined, timeout_s=NET_S, what="the second member's assignment")

                async def rejoined() -> bool:
                    lines = [r.get("msg", "") for r in svc.logs()]
                    return any(m.startswith(LEFT_BEHIND) for m in lines) and assigned() > before

                # Still frozen: the merge was left behind, and the worker is in the group again.
                await ps.until(
                    rejoined, timeout_s=NET_S, what="the worker's revoke to leave the merge behind"
                )

                async def gave_up_reading() -> bool:
                    lines = msgs()
                    last = max(i for i, m in enumerate(lines) if m == "partitions assigned")
                    return any(m.startswith(CANNOT_READ) for m in lines[last + 1 :])

                # Still frozen: the assignment callback gave its read up and returned (the
                # partitions stay paused), so the worker's heartbeat runs.
                await ps.until(
                    gave_up_reading, timeout_s=NET_S, what="the worker to give up its read"
                )
                every = set(joiner.partitions_for_topic(env.topic) or ())
                assert len(every) > 1
                # Watched for two sessions, still frozen: a worker the broker dropped (no
                # heartbeat for a session) leaves the joiner every partition of the topic.
                until = time.monotonic() + 2 * ps.KILLED_SESSION_S
                while time.monotonic() < until:
                    await joiner.getmany(timeout_ms=200)
                    mine = {tp.partition for tp in joiner.assignment()}
                    assert mine != every, "the group dropped the worker and rebalanced"
            finally:
                # The group's next rebalance gives the worker everything back (the database
                # answers again by then; the service's stop must exit 0).
                await joiner.stop()
