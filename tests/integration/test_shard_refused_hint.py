"""A shard whose server refuses the login is named with the login's fix, not the generic
"check that its server is up": the pool wraps the driver's refusal in ServerRefused, and the
hint must read the error under it."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import pytest

from ingest.pipeline.shard_writers import ShardsUnreachable, ShardWriters
from storage.batch import WriterHooks
from storage.connect import PoolParams
from storage.params import WriterParams

pytestmark = pytest.mark.integration


async def test_a_shard_refusing_the_login_is_told_to_fix_the_user(postgres_dsn: str) -> None:
    u = urlsplit(postgres_dsn)
    dsn = urlunsplit(u._replace(netloc=f"no_such_login_16@{u.hostname}:{u.port}"))
    shards = ShardWriters(
        [PoolParams(dsn=dsn)],
        WriterParams(consumer_group="g"),
        names=["storage.shards[0]"],
        hooks=lambda _: WriterHooks(),
        opened=lambda _shard, _writer: None,
        health=lambda _ok, _shard: None,
    )
    with pytest.raises(ShardsUnreachable) as info:
        await shards.open()
    assert "fix the user in storage.shards[0]" in str(info.value)
