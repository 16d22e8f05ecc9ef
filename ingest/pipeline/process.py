"""Wiring: ``Settings`` -> a running worker process (uvloop, signals, Kafka clients, the sink).

This is the only pipeline module that reads ``Settings``; the worker, writer and batcher take
plain typed options.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import signal
import sys
import time
from typing import Any

from alerts import RuleFileError
from ingest.config import Settings
from ingest.errors import UserError
from ingest.pipeline.adapters import (
    decode_battery_batch,
    decode_charger_batch,
    decode_tcec_record,
    decode_vehicle_batch,
)
from ingest.pipeline.batch import Batched, TopicDecoder, WithHeaders
from ingest.pipeline.closing import LOOP_END_S, run_bounded
from ingest.pipeline.logs import configure_logging
from ingest.pipeline.metrics import PipelineMetrics
from ingest.pipeline.options import WorkerOptions
from ingest.pipeline.publish import PermanentKafkaError
from ingest.pipeline.shard_writers import ShardsUnreachable
from ingest.pipeline.signature_keeper import gate_decoders, run_with_keeper
from ingest.pipeline.sink import Sink
from ingest.pipeline.timewindow import time_window
from ingest.pipeline.worker import Worker
from ingest.wiring import kafka_client_options, shard_pool_params

__all__ = [
    "build_worker",
    "decoders_for",
    "raw_topic_keys",
    "time_window",
    "topic_kinds",
    "worker_options",
    "worker_process",
]

log = logging.getLogger(__name__)

# Raw source (``kafka.topic_<source>``, ``ingest.config.kafka_settings.RAW_SOURCES``) -> its
# decoder (``ingest.pipeline.adapters``). A source is consumed once its decoder is here. The
# frame topics decode a whole ``add`` call at once (one native call); T/CEC 102 pushes (JSON,
# few) one by one, with their headers.
DECODERS: dict[str, TopicDecoder] = {
    "vehicle": Batched(decode_vehicle_batch),
    "charger": Batched(decode_charger_batch),
    "tcec": WithHeaders(decode_tcec_record),
    "battery": Batched(decode_battery_batch),
}


def raw_topic_keys(settings: Settings) -> dict[str, str]:
    """Raw topic -> the setting that names it, for the sources that have a decoder."""
    k = settings.kafka
    return {getattr(k, f"topic_{s}"): f"kafka.topic_{s}" for s in DECODERS}


def decoders_for(settings: Settings) -> dict[str, TopicDecoder]:
    """Raw topic -> decoder, for the sources that have one (the topics the workers subscribe)."""
    k = settings.kafka
    return {getattr(k, f"topic_{s}"): decode for s, decode in DECODERS.items()}


def topic_kinds(settings: Settings) -> dict[str, str]:
    """Raw topic -> entity kind, for the topics the workers subscribe (a metrics label)."""
    kinds = settings.kafka.raw_topics()
    return {topic: kinds[topic] for topic in decoders_for(settings)}


def worker_options(settings: Settings) -> WorkerOptions:
    p, k = settings.pipeline, settings.kafka
    return WorkerOptions(
        group_id=k.group_id,
        topics=tuple(decoders_for(settings)),
        topic_kinds=topic_kinds(settings),
        dlq_topic=k.topic_dlq,
        alerts_topic=k.topic_alerts,
        batch_max_frames=p.batch_max_frames,
        linger_ms=p.batch_linger_ms,
        max_in_flight=max(p.max_in_flight_frames, p.batch_max_frames),
        max_in_flight_bytes=p.max_in_flight_bytes,
        pause_after_s=p.pause_after_s,
        revoke_timeout_s=p.revoke_timeout_s,
        shutdown_timeout_s=p.shutdown_timeout_s,
        lag_interval_s=p.lag_interval_s,
        retry_backoff_max_s=p.retry_backoff_max_s,
        write_lanes=p.write_lanes,
        shards=max(1, len(settings.storage.shards)),
        window=time_window(settings),
        max_record_bytes=k.max_record_bytes,
        session_timeout_ms=k.session_timeout_ms,
    )


def build_worker(
    settings: Settings,
    *,
    index: int = 0,
    metrics: PipelineMetrics,
    sink: Sink | None = None,
    decoders: dict[str, TopicDecoder] | None = None,
) -> Worker:
    """A worker wired to the configured Kafka and database (``sink`` overrides the latter)."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from ingest.pipeline.storage_sink import StorageSink

    k, p = settings.kafka, settings.pipeline
    client = kafka_client_options(k)
    client["client_id"] = f"{k.client_id}-w{index}"

    def make_consumer() -> Any:
        return AIOKafkaConsumer(
            **client,
            group_id=k.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=p.batch_max_frames,
            # Sizes and timeouts: see ingest/config/kafka_limits.py for how they must agree.
            max_partition_fetch_bytes=k.max_partition_fetch_bytes,
            fetch_max_bytes=k.fetch_max_bytes,
            session_timeout_ms=k.session_timeout_ms,
            heartbeat_interval_ms=k.heartbeat_interval_ms,
            rebalance_timeout_ms=k.rebalance_timeout_ms,
            max_poll_interval_ms=k.max_poll_interval_ms,
        )

    def make_producer() -> Any:
        return AIOKafkaProducer(
            **client,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_request_size=k.max_request_size,
        )

    return Worker(
        options=worker_options(settings),
        make_consumer=make_consumer,
        make_producer=make_producer,
        sink=sink if sink is not None else StorageSink.from_settings(settings, metrics=metrics),
        decoders=decoders if decoders is not None else decoders_for(settings),
        metrics=metrics,
    )


async def _run(index: int, settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_stop(sig: signal.Signals) -> None:
        if not stop.is_set():
            log.info("%s received: stop fetching, flush, commit, exit", sig.name)
            stop.set()

    metrics = PipelineMetrics()
    metrics.heartbeat.set(time.time())  # started; each step of the start stamps it again
    # Kafka not tried yet (the key registry and the sink's pools come first): neither reached
    # nor unreachable, so NevIngestKafkaUnreachable stays quiet while the database is awaited.
    metrics.kafka_connected.set(math.nan)
    decoders, gate = gate_decoders(
        decoders_for(settings), settings.kafka.topic_vehicle, settings, metrics
    )
    worker = build_worker(settings, index=index, metrics=metrics, decoders=decoders)
    # The cyclic garbage collector costs ~30 % of a worker's throughput (measured with
    # loadtest/bench_pipeline.py): every batch allocates ~100,000 objects, which trigger
    # collections that rescan everything in flight. Rows hold no reference cycles, so
    # reference counting frees them; what little cyclic garbage asyncio makes is collected on
    # a schedule by the housekeeping task instead (lag.LagReporter).
    gc.freeze()
    gc.disable()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_stop, sig)

    def on_hup() -> None:
        try:
            log.info("SIGHUP: %s", worker.sink.reload_rules())
        except Exception:
            log.exception("SIGHUP: rules not reloaded; the previous rules stay in force")

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    keys_db = shard_pool_params(settings, "nev-ingest-keys")[0]

    def waiting_for_keys(connected: bool) -> None:
        # The worker waits for the key registry (shard 0) before it starts: each attempt is
        # progress (not a stalled loop), and its outcome is what the database gauge knows.
        metrics.heartbeat.set(time.time())
        metrics.db_connected.set(1 if connected else 0)

    try:
        await run_with_keeper(
            worker.run, gate, keys_db, settings.security.key_refresh_s, stop, waiting_for_keys
        )
    finally:
        _ignore_hup(loop)


def _ignore_hup(loop: asyncio.AbstractEventLoop) -> None:
    """After the worker stopped, a reload (forwarded by the supervisor, or sent to the worker
    by hand) has nothing to do, but the loop's closing would restore SIGHUP's default action,
    which terminates: a stopped worker killed by a late SIGHUP exited -1 instead of 0. Blocked
    while the loop's handler is swapped for SIG_IGN, so none slips in between."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    try:
        loop.remove_signal_handler(signal.SIGHUP)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})


def worker_process(index: int, settings: Settings) -> None:
    """Entry point of a worker process (the supervisor spawns it). Exit 0 after a clean stop;
    1 on a failure, which the supervisor logs and restarts."""
    configure_logging(settings.log.level, static={"worker": index}, fmt=settings.log.format)
    import uvloop

    try:
        # Not uvloop.run: its end waits without a bound for every task still running to end
        # once cancelled, and an aiokafka task can swallow its cancellation (ingest.pipeline.
        # closing): the worker would hang there past the supervisor's stop deadline.
        run_bounded(
            _run(index, settings),
            grace_s=LOOP_END_S,
            loop_factory=uvloop.new_event_loop,
            what="worker",
        )
    except Exception as exc:
        known = _one_line_error(exc)
        if known is not None:
            log.error("worker stopped: %s", known)  # one line: the traceback adds nothing
        else:
            log.exception("worker failed")
        sys.exit(1)
    log.info("worker stopped")
    sys.exit(0)


def _one_line_error(exc: BaseException) -> BaseException | None:
    """The error in ``exc`` (the worker's task group wraps it) that says all by itself: a
    permanent Kafka error, a rule or models file the worker cannot load (its message names
    the file and the line), or no database answering (each named), if any."""
    if isinstance(exc, PermanentKafkaError | UserError | RuleFileError | ShardsUnreachable):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _one_line_error(inner)
            if found is not None:
                return found
    return None
