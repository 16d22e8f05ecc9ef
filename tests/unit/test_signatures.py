"""GB/T 32960-2025 signatures: the native verifier against OpenSSL-made keys and signatures,
the public vectors, and the pipeline's signature gate (reject / flag, verify modes, activation
trust on first use, key conflicts)."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nev_native
import pytest

from devtools.sim.envelope import frame, reseal
from devtools.sim.signing import RSA, SM2, SigningKey, activation, make_key, realtime
from ingest.config.load import load_settings
from ingest.decoders.errors import BAD_SIGNATURE, ENCRYPTED_UNSUPPORTED, FrameError
from ingest.pipeline.adapters import decode_vehicle_batch
from ingest.pipeline.signatures import KeyCache, Policy, Reload, SignatureGate, Status
from storage.keys import DeviceKey

pytestmark = pytest.mark.unit

VIN = "LSIGTEST000000001"
GOLDEN = Path(__file__).parent.parent / "golden" / "vectors.jsonl"


@pytest.fixture(scope="module", params=[RSA, SM2], ids=["rsa", "sm2"])
def key(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    return make_key(tmp_path_factory.mktemp("keys"), request.param)


@pytest.fixture(scope="module")
def other(key: SigningKey, tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    return make_key(tmp_path_factory.mktemp("other"), key.algorithm, "other")


def now_ms() -> int:
    return int(time.time() * 1000)


def gate(policy: Policy, keys: dict[str, SigningKey] | None = None) -> SignatureGate:
    cache = KeyCache(1000)
    for vin, k in (keys or {}).items():
        cache.put(vin, k.algorithm, k.raw)
    return SignatureGate(decode_vehicle_batch, policy, cache)


def run(g: SignatureGate, frames: Sequence[bytes]) -> list[Any]:
    return g(list(frames), [now_ms()] * len(frames))


def test_openssl_signatures_verify_in_every_key_format(key: SigningKey) -> None:
    r, s = key.sign(b"message")
    for form in (key.raw, key.public_pem):
        assert (
            nev_native.verify_signature(key.algorithm, form, key.algorithm, b"message", r, s) == 0
        )
        assert (
            nev_native.verify_signature(key.algorithm, form, key.algorithm, b"messagE", r, s) == 1
        )
    nev_native.check_key(key.algorithm, key.public_pem)
    with pytest.raises(ValueError, match="give"):
        nev_native.check_key(key.algorithm, b"\x01\x02\x03")


def test_the_public_2025_vectors() -> None:
    """rtm_con's activation (git-history form, 0xFF before Table 8) verifies with the key it
    carries; its real-time frames (another VIN) do not verify with that key: they were signed
    by rtm_con's test key, not by this vehicle's."""
    vectors = [json.loads(line) for line in GOLDEN.read_text().splitlines() if line.strip()]
    frames = [bytes.fromhex(v["hex"]) for v in vectors if v["hex"].upper().startswith("2424")]
    activations = [f for f in frames if f[2] == 0x09]
    found = [nev_native.activation_key(f) for f in activations]
    statuses = sorted(x[3] for x in found if x is not None)
    assert statuses == [Status.VALID, Status.INVALID]  # the current form is signed by another key
    (valid,) = [x for x in found if x is not None and x[3] == Status.VALID]
    assert valid[0] == b"1234567812345678" and valid[1] == RSA and len(valid[2]) == 259
    signed = [
        f
        for f in frames
        if f[2] in (2, 3) and nev_native.verify_frames([f], [None])[0] == Status.UNKNOWN_KEY
    ]
    assert len(signed) >= 6
    statuses_rt = list(nev_native.verify_frames(signed, [(RSA, valid[2])] * len(signed)))
    # The RSA-signed frames fail with this key; the short ones carry SM2-typed placeholders.
    assert statuses_rt.count(Status.INVALID) == 8
    assert set(statuses_rt) == {Status.INVALID, Status.ALGORITHM_MISMATCH}


def test_reject_dead_letters_forged_and_unknown_key_frames(
    key: SigningKey, other: SigningKey
) -> None:
    g = gate(Policy(signatures="reject", verify="every"), {VIN: key})
    t = now_ms()
    good, forged = realtime(VIN, t, key), realtime(VIN, t, key, forge=True)
    by_other = realtime(VIN, t, other)
    unknown = realtime("LSIGTEST000000002", t, key)
    unsigned = realtime(VIN, t, None)
    out = run(g, [good, forged, by_other, unknown, unsigned])
    assert not isinstance(out[0], BaseException) and out[0].vin == VIN
    for bad, detail in ((out[1], "invalid"), (out[2], "invalid"), (out[3], "unknown_key")):
        assert isinstance(bad, FrameError) and bad.reason == BAD_SIGNATURE
        assert detail in str(bad)
    # Unsigned: stored, its row flagged, and an event.
    assert not isinstance(out[4], BaseException) and out[4].signature_missing
    assert [e[3] for e in g.events] == ["unsigned"]


def test_reject_dead_letters_a_signature_typed_other_than_the_vehicles_key(
    key: SigningKey,
) -> None:
    # The registry holds SM2 and RSA keys: a frame claiming ECC (0x03, never checked) or a
    # reserved type cannot be vouched for by the vehicle's key, and must not get past reject.
    g = gate(Policy(signatures="reject", verify="every"), {VIN: key})
    t = now_ms()
    claims = [0x03, 0x00, 0x07, 0xFF, SM2 if key.algorithm == RSA else RSA]
    out = run(g, [realtime(VIN, t + i, key, claim=c) for i, c in enumerate(claims)])
    for bad in out:
        assert isinstance(bad, FrameError) and bad.reason == BAD_SIGNATURE
        assert "algorithm_mismatch" in str(bad)


def test_flag_stores_everything_and_records_events(key: SigningKey) -> None:
    g = gate(Policy(signatures="flag", verify="every"), {VIN: key})
    t = now_ms()
    frames = [
        realtime(VIN, t, key),
        realtime(VIN, t, key, forge=True),
        realtime("LSIGTEST000000002", t, key),
    ]
    out = run(g, frames)
    assert not any(isinstance(r, BaseException) for r in out)
    assert [(e[0], e[3]) for e in g.events] == [
        (VIN, "invalid"),
        ("LSIGTEST000000002", "unknown_key"),
    ]
    assert g.cache.misses == {"LSIGTEST000000002"}  # the keeper looks it up


def test_off_checks_nothing(key: SigningKey) -> None:
    g = gate(Policy(signatures="off"), {})
    out = run(g, [realtime(VIN, now_ms(), key, forge=True)])
    assert not isinstance(out[0], BaseException) and not g.events


def test_first_per_session_verifies_a_vehicle_once_then_samples(key: SigningKey) -> None:
    g = gate(
        Policy(signatures="reject", verify="first_per_session", sample_per_mille=0), {VIN: key}
    )
    t = now_ms()
    forged = realtime(VIN, t, key, forge=True)
    assert isinstance(run(g, [forged])[0], FrameError)  # not trusted yet: verified
    assert not isinstance(run(g, [realtime(VIN, t, key)])[0], BaseException)
    # Trusted for this session: with no sampling the next frames are not verified (the cost
    # the policy saves, and what it gives up: docs/security.md).
    assert not isinstance(run(g, [forged])[0], BaseException)
    every = gate(Policy(signatures="reject", verify="sample", sample_per_mille=1000), {VIN: key})
    assert isinstance(run(every, [forged])[0], FrameError)


def test_sampling_picks_the_configured_share(key: SigningKey) -> None:
    g = gate(Policy(signatures="reject", verify="sample", sample_per_mille=250), {VIN: key})
    forged = realtime(VIN, now_ms(), key, forge=True)
    out = run(g, [forged] * 40)
    assert sum(isinstance(r, FrameError) for r in out) == 10


@pytest.mark.parametrize("verify", ["sample", "first_per_session"])
def test_a_rotated_or_revoked_key_is_verified_until_a_frame_verifies(
    key: SigningKey, verify: str
) -> None:
    g = gate(Policy(signatures="reject", verify=verify, sample_per_mille=0), {VIN: key})
    t = now_ms()
    forged = realtime(VIN, t, key, forge=True)
    run(g, [realtime(VIN, t, key)])  # verified under first_per_session: trusted
    assert not isinstance(run(g, [forged])[0], BaseException)  # not sampled
    g.untrust([VIN], recheck=False)  # a key that merely came: sample goes on sampling
    assert isinstance(run(g, [forged])[0], FrameError) is (verify == "first_per_session")
    run(g, [realtime(VIN, t, key)])
    g.untrust([VIN])  # a reload found it rotated or revoked: whatever the policy
    assert [isinstance(r, FrameError) for r in run(g, [forged, forged])] == [True, True]
    assert not isinstance(run(g, [realtime(VIN, t, key)])[0], BaseException)
    assert not isinstance(run(g, [forged])[0], BaseException)  # verified: back to the policy


def test_a_load_cut_short_at_capacity_keeps_the_cached_keys_it_left_out(key: SigningKey) -> None:
    # A fleet bigger than the cache: the registry's load (the newest `capacity` keys) leaves
    # out keys fetched after a miss. Taken for rotated, they were dropped and their vehicles
    # re-verified without a key: every frame unknown_key, dead-lettered under reject.
    a, b, c = (f"LSIGTEST00000000{i}" for i in (1, 2, 3))
    cache = KeyCache(2)
    k = DeviceKey(a, key.algorithm, key.raw, "admin")
    newest = {v: DeviceKey(v, key.algorithm, key.raw, "admin") for v in (a, b)}
    cache.replace_all(newest)
    cache.put(c, key.algorithm, key.raw)  # fetched after a miss; a (least used) leaves
    policy = Policy(signatures="reject", verify="sample", sample_per_mille=0)
    g = SignatureGate(decode_vehicle_batch, policy, cache)
    reload = cache.replace_all(newest)
    g.untrust(reload.rotated)
    # a, not cached before, was evicted in the same call: not added (it has nothing cached).
    assert reload.rotated == set() and reload.added == set() and a not in cache.vins()
    assert cache.get(c) == (key.algorithm, key.raw)
    out = run(g, [realtime(c, now_ms() + i * 1000, key) for i in range(5)])
    assert not any(isinstance(r, BaseException) for r in out)
    # Left out and revoked: gone. Present with other bytes: rotated.
    assert cache.replace_all(newest, {c}).rotated == {c} and cache.get(c) is None
    other = {**newest, b: DeviceKey(b, key.algorithm, key.raw + b"x", "admin")}
    assert cache.replace_all(other).rotated == {b}
    # A complete load (fewer keys than the cache holds) says a missing key is gone.
    cache.put(c, key.algorithm, key.raw)
    assert cache.replace_all({a: k}).rotated == {b, c} and cache.get(c) is None


def test_a_key_added_since_the_last_reload_is_cached_though_the_cache_is_full(
    key: SigningKey,
) -> None:
    # A fleet of key_cache_size keys or more fills the cache at the first load; every later
    # load's keys not cached were put before the cached ones and evicted first, a key just
    # added with `keys add` among them: its vehicle's first frames were unknown_key
    # (dead-lettered under reject) at every reload.
    a, b, c, new = (f"LSIGTEST00000000{i}" for i in (1, 2, 3, 4))
    t = datetime(2026, 1, 1, tzinfo=UTC)
    registry = {
        v: DeviceKey(v, key.algorithm, key.raw, "admin", created_at=t + timedelta(minutes=i))
        for i, v in enumerate((a, b, c))
    }
    cache = KeyCache(2)

    def reload() -> Reload:  # what the keeper does: the newest `capacity` keys, then the
        # active keys of the cached VINs that load left out
        newest = sorted(registry.values(), key=lambda k: k.created_at or t, reverse=True)
        keys = {k.vin: k for k in newest[: cache.capacity]}
        keys |= {v: registry[v] for v in cache.vins() if v not in keys and v in registry}
        return cache.replace_all(keys, set(), complete=True)

    assert reload().added == {b, c}
    assert reload().added == set()
    registry[new] = DeviceKey(new, key.algorithm, key.raw, "admin", created_at=t + timedelta(1))
    loaded = reload()  # the next reload, key_refresh_s after `keys add`
    assert loaded.added == {new} and loaded.rotated == set()
    assert cache.vins() == [c, new]  # b, the least recently used, left
    g = SignatureGate(decode_vehicle_batch, Policy(signatures="reject"), cache)
    out = run(g, [realtime(new, now_ms(), key)])
    assert not isinstance(out[0], BaseException), out
    # An older key not cached (not added since) evicts no cached one, and is not added.
    assert cache.replace_all({new: registry[new], a: registry[a]}, set()).added == set()
    assert cache.vins() == [c, new]


def test_activation_registers_a_key_on_first_use_and_the_next_frames_verify(
    key: SigningKey,
) -> None:
    g = gate(Policy(signatures="reject", verify="every"))
    t = now_ms()
    assert isinstance(run(g, [realtime(VIN, t, key)])[0], FrameError)  # no key yet
    act, early = run(g, [activation(VIN, t, key), realtime(VIN, t, key)])
    assert not isinstance(act, BaseException)
    # Under reject the key vouches only once the registry stored it (the keeper, ~1 s)
    assert isinstance(early, FrameError) and "unknown_key" in str(early)
    stored = DeviceKey(VIN, key.algorithm, key.raw, "activation", "CHIPTEST00000001")
    assert g.new_keys == [stored]
    g.registered(stored)
    out = run(g, [realtime(VIN, t + 1000, key), realtime(VIN, t + 1000, key, forge=True)])
    assert not isinstance(out[0], BaseException)
    assert isinstance(out[1], FrameError)


def test_under_flag_an_activation_key_vouches_at_once(key: SigningKey) -> None:
    g = gate(Policy(signatures="flag", verify="every"))
    t = now_ms()
    run(g, [activation(VIN, t, key), realtime(VIN, t, key)])
    assert [e[3] for e in g.events] == []  # the frame after the activation verified


def test_an_activation_with_another_key_is_not_taken(key: SigningKey, other: SigningKey) -> None:
    g = gate(Policy(signatures="flag", verify="every"), {VIN: key})
    out = run(g, [activation(VIN, now_ms(), other)])
    assert not isinstance(out[0], BaseException)
    assert g.cache.get(VIN) == (key.algorithm, key.raw) and not g.new_keys
    assert [e[3] for e in g.events] == ["key_conflict"]


def test_admin_only_registers_nothing(key: SigningKey) -> None:
    g = gate(Policy(signatures="flag", activation_keys="admin_only"))
    run(g, [activation(VIN, now_ms(), key)])
    assert g.cache.get(VIN) is None and not g.new_keys
    assert [e[3] for e in g.events] == ["unknown_key"]


def test_a_forged_activation_registers_nothing(key: SigningKey) -> None:
    raw = bytearray(activation(VIN, now_ms(), key))
    raw[30] ^= 0x01  # inside the chip id: signed
    raw[-1] = 0
    g = gate(Policy(signatures="reject", verify="every"))
    (out,) = run(g, [reseal(raw)])
    assert isinstance(out, FrameError) and out.reason == BAD_SIGNATURE
    assert not g.new_keys


def test_arbitrary_records_never_raise(key: SigningKey) -> None:
    """Random bytes and mutated signed frames through the gate: a result per record, no
    exception (a panic would be a PanicException here)."""
    rng = random.Random(7)
    good = [realtime(VIN, now_ms(), key), activation(VIN, now_ms(), key)]
    g = gate(Policy(signatures="reject", verify="every"), {VIN: key})
    for _ in range(300):
        values = []
        for base in good:
            m = bytearray(base)
            for _ in range(rng.randint(1, 4)):
                m[rng.randrange(len(m))] = rng.randrange(256)
            values.append(bytes(m))
        values.append(b"$$" + rng.randbytes(rng.randrange(40)))
        out = run(g, values)
        assert len(out) == len(values)


def test_security_settings_defaults_and_environment() -> None:
    s = load_settings(environ={}).security
    assert (s.signatures, s.verify, s.activation_keys) == ("flag", "first_per_session", "tofu")
    env = {"NEV_SECURITY_SIGNATURES": "reject", "NEV_SECURITY_VERIFY": "every"}
    s = load_settings(environ=env).security
    assert (s.signatures, s.verify) == ("reject", "every")


def test_encrypted_data_units_are_dead_lettered_whatever_the_policy(key: SigningKey) -> None:
    for policy in (Policy(signatures="off"), Policy(signatures="reject")):
        g = gate(policy, {VIN: key})
        values = [frame(2025, 0x02, VIN, b"\x12" * 40, encryption=e) for e in (0x03, 0x05, 0x01)]
        out = run(g, values)
        assert [getattr(r, "reason", None) for r in out[:2]] == [ENCRYPTED_UNSUPPORTED] * 2
        assert "AES-128" in str(out[0]) and "SM4" in str(out[1])
        assert not isinstance(out[2], FrameError) or out[2].reason != ENCRYPTED_UNSUPPORTED


@pytest.mark.parametrize("edition", [2016, 2025])
def test_a_data_unit_marked_abnormal_invalid_or_reserved_is_dead_lettered(edition: int) -> None:
    # The decoder keeps such a unit opaque (no vehicle row): consumed silently, its data would
    # be lost. An empty unit (a heartbeat) loses nothing and stays.
    g = gate(Policy(signatures="flag"))
    marks = (0xFE, 0xFF, 0x00, 0x7F)
    values = [frame(edition, 0x02, VIN, b"\x12" * 40, encryption=e) for e in marks]
    values.append(frame(edition, 0x07, VIN, b"", encryption=0xFE))
    out = run(g, values)
    for bad, mark in zip(out, marks, strict=False):
        assert isinstance(bad, FrameError) and bad.reason == ENCRYPTED_UNSUPPORTED
        assert f"encryption byte {mark:#04x}" in str(bad)
    assert "(abnormal)" in str(out[0]) and "(invalid)" in str(out[1])
    assert not isinstance(out[-1], BaseException)


def test_a_fleet_without_keys_or_signatures_writes_an_event_per_vehicle_not_per_frame(
    key: SigningKey,
) -> None:
    g = gate(Policy(signatures="flag", verify="every"))
    t = now_ms()
    frames = [realtime(VIN, t + i, key) for i in range(5)] + [
        realtime("LSIGNONE000000001", t, None)
    ] * 5
    out = g(frames, [t + i for i in range(len(frames))])
    assert not any(isinstance(r, BaseException) for r in out)
    assert sorted(e[3] for e in g.events) == ["unknown_key", "unsigned"]
    # The keeper found no key for the VIN: it is not looked up again until the next reload.
    g.cache.misses.clear()
    g.cache.absent.add(VIN)
    run(g, [realtime(VIN, t, key)])
    assert g.cache.misses == set()


def test_without_a_registry_to_store_them_nothing_is_queued_and_reject_holds(
    key: SigningKey,
) -> None:
    # PGlite's one connection: the keeper loads the keys once and never flushes, so neither
    # keys nor events may pile up; under reject an activation's key vouches for nothing
    g = gate(Policy(signatures="reject", verify="every"))
    g.unstored()
    t = now_ms()
    for n in range(3):
        act, frame = run(g, [activation(VIN, t + n, key), realtime(VIN, t + n, key)])
        assert not isinstance(act, BaseException)
        assert isinstance(frame, FrameError) and "unknown_key" in str(frame)
    flag = gate(Policy(signatures="flag", verify="every"))
    flag.unstored()
    for n in range(3):
        run(flag, [realtime(f"LSIGNONE00000000{n}", t + n * 61_000, None)])
    assert g.new_keys == [] and flag.events == []
