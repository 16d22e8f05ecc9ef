"""GB/T 32960-2025 signature policy on the vehicle topic (docs/security.md, "Signatures").

``SignatureGate`` wraps the vehicle topic's batch decoder: after the native decode it picks the
frames to verify (``security.verify``), verifies them in one native call with the GIL released
(``nev_native.verify_frames``: RSA PKCS#1 v1.5 + SHA-256, SM2 with SM3), and applies
``security.signatures``:

- ``reject``: a frame whose signature does not verify, or whose VIN has no key, becomes a
  ``FrameError`` with reason ``bad_signature`` (detail ``invalid``, ``unknown_key`` or
  ``algorithm_mismatch``): the batch builder dead-letters it like any decoder reject, before
  the database, so no batch ever fails for it.
- ``flag``: every frame is stored; each bad outcome becomes a ``signature_events`` row.

In both, a 2025 real-time / reissue frame without a signature is stored and flagged (its row's
``signature_missing`` and an ``unsigned`` event), and a key that cannot be read is flagged,
never rejected. A signature typed ECC (its curve not named by the transcription) or a reserved
type, from a VIN whose registered key is SM2 or RSA, is ``algorithm_mismatch``. Activation
frames (0x09) register their key under trust on first use (``security.activation_keys =
tofu``) when their own signature verifies with it and the VIN's key was never revoked; under
``reject`` the key vouches for frames once the registry stored it. A key other than the VIN's
registered one is never taken (``key_conflict``: counted, logged, an event; an admin rotates
with ``nev-ingest keys add --replace``).

Whatever the policy (also ``off``), a frame whose data unit is encrypted (header byte 0x02-0x05)
becomes ``encrypted_unsupported``: the cipher mode is not known, and such a frame used to be
consumed without a row. So does one whose non-empty data unit is marked abnormal (0xFE),
invalid (0xFF) or with a reserved byte. The inner decoder does that
(``ingest.pipeline.unreadable``, on every frame topic): the gate never sees their rows.

Keys live in ``KeyCache`` (bounded, filled and refreshed by ``signature_keeper``).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any, Final, NamedTuple

import nev_native

from ingest.decoders.errors import BAD_SIGNATURE, FrameError
from ingest.pipeline.decoding import rows_limited
from storage.keys import DeviceKey

__all__ = ["KeyCache", "Policy", "Reload", "SignatureGate", "Status"]

log = logging.getLogger(__name__)

EDITION_2025: Final = b"$$"
SIGNED_COMMANDS: Final = frozenset({0x02, 0x03})
ACTIVATION: Final = 0x09
VIN: Final = slice(4, 21)


class Status(IntEnum):
    """``nev_native`` statuses (native/src/sig/mod.rs ``Status``)."""

    VALID = 0
    INVALID = 1
    UNSIGNED = 2
    UNKNOWN_KEY = 3
    BAD_KEY = 4
    UNSUPPORTED = 5
    ALGORITHM_MISMATCH = 6
    NOT_APPLICABLE = 7

    @property
    def label(self) -> str:
        return _LABELS[self]


# A status's metrics label and signature_events value, made once: the gate asks for it per
# frame, and an enum's ``name`` is a descriptor call.
_LABELS: Final = {s: s.name.lower() for s in Status}
_UNSIGNED: Final = _LABELS[Status.UNSIGNED]


# What reject dead-letters; the other bad outcomes are flagged whatever the policy.
REJECTED: Final = frozenset({Status.INVALID, Status.UNKNOWN_KEY, Status.ALGORITHM_MISMATCH})
KEY_CONFLICT: Final = "key_conflict"
KEY_REVOKED: Final = "key_revoked"


@dataclass(frozen=True, slots=True)
class Policy:
    """``[security]`` as the gate uses it."""

    signatures: str = "flag"  # off | flag | reject
    verify: str = "first_per_session"  # every | first_per_session | sample
    sample_per_mille: int = 10
    activation_keys: str = "tofu"  # tofu | admin_only

    @classmethod
    def from_settings(cls, security: Any) -> Policy:
        return cls(
            signatures=security.signatures,
            verify=security.verify,
            sample_per_mille=security.sample_per_mille,
            activation_keys=security.activation_keys,
        )


class KeyCache:
    """VIN -> (algorithm, key bytes), at most ``capacity`` (least recently used leave first).
    ``misses`` collects the VINs looked up without a key, for the keeper to fetch."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._keys: OrderedDict[str, tuple[int, bytes]] = OrderedDict()
        self.misses: set[str] = set()
        # VINs the keeper looked up and found no key for: not asked again until the next full
        # reload, so that a fleet without keys does not cost a query a second.
        self.absent: set[str] = set()
        # VINs whose key an admin revoked (and gave no new one): an activation re-registers
        # nothing for them, or a stolen key would come back with the next activation.
        self.revoked: set[str] = set()
        # The newest created_at of the last reload's keys: a key created after it is one added
        # since (`keys add`), which the next reload must cache even when the cache is full.
        self.loaded_until: datetime | None = None

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, vin: str) -> tuple[int, bytes] | None:
        key = self._keys.get(vin)
        if key is None:
            if vin not in self.absent and len(self.misses) < self.capacity:
                self.misses.add(vin)
            return None
        self._keys.move_to_end(vin)
        return key

    def put(self, vin: str, algorithm: int, public_key: bytes) -> bool:
        """Cache the VIN's key; returns whether it differs from the one cached (or none was)."""
        changed = self._keys.get(vin) != (algorithm, public_key)
        self._keys[vin] = (algorithm, public_key)
        self._keys.move_to_end(vin)
        self.absent.discard(vin)
        while len(self._keys) > self.capacity:
            self._keys.popitem(last=False)
        return changed

    def drop(self, vin: str) -> None:
        self._keys.pop(vin, None)

    def vins(self) -> list[str]:
        """The VINs with a key cached, least recently used first."""
        return list(self._keys)

    def replace_all(
        self,
        keys: dict[str, DeviceKey],
        revoked: set[str] | None = None,
        *,
        complete: bool | None = None,
    ) -> Reload:
        """Load ``keys`` (the registry's active keys) and ``revoked`` (the VINs whose key was
        revoked, without a new one); returns the VINs whose cached key changed or went away,
        and those that had none cached.

        ``complete``: whether ``keys`` holds every active key of the cached VINs (default: when
        it holds fewer than ``capacity``). The registry's load stops at ``capacity`` keys, the
        newest: a fleet bigger than that has cached keys, fetched after a miss, that it leaves
        out. Such a VIN keeps its key unless revoked; taking it for rotated dropped the key, and
        its frames, verified again, failed as unknown_key until it was fetched once more.
        A key created after the previous call's newest (added since) is cached even when the
        cache is full: it evicts the least recently used cached key."""
        self.revoked = set(revoked or ())
        if complete is None:
            complete = len(keys) < self.capacity
        rotated: set[str] = set()
        kept: OrderedDict[str, tuple[int, bytes]] = OrderedDict()
        for vin, cached in self._keys.items():
            key = keys.get(vin)
            if key is None:
                if complete or vin in self.revoked:
                    rotated.add(vin)
                else:
                    kept[vin] = cached
                continue
            now = (key.algorithm, key.public_key)
            if now != cached:
                rotated.add(vin)
            kept[vin] = now
        # Keys nobody asked for yet leave first, then the cached ones (in use), least recently
        # used first; keys added since the last reload leave last, newest last: with a full
        # cache (a fleet of key_cache_size or more) every key not cached is fresh, and a key
        # just added with `keys add`, put first, was evicted at every reload, so its vehicle's
        # first frames failed as unknown_key until the keeper fetched it after the miss.
        since = self.loaded_until
        fresh: OrderedDict[str, tuple[int, bytes]] = OrderedDict()
        new: list[tuple[datetime, str]] = []
        for vin, key in keys.items():
            if vin in self._keys:
                continue
            if key.created_at is not None and (since is None or key.created_at > since):
                new.append((key.created_at, vin))
            else:
                fresh[vin] = (key.algorithm, key.public_key)
        fresh.update(kept)
        new.sort(key=lambda n: n[0])  # the load comes newest first: timsort reverses it in O(n)
        fresh.update((v, (keys[v].algorithm, keys[v].public_key)) for _, v in new)
        stamps = (k.created_at for k in keys.values() if k.created_at is not None)
        self.loaded_until = max(stamps, default=since)
        self._keys = fresh
        self.absent.clear()
        while len(self._keys) > self.capacity:
            self._keys.popitem(last=False)
        # Only the keys that stayed: one evicted in the same call has nothing cached.
        added = {v for v in keys if v in self._keys and v not in kept}
        return Reload(rotated, added)


class Reload(NamedTuple):
    """What a ``KeyCache.replace_all`` changed."""

    rotated: set[str]  # VINs whose cached key was replaced or went away (revoked)
    # VINs that had no cached key (the first load adds every one): nothing to re-verify.
    added: set[str]


# (vin, frame time, received_at, status): a signature_events row.
Event = tuple[str, datetime, datetime, str]
# One event per (VIN, status) per this many ms of receive time: a fleet without keys or
# signatures must not write a row per frame (the metric counts every frame; the telemetry rows
# carry signature_missing).
EVENT_EVERY_MS: Final = 60_000


class SignatureGate:
    """The vehicle topic's batch decoder with the signature policy applied (see the module)."""

    def __init__(
        self, inner: Any, policy: Policy, cache: KeyCache, counter: Any | None = None
    ) -> None:
        self._inner = inner
        # The gate returns the inner decoder's rows or an error: they are within the row
        # limits exactly when the inner decoder's are (ingest.pipeline.decoding.rows_limited).
        self.rows_limited: bool = rows_limited(inner)
        self.policy = policy
        self.cache = cache
        self._counter = counter  # nev_ingest_signature_checks_total{kind,status}, or None
        # Counted per call, added to the counter once per status at its end: a labelled
        # multiprocess counter costs ~1 µs an increment, 5 % of a worker's CPU when a fleet's
        # every 2025 frame comes unsigned (py-spy of loadtest.bench_pipeline).
        self._counts: dict[str, int] = {}
        self._trusted: set[str] = set()  # VINs verified this session (first_per_session)
        # VINs whose key was rotated or revoked (``untrust``): verified whatever ``verify``
        # says (under sample too) until a frame of theirs verifies. Usually empty: the hot
        # path looks a VIN up only when it is not.
        self._recheck: set[str] = set()
        self._acc = 0  # sampling accumulator: one frame in 1000 / sample_per_mille
        self.events: list[Event] = []
        self._last_event: dict[tuple[str, str], int] = {}  # (vin, status) -> received ms
        self.new_keys: list[DeviceKey] = []
        self._stored = True  # activation keys go to the registry (not on PGlite: unstored)

    def __call__(self, values: Sequence[bytes], received_ms: Sequence[int]) -> list[Any]:
        try:
            return self._gate(values, received_ms)
        finally:
            self._flush_counts()

    def _gate(self, values: Sequence[bytes], received_ms: Sequence[int]) -> list[Any]:
        results = list(self._inner(values, received_ms))
        if self.policy.signatures == "off":
            return results
        picked: list[int] = []
        keys: list[tuple[int, bytes] | None] = []
        # Unsigned frames (a fleet without signatures: every 2025 frame) are counted here and
        # added to the counts once, as ``_note`` would one by one; their events go as its do.
        unsigned = 0
        event = self._event
        try:
            for i, value in enumerate(values):
                rows = results[i]
                if value[:2] != EDITION_2025 or isinstance(rows, BaseException) or rows is None:
                    continue
                command = value[2]
                if command == ACTIVATION:
                    results[i] = self._activation(value, rows, received_ms[i])
                elif command in SIGNED_COMMANDS and not getattr(rows, "encrypted", False):
                    if getattr(rows, "signature_missing", False):
                        unsigned += 1
                        event(rows.vin, rows, received_ms[i], _UNSIGNED)
                        continue
                    vin = rows.vin
                    if self._wanted(vin):
                        picked.append(i)
                        keys.append(self.cache.get(vin))
        finally:
            if unsigned:
                self._counts[_UNSIGNED] = self._counts.get(_UNSIGNED, 0) + unsigned
        if picked:
            statuses = nev_native.verify_frames([values[i] for i in picked], keys)
            for i, code in zip(picked, statuses, strict=True):
                results[i] = self._judge(results[i], received_ms[i], Status(code))
        return results

    def _wanted(self, vin: str) -> bool:
        """Whether to verify this vehicle's frame under ``security.verify``."""
        p = self.policy
        if p.verify == "every" or (p.verify == "first_per_session" and vin not in self._trusted):
            return True
        if self._recheck and vin in self._recheck:
            return True
        self._acc += p.sample_per_mille
        if self._acc >= 1000:
            self._acc -= 1000
            return True
        return False

    def _judge(self, rows: Any, received: int, status: Status) -> Any:
        vin = rows.vin
        if status is Status.VALID:
            if len(self._trusted) >= self.cache.capacity:
                self._trusted.clear()  # bounded: vehicles are simply verified again
            self._trusted.add(vin)
            self._recheck.discard(vin)
            self._count(status)
            return rows
        self._trusted.discard(vin)
        if status is Status.NOT_APPLICABLE:
            return rows
        if self.policy.signatures == "reject" and status in REJECTED:
            self._count(status)
            detail = f"{status.label}: VIN {vin}"
            if status is Status.UNKNOWN_KEY:
                detail += " has no key; register it with nev-ingest keys add"
            return FrameError(BAD_SIGNATURE, 0, detail)
        self._note(rows, received, status)
        return rows

    def _activation(self, value: bytes, rows: Any, received: int) -> Any:
        """Register, confirm or refuse the key an activation carries (see the module)."""
        found = nev_native.activation_key(value)
        vin = value[VIN].decode("ascii", "replace")
        if found is None:
            return rows
        chip, algorithm, key, code = found
        status = Status(code)
        if status is not Status.VALID:
            if self.policy.signatures == "reject":
                self._count(status)
                return FrameError(BAD_SIGNATURE, 0, f"activation {status.label}: VIN {vin}")
            self._note(rows, received, status, vin)
            return rows
        known = self.cache.get(vin)
        if known == (algorithm, key):
            self._count(status)
            return rows
        if known is not None:
            self._conflict(rows, received, vin)
            return rows
        if self.policy.activation_keys != "tofu":
            self._note(rows, received, Status.UNKNOWN_KEY, vin)
            return rows
        if vin in self.cache.revoked:
            # Trust on first use only: after a revocation the next key comes from an admin.
            log.warning(
                "activation of VIN %s after its key was revoked: not taken; register the "
                "vehicle's new key with nev-ingest keys add",
                vin,
            )
            self._count_label(KEY_REVOKED)
            self._event(vin, rows, received, KEY_REVOKED)
            return rows
        if self.policy.signatures != "reject":
            # flag stores every frame anyway: the key vouches for the next frames at once.
            # Under reject it vouches only once the registry stored it (``registered``, about
            # a second later): the cache may not know a key an admin registered meanwhile, or
            # a revocation, and a stranger's key must not get frames past reject in between.
            self.cache.put(vin, algorithm, key)
        self.cache.misses.discard(vin)
        # A chip id shorter than 16 bytes comes NUL-padded; PostgreSQL text takes no NUL.
        chip_id = chip.decode("ascii", "replace").replace("\0", "").strip()
        if self._stored:
            self.new_keys.append(DeviceKey(vin, algorithm, key, "activation", chip_id))
        log.info("activation key of VIN %s (chip %s) taken on first use", vin, chip_id)
        self._count(status)
        return rows

    def unstored(self) -> None:
        """No registry takes activation keys or events (PGlite's one connection): nothing is
        queued for a keeper that does not flush. Under reject an activation's key then never
        vouches (nothing would store it; the cache, loaded once, may miss a registered key)."""
        self._stored = False
        self.new_keys.clear()
        self.events.clear()

    def registered(self, key: DeviceKey) -> None:
        """The registry stored an activation's key (the keeper): it vouches for frames now."""
        self.cache.put(key.vin, key.algorithm, key.public_key)

    def untrust(self, vins: Iterable[str], *, recheck: bool = True) -> None:
        """These VINs' keys were rotated or revoked: their frames are verified whatever
        ``security.verify`` says (under ``sample`` too, not only a vehicle trusted under
        ``first_per_session``) until one verifies, as frames signed with the old key may
        follow. ``recheck=False``: a key that merely came (none was cached); the VIN is only
        no longer trusted for the session."""
        vins = set(vins)
        self._trusted.difference_update(vins)
        if recheck and vins:
            self._recheck.update(vins)
            if len(self._recheck) > self.cache.capacity:
                # Bounded like _trusted: VINs revoked for good (never verifying) pile up.
                self._recheck = vins

    def refused(self, vin: str, why: str) -> None:
        """The registry refused the activation key registered for ``vin`` (the keeper): it is
        no longer trusted, and frames signed with it fail again."""
        self.cache.drop(vin)
        self._trusted.discard(vin)
        log.warning("activation key of VIN %s not stored (%s); not trusted", vin, why)

    def conflict(self, vin: str) -> None:
        """A registration the database refused: the VIN had another key (the keeper)."""
        self._trusted.discard(vin)
        log.warning(
            "activation of VIN %s carries a key other than its registered one; not taken: "
            "check the vehicle, then rotate with nev-ingest keys add --replace",
            vin,
        )
        if self._counter is not None:
            self._counter.labels("vehicle", KEY_CONFLICT).inc()

    def _conflict(self, rows: Any, received: int, vin: str) -> None:
        self.conflict(vin)
        self._event(vin, rows, received, KEY_CONFLICT)

    def _note(self, rows: Any, received: int, status: Status, vin: str | None = None) -> None:
        self._count(status)
        self._event(vin or rows.vin, rows, received, status.label)

    def _count(self, status: Status) -> None:
        self._count_label(status.label)

    def _count_label(self, label: str) -> None:
        self._counts[label] = self._counts.get(label, 0) + 1

    def _flush_counts(self) -> None:
        if self._counts:
            if self._counter is not None:
                for label, n in self._counts.items():
                    self._counter.labels("vehicle", label).inc(n)
            self._counts.clear()

    def _event(self, vin: str, rows: Any, received: int, status: str) -> None:
        if not self._stored:
            return  # nothing writes them (``unstored``): the metric still counts each outcome
        last = self._last_event.get((vin, status))
        if last is not None and 0 <= received - last < EVENT_EVERY_MS:
            return
        if len(self._last_event) >= self.cache.capacity:
            self._last_event.clear()  # bounded: at worst an extra event per vehicle
        self._last_event[(vin, status)] = received
        at = datetime.fromtimestamp(received / 1000, UTC)
        ts_ms = getattr(rows, "ts_ms", None)
        ts = at if ts_ms is None else datetime.fromtimestamp(ts_ms / 1000, UTC)
        self.events.append((vin, ts, at, status))
