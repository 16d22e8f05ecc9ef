"""The database side of the signature gate, one task per worker: load the key registry into
the gate's cache before the first batch, reload it every ``security.key_refresh_s``, fetch the
keys of VINs the gate missed, store the keys activations registered (one at a time: a key the
server refuses is let go of, the rest stay queued) and the flagged outcomes
(``signature_events``) about once a second. A reload that rotated or revoked a VIN's key makes
the gate verify that vehicle's frames again, whatever ``security.verify`` says, until one
verifies (``SignatureGate.untrust``).

The registry is shard 0's database (``storage.shards[0]``, or ``postgres.dsn`` unsharded):
one registry, whatever the partition's shard. Events are flags beside the stored rows, written
after them and outside their transaction; a worker that dies loses at most its last second of
events (the rows keep ``signature_missing``), and a redelivered frame's event is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import asyncpg
from prometheus_client import Counter

from ingest.pipeline.batch import Batched, TopicDecoder
from ingest.pipeline.closing import KEEPER_S, end_within
from ingest.pipeline.signatures import KeyCache, Policy, SignatureGate
from storage import keys as registry
from storage.connect import PoolParams, connect, probe

__all__ = ["Keeper", "gate_decoders", "run_with_keeper"]

log = logging.getLogger(__name__)

FLUSH_S: Final = 1.0
# SQLSTATE classes of an error about the row itself (22 data exception, 23 integrity
# constraint violation): that activation key is let go of; any other error leaves it queued.
_REFUSED_ROW: Final = frozenset({"22", "23"})
RETRY_S: Final = 5.0


def gate_decoders(
    decoders: dict[str, TopicDecoder], vehicle_topic: str, settings: Any, metrics: Any
) -> tuple[dict[str, TopicDecoder], SignatureGate | None]:
    """``decoders`` with the vehicle topic's wrapped in a ``SignatureGate``, and the gate when it
    needs keys (not with ``security.signatures = off``: then it passes the decoder's results
    on). Frames with an unreadable data unit are dead-lettered by every frame topic's decoder
    itself (``ingest.pipeline.unreadable``), gated or not."""
    sec = settings.security
    entry = decoders.get(vehicle_topic)
    if not isinstance(entry, Batched):
        return decoders, None
    counter = Counter(
        "signature_checks",
        "2025 frame signatures checked, by outcome (docs/security.md).",
        ("kind", "status"),
        namespace="nev_ingest",
        registry=metrics.registry,
    )
    cache = KeyCache(sec.key_cache_size)
    gate = SignatureGate(entry.decode, Policy.from_settings(sec), cache, counter)
    gated = {**decoders, vehicle_topic: Batched(gate)}
    return gated, (None if sec.signatures == "off" else gate)


class Keeper:
    """Keeps ``gate``'s keys in step with ``device_keys`` and writes what it collected."""

    def __init__(
        self,
        gate: SignatureGate,
        params: PoolParams,
        refresh_s: float,
        waiting: Callable[[bool], None] | None = None,
    ) -> None:
        self.gate = gate
        self.params = params
        self.refresh_s = refresh_s
        self.loaded = asyncio.Event()  # set once the registry is in the cache
        self._waiting = waiting

    def _attempted(self, connected: bool) -> None:
        """Until the registry is loaded the worker waits for it: each connection attempt is
        told to ``waiting`` (the worker's heartbeat and database gauges; see
        ``run_with_keeper``). Afterwards the worker's own loop reports."""
        if self._waiting is not None and not self.loaded.is_set():
            self._waiting(connected)

    async def run(self) -> None:
        """Until cancelled; a database that is down is retried (the gate keeps its cache)."""
        while True:
            try:
                server = await probe(self.params)
                conn = await connect(self.params, server=server)
            except Exception as exc:
                self._attempted(False)
                log.warning("signature keys: cannot connect (%s); retrying in %.0f s", exc, RETRY_S)
                await asyncio.sleep(RETRY_S)
                continue
            self._attempted(True)
            try:
                await self._serve(conn, single=server.max_connections == 1)
                return
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    # Its last flush, within the keeper's bound on the way out (KEEPER_S,
                    # run_with_keeper), leaving a second to close the connection.
                    await asyncio.wait_for(self.flush(conn), KEEPER_S - 1.0)
                raise
            except Exception as exc:
                log.warning("signature keys: %s; reconnecting in %.0f s", exc, RETRY_S)
                await asyncio.sleep(RETRY_S)
            finally:
                with contextlib.suppress(Exception):
                    await conn.close()

    async def _serve(self, conn: Any, *, single: bool) -> None:
        schema = self.params.schema
        while True:
            capacity = self.gate.cache.capacity
            keys = await registry.load(conn, schema, capacity)
            if len(keys) >= capacity:
                # Cut short (the newest keys; a fleet bigger than the cache): ask after the
                # cached VINs it left out, keys fetched after a miss, so that one still active
                # stays, a rotated one is replaced and a revoked one goes (revoked_vins is cut
                # short too), instead of every such vehicle being re-verified without a key.
                left = [v for v in self.gate.cache.vins() if v not in keys]
                keys |= await registry.active_keys(conn, schema, left)
            revoked = await registry.revoked_vins(conn, schema, capacity)
            # A vehicle whose key was rotated or revoked is verified again (under sample too):
            # its next frames may be signed with the old key.
            reload = self.gate.cache.replace_all(keys, revoked, complete=True)
            self.gate.untrust(reload.rotated)
            self.gate.untrust(reload.added, recheck=False)
            self.loaded.set()
            if single:
                # PGlite takes one connection, which the writer's pool needs: the registry is
                # loaded once, before the worker starts; no events or new keys are written
                # (the gate keeps activation keys in its cache alone, and queues nothing).
                self.gate.unstored()
                log.warning(
                    "signature keys: this database takes one connection; keys loaded once, "
                    "signature events and activation keys are not stored (use PostgreSQL)"
                )
                return
            due = time.monotonic() + self.refresh_s
            while time.monotonic() < due:
                await self.flush(conn)
                await asyncio.sleep(FLUSH_S)

    async def flush(self, conn: Any) -> None:
        """Store the gate's new keys and events; fetch the keys of the VINs it missed."""
        gate, schema = self.gate, self.params.schema
        while gate.new_keys:
            # One at a time, taken off the queue only once stored or refused: a lost connection
            # leaves the rest queued for the next flush.
            key = gate.new_keys[0]
            try:
                added, existing = await registry.add(conn, schema, key)
            except asyncpg.PostgresError as exc:
                if getattr(exc, "sqlstate", "")[:2] not in _REFUSED_ROW:
                    raise  # the server, not the row (a timeout, a read-only standby): kept
                gate.new_keys.pop(0)
                gate.refused(key.vin, f"{type(exc).__name__}: {exc}")
                continue
            gate.new_keys.pop(0)
            if added:
                gate.registered(key)
                continue
            if existing is None:  # the VIN's key was revoked meanwhile (registry.add)
                gate.cache.revoked.add(key.vin)
                gate.refused(key.vin, "its key was revoked; register a new one with keys add")
            else:
                gate.cache.put(existing.vin, existing.algorithm, existing.public_key)
                if (existing.algorithm, existing.public_key) != (key.algorithm, key.public_key):
                    gate.conflict(key.vin)  # which also untrusts it
        events, gate.events = gate.events, []
        await registry.record_events(conn, schema, events)
        misses, gate.cache.misses = gate.cache.misses, set()
        if misses:
            found = await registry.active_keys(conn, schema, misses)
            for key in found.values():
                if gate.cache.put(key.vin, key.algorithm, key.public_key):
                    gate.untrust((key.vin,), recheck=False)  # a missed VIN had no key cached
            gate.cache.absent |= misses - found.keys()


async def run_with_keeper(
    run: Callable[[asyncio.Event], Awaitable[None]],
    gate: SignatureGate | None,
    params: PoolParams,
    refresh_s: float,
    stop: asyncio.Event,
    waiting: Callable[[bool], None] | None = None,
) -> None:
    """``run(stop)`` (the worker) with a ``Keeper`` beside it when there is a gate. The worker
    starts once the registry is loaded, so that reject never judges with an empty cache;
    meanwhile ``waiting(connected)`` hears of each attempt to reach shard 0 (the registry's
    database), and a stop returns without starting the worker."""
    if gate is None:
        await run(stop)
        return
    keeper = Keeper(gate, params, refresh_s, waiting)
    task = asyncio.create_task(keeper.run(), name="signature-keys")
    try:
        waits = [asyncio.ensure_future(keeper.loaded.wait()), asyncio.ensure_future(stop.wait())]
        _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for p in pending:
            p.cancel()
        if not keeper.loaded.is_set():
            # Stopped while shard 0 was away: nothing was fetched, so nothing to flush. Running
            # the worker now would only try the database once more and fail the stop (exit 1).
            log.info("stopped while waiting for the key registry")
            return
        await run(stop)
    finally:
        # Bounded (its last flush and the connection's close, on cancel, can hang on a
        # database that does not answer): past KEEPER_S it is left behind, and the keys of
        # activation frames it had not stored by then are not registered (as past its flush's
        # own bound before).
        await end_within(task, "the signature-key keeper", KEEPER_S, reported=True)  # raised below
        failed = None if not task.done() or task.cancelled() else task.exception()
        if failed is not None:
            raise failed
