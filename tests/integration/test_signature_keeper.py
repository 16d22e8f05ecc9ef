"""The signature gate's keys against the real registry (``signature_keeper.Keeper`` on the dev
cluster): a rotated or revoked key makes an already-verified vehicle verified again (under
``verify = sample`` too, until one of its frames verifies); a revoked
VIN takes no activation key (trust on first use is for a first key); one activation key the
server refuses does not lose the others queued with it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from devtools.sim.signing import RSA, SigningKey, activation, make_key, realtime
from ingest.config.load import load_settings
from ingest.decoders.errors import BAD_SIGNATURE, FrameError
from ingest.pipeline.adapters import decode_vehicle_batch
from ingest.pipeline.signature_keeper import Keeper
from ingest.pipeline.signatures import KeyCache, Policy, SignatureGate
from ingest.wiring import pool_params
from storage import keys as registry
from storage.keys import DeviceKey
from tests.integration import pipeline_support as ps

pytestmark = pytest.mark.integration

VIN = "LKEEPER0000000001"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[SigningKey, SigningKey]:
    d = tmp_path_factory.mktemp("keys")
    return make_key(d, RSA, "one"), make_key(d, RSA, "two")


@pytest.fixture
async def conn(fresh_database: str) -> AsyncIterator[Any]:
    await ps.migrate_database(fresh_database)
    c = await asyncpg.connect(fresh_database)
    try:
        yield c
    finally:
        await c.close()


def gate(policy: Policy) -> SignatureGate:
    return SignatureGate(decode_vehicle_batch, policy, KeyCache(1000))


def judge(g: SignatureGate, *frames: bytes) -> list[Any]:
    return g(list(frames), [int(time.time() * 1000)] * len(frames))


@contextlib.asynccontextmanager
async def keeping(g: SignatureGate, dsn: str) -> AsyncIterator[Keeper]:
    """A keeper reloading the registry about once a second (its flush period)."""
    params = pool_params(load_settings(environ={"NEV_POSTGRES_DSN": dsn}))
    keeper = Keeper(g, params, refresh_s=0.1)
    task = asyncio.create_task(keeper.run())
    try:
        await asyncio.wait_for(keeper.loaded.wait(), 30)
        yield keeper
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def rejected(out: Any, detail: str) -> bool:
    return isinstance(out, FrameError) and out.reason == BAD_SIGNATURE and detail in str(out)


async def test_a_rotated_key_makes_a_verified_vehicle_verified_again(
    conn: Any, fresh_database: str, keys: tuple[SigningKey, SigningKey]
) -> None:
    old, new = keys
    await registry.add(conn, ps.SCHEMA, DeviceKey(VIN, RSA, old.public_pem, "admin"))
    g = gate(Policy(signatures="reject", verify="first_per_session", sample_per_mille=0))
    t = int(time.time()) * 1000
    async with keeping(g, fresh_database):
        (first,) = judge(g, realtime(VIN, t, old))
        assert not isinstance(first, BaseException)  # verified: trusted for the session
        await registry.add(
            conn, ps.SCHEMA, DeviceKey(VIN, RSA, new.public_pem, "admin"), replace=True
        )
        await ps.until(
            lambda: asyncio.sleep(0, g.cache.get(VIN) == (RSA, new.public_pem)),
            timeout_s=20,
            what="the keeper's reload of the rotated key",
        )
        # Frames still signed with the stolen or retired key: verified again, rejected.
        (after,) = judge(g, realtime(VIN, t + 1000, old))
        assert rejected(after, "invalid")
        (good,) = judge(g, realtime(VIN, t + 2000, new))
        assert not isinstance(good, BaseException)


async def test_under_sample_a_rotated_key_makes_the_vehicle_verified_until_one_verifies(
    conn: Any, fresh_database: str, keys: tuple[SigningKey, SigningKey]
) -> None:
    # sample trusts no one, so the session's trust that a rotation took away under
    # first_per_session did not matter: frames signed with the old key went unverified.
    old, new = keys
    await registry.add(conn, ps.SCHEMA, DeviceKey(VIN, RSA, old.public_pem, "admin"))
    g = gate(Policy(signatures="reject", verify="sample", sample_per_mille=0))
    t = int(time.time()) * 1000
    async with keeping(g, fresh_database):
        # The first load adds keys, it rotates none: sampling as configured (here none).
        (unchecked,) = judge(g, realtime(VIN, t, old, forge=True))
        assert not isinstance(unchecked, BaseException)
        await registry.add(
            conn, ps.SCHEMA, DeviceKey(VIN, RSA, new.public_pem, "admin"), replace=True
        )
        await ps.until(
            lambda: asyncio.sleep(0, g.cache.get(VIN) == (RSA, new.public_pem)),
            timeout_s=20,
            what="the keeper's reload of the rotated key",
        )
        # Signed with the retired key: verified until a frame verifies with the new one.
        first, second = judge(g, realtime(VIN, t + 1000, old), realtime(VIN, t + 2000, old))
        assert rejected(first, "invalid") and rejected(second, "invalid")
        (good,) = judge(g, realtime(VIN, t + 3000, new))
        assert not isinstance(good, BaseException)
        # Verified: back to sampling.
        (sampled,) = judge(g, realtime(VIN, t + 4000, old))
        assert not isinstance(sampled, BaseException)


class CountedCache(KeyCache):
    """A ``KeyCache`` that counts the keeper's reloads."""

    reloads = 0

    def replace_all(self, *args: Any, **kwargs: Any) -> Any:
        self.reloads += 1
        return super().replace_all(*args, **kwargs)


@pytest.mark.parametrize("verify", ["first_per_session", "sample"])
async def test_a_fleet_bigger_than_the_cache_keeps_keys_fetched_after_a_miss(
    conn: Any, fresh_database: str, keys: tuple[SigningKey, SigningKey], verify: str
) -> None:
    # The reload loads the newest key_cache_size keys: a key fetched after a miss was left
    # out, taken for rotated and dropped, and its vehicle re-verified without a key:
    # unknown_key, dead-lettered under reject, at every reload.
    key, _ = keys
    oldest, *newer = (f"LKEEPER000000010{i}" for i in range(3))
    for vin in (oldest, *newer):
        await registry.add(conn, ps.SCHEMA, DeviceKey(vin, RSA, key.public_pem, "admin"))
    cache = CountedCache(2)
    g = SignatureGate(
        decode_vehicle_batch, Policy(signatures="reject", verify=verify, sample_per_mille=0), cache
    )
    t = int(time.time()) * 1000
    async with keeping(g, fresh_database):
        assert cache.get(oldest) is None  # a miss (a frame picked for verification asks so)
        await ps.until(
            lambda: asyncio.sleep(0, oldest in cache.vins()),
            timeout_s=20,
            what="the keeper's fetch of the missed VIN's key",
        )
        (first,) = judge(g, realtime(oldest, t, key))
        assert not isinstance(first, BaseException)
        loaded = cache.reloads
        await ps.until(
            lambda: asyncio.sleep(0, cache.reloads > loaded),
            timeout_s=20,
            what="a reload of the registry",
        )
        assert cache.get(oldest) == (RSA, key.public_pem)
        out = judge(g, *(realtime(oldest, t + i * 1000, key) for i in range(1, 4)))
        assert not any(isinstance(r, BaseException) for r in out), out
        # Revoked, though the cut-short load leaves it out: its frames are refused again.
        await registry.revoke(conn, ps.SCHEMA, oldest)
        await ps.until(
            lambda: asyncio.sleep(0, cache.get(oldest) is None),
            timeout_s=20,
            what="the keeper's reload of the revoked key",
        )
        (after,) = judge(g, realtime(oldest, t + 5000, key))
        assert rejected(after, "unknown_key")


async def test_a_key_added_to_a_fleet_that_fills_the_cache_is_cached_by_the_next_reload(
    conn: Any, fresh_database: str, keys: tuple[SigningKey, SigningKey]
) -> None:
    # With the cache full (a fleet of key_cache_size keys or more), a reload put the keys it
    # did not have cached before the cached ones, and evicted them first: a key added with
    # `keys add` never reached the cache through a reload; its vehicle's first frames were
    # unknown_key, dead-lettered under reject until the keeper's miss fetch.
    key, _ = keys
    *fleet, new = (f"LKEEPER000000020{i}" for i in range(3))
    for vin in fleet:
        await registry.add(conn, ps.SCHEMA, DeviceKey(vin, RSA, key.public_pem, "admin"))
    cache = CountedCache(2)
    g = SignatureGate(decode_vehicle_batch, Policy(signatures="reject"), cache)
    async with keeping(g, fresh_database):
        assert sorted(cache.vins()) == fleet
        await registry.add(conn, ps.SCHEMA, DeviceKey(new, RSA, key.public_pem, "admin"))
        # Two reloads: the first may have read the registry before the key was added.
        loaded = cache.reloads
        await ps.until(
            lambda: asyncio.sleep(0, cache.reloads >= loaded + 2),
            timeout_s=20,
            what="two reloads of the registry",
        )
        assert new in cache.vins()
        (first,) = judge(g, realtime(new, int(time.time()) * 1000, key))
        assert not isinstance(first, BaseException), first


async def test_a_revoked_vin_takes_no_activation_key(
    conn: Any, fresh_database: str, keys: tuple[SigningKey, SigningKey]
) -> None:
    stolen = keys[0]
    await registry.add(conn, ps.SCHEMA, DeviceKey(VIN, RSA, stolen.public_pem, "admin"))
    await registry.revoke(conn, ps.SCHEMA, VIN)
    g = gate(Policy(signatures="reject", verify="every"))
    t = int(time.time()) * 1000
    async with keeping(g, fresh_database):
        assert VIN in g.cache.revoked
        act, frame = judge(g, activation(VIN, t, stolen), realtime(VIN, t + 1000, stolen))
        assert not isinstance(act, BaseException)
        assert rejected(frame, "unknown_key")
        assert [e[3] for e in g.events] == ["key_revoked"]
    active = await registry.list_keys(conn, ps.SCHEMA)
    assert active == []


async def test_a_revocation_the_cache_has_not_seen_still_refuses_the_activation_key(
    conn: Any, keys: tuple[SigningKey, SigningKey]
) -> None:
    # Revoked after the gate's last reload: the gate queues the key, the registry refuses it
    # at the next flush, and the VIN is known as revoked from then on.
    stolen = keys[0]
    await registry.add(conn, ps.SCHEMA, DeviceKey(VIN, RSA, stolen.public_pem, "admin"))
    await registry.revoke(conn, ps.SCHEMA, VIN)
    g = gate(Policy(signatures="reject", verify="every"))
    t = int(time.time()) * 1000
    judge(g, activation(VIN, t, stolen))
    assert [k.vin for k in g.new_keys] == [VIN]  # queued (under reject it vouches once stored)
    keeper = Keeper(g, pool_params(load_settings(environ={})), refresh_s=60)
    await keeper.flush(conn)
    assert g.cache.get(VIN) is None and VIN in g.cache.revoked
    (frame,) = judge(g, realtime(VIN, t + 1000, stolen))
    assert rejected(frame, "unknown_key")
    assert await registry.list_keys(conn, ps.SCHEMA) == []


async def test_activation_keys_are_stored_one_by_one_and_a_nul_padded_chip_id_is_trimmed(
    conn: Any, keys: tuple[SigningKey, SigningKey], tmp_path: Path
) -> None:
    one, two = keys
    g = gate(Policy(signatures="flag", verify="every"))
    t = int(time.time()) * 1000
    judge(g, activation(VIN, t, one, chip="CHIP1234" + "\0" * 8))
    # A row the server refuses (an algorithm the table's CHECK does not allow) between them
    g.new_keys.append(DeviceKey("LKEEPER0000000002", 9, b"\x01", "activation", "X"))
    judge(g, activation("LKEEPER0000000003", t, two))
    keeper = Keeper(g, pool_params(load_settings(environ={})), refresh_s=60)
    await keeper.flush(conn)
    stored = {k.vin: k.chip_id for k in await registry.list_keys(conn, ps.SCHEMA)}
    assert stored == {VIN: "CHIP1234", "LKEEPER0000000003": "CHIPTEST00000001"}
    assert g.new_keys == []
    assert g.cache.get("LKEEPER0000000002") is None


async def test_a_stranger_activating_a_vin_whose_new_key_the_cache_missed_gets_nothing_in(
    conn: Any, keys: tuple[SigningKey, SigningKey]
) -> None:
    # An admin registered the VIN's key after the gate last looked: under reject an
    # activation's key vouches for no frame before the registry stored it, so the stranger's
    # key (refused there: the VIN has one) never gets a frame past.
    admins, strangers = keys
    g = gate(Policy(signatures="reject", verify="every"))
    t = int(time.time()) * 1000
    judge(g, realtime(VIN, t, admins))  # no key yet: the VIN is looked up, found absent
    g.cache.absent.add(VIN)
    await registry.add(conn, ps.SCHEMA, DeviceKey(VIN, RSA, admins.raw, "admin"))
    act, frame = judge(g, activation(VIN, t + 1000, strangers), realtime(VIN, t + 2000, strangers))
    assert not isinstance(act, BaseException)
    assert rejected(frame, "unknown_key")
    await Keeper(g, pool_params(load_settings(environ={})), refresh_s=60).flush(conn)
    assert g.cache.get(VIN) == (RSA, admins.raw)
    (good,) = judge(g, realtime(VIN, t + 3000, admins))
    assert not isinstance(good, BaseException)


async def test_a_server_error_keeps_the_activation_key_queued(
    conn: Any, keys: tuple[SigningKey, SigningKey]
) -> None:
    # A read-only standby after a failover (or a statement timeout) is no refusal of the key:
    # it stays queued for the next flush.
    g = gate(Policy(signatures="flag", verify="every"))
    judge(g, activation(VIN, int(time.time()) * 1000, keys[0]))
    await conn.execute("SET default_transaction_read_only = on")
    keeper = Keeper(g, pool_params(load_settings(environ={})), refresh_s=60)
    with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
        await keeper.flush(conn)
    assert [k.vin for k in g.new_keys] == [VIN]
    assert g.cache.get(VIN) is not None
    await conn.execute("SET default_transaction_read_only = off")
    await keeper.flush(conn)
    assert [k.vin for k in await registry.list_keys(conn, ps.SCHEMA)] == [VIN]


async def test_revoked_vins_cut_short_keeps_the_latest_revocations(conn: Any) -> None:
    # The keeper asks for at most the cache's capacity of revoked VINs. Without an order the
    # server chose which (its scan's or its sort's), so the VINs an activation could bring a
    # stolen key back for were any, and could differ from one reload or worker to the next.
    newest, oldest, middle = ("LREVOKE0000000001", "LREVOKE0000000002", "LREVOKE0000000003")
    for vin in (newest, oldest, middle, "LREVOKE0000000004"):
        await registry.add(conn, ps.SCHEMA, DeviceKey(vin, RSA, vin.encode(), "admin"))
    for vin, days_ago in ((oldest, 3), (middle, 2), (newest, 1), ("LREVOKE0000000004", 0)):
        await conn.execute(
            f"UPDATE {ps.SCHEMA}.device_keys SET revoked_at = now() - make_interval(days => $2)"
            " WHERE vin = $1",
            vin,
            days_ago,
        )
    # revoked today, and given a new key since: not a revoked VIN
    await registry.add(conn, ps.SCHEMA, DeviceKey("LREVOKE0000000004", RSA, b"new", "admin"))
    assert await registry.revoked_vins(conn, ps.SCHEMA, 2) == {newest, middle}
    assert await registry.revoked_vins(conn, ps.SCHEMA, 10) == {newest, middle, oldest}
