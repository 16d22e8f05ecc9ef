"""``WorkerOptions``: the knobs of one pipeline worker, built from the settings."""

from __future__ import annotations

from dataclasses import dataclass

from ingest.pipeline.timewindow import TimeWindow

__all__ = ["WorkerOptions"]


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerOptions:
    """The knobs a worker uses. ``process.worker_options`` builds them from the settings, which
    are the one source of their defaults (``PipelineSettings``, ``KafkaSettings``): none of the
    settings-backed fields has a default here, so the two cannot disagree. Only the internal
    timings at the end, which are no settings, have defaults of their own."""

    group_id: str
    topics: tuple[str, ...]
    topic_kinds: dict[str, str]  # topic -> entity kind (metrics label)
    dlq_topic: str
    alerts_topic: str
    batch_max_frames: int
    linger_ms: int
    max_in_flight: int
    max_in_flight_bytes: int
    pause_after_s: float
    revoke_timeout_s: float
    shutdown_timeout_s: float
    lag_interval_s: float
    retry_backoff_max_s: float
    write_lanes: int  # per shard
    shards: int  # databases (storage.shards; 1 when none are listed): partition p -> p % shards
    window: TimeWindow | None  # frame times stored; None: every time
    max_record_bytes: int
    session_timeout_ms: int  # kafka's: bounds the assignment callback's reads
    # Internal timings (not settings).
    resume_ratio: float = 0.5  # resume the partitions when in-flight frames fall below this
    poll_timeout_ms: int = 500
    retry_backoff_initial_s: float = 0.25
