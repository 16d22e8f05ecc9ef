"""A revoke during a database stall does not hold the consumer group's rebalance: the worker's
steps after its drain (merging the pending latest_state tuples first) are left behind at their
bounds and it rejoins, while the database still answers nothing. They were bounded with
``asyncio.wait_for``, which cancels at the bound and then waits for the cancelled merge to end
(asyncpg's ROLLBACK and connection release on a server that answers nothing), so the revoke
callback, which every member of the group waits for, was held as long as the stall.

The database is the test's own cluster, suspended with SIGSTOP (connections stay open, nothing
answers); the rebalance is a second member joining the worker's group."""

from __future__ import annotations

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

LEFT_BEHIND = (
    f"merging latest_state did not finish within {FLUSH_LATEST_S:g}s: left behind, the revoke "
    "goes on"
)


async def test_a_revoke_while_the_database_stalls_leaves_the_merge_behind_and_rejoins(
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
    ) as svc:
        # A partition's first batch merges (its interval starts there); the second's tuples
        # are what stays pending.
        half = len(messages) // 2
        for part in (messages[:half], messages[half:]):
            await ps.produce(env.kafka, env.topic, part, rate=2000)
            await ps.until(lambda: ps.caught_up(env), timeout_s=NET_S, what="every offset stored")

        def assigned() -> int:
            return sum(1 for r in svc.logs() if r.get("msg") == "partitions assigned")

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
            finally:
                # The group's next rebalance gives the worker everything back (the database
                # answers again by then; the service's stop must exit 0).
                await joiner.stop()
