"""``WorkerOptions`` and the settings cannot disagree on defaults: the settings are the one
source of every settings-backed knob (``WorkerOptions`` has no default for them) and
``process.worker_options`` carries each one through. Before, the worker had its own defaults
(20000 in-flight frames, 20 s shutdown) beside the settings' (50000, 30 s)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from ingest.config import KafkaSettings, PipelineSettings, Settings, StorageSettings
from ingest.pipeline.options import WorkerOptions
from ingest.pipeline.process import decoders_for, time_window, worker_options

pytestmark = pytest.mark.unit

# Timings of the worker's own that are no settings: the only fields with a default.
INTERNAL = {"resume_ratio", "poll_timeout_ms", "retry_backoff_initial_s"}

# Every other field and where its value comes from.
SOURCES: dict[str, Callable[[Settings], Any]] = {
    "group_id": lambda s: s.kafka.group_id,
    "topics": lambda s: tuple(decoders_for(s)),
    "topic_kinds": lambda s: {t: s.kafka.raw_topics()[t] for t in decoders_for(s)},
    "dlq_topic": lambda s: s.kafka.topic_dlq,
    "alerts_topic": lambda s: s.kafka.topic_alerts,
    "batch_max_frames": lambda s: s.pipeline.batch_max_frames,
    "linger_ms": lambda s: s.pipeline.batch_linger_ms,
    "max_in_flight": lambda s: s.pipeline.max_in_flight_frames,
    "max_in_flight_bytes": lambda s: s.pipeline.max_in_flight_bytes,
    "pause_after_s": lambda s: s.pipeline.pause_after_s,
    "revoke_timeout_s": lambda s: s.pipeline.revoke_timeout_s,
    "shutdown_timeout_s": lambda s: s.pipeline.shutdown_timeout_s,
    "lag_interval_s": lambda s: s.pipeline.lag_interval_s,
    "retry_backoff_max_s": lambda s: s.pipeline.retry_backoff_max_s,
    "write_lanes": lambda s: s.pipeline.write_lanes,
    "shards": lambda s: max(1, len(s.storage.shards)),
    "window": time_window,
    "max_record_bytes": lambda s: s.kafka.max_record_bytes,
    "session_timeout_ms": lambda s: s.kafka.session_timeout_ms,
}

# Every settings-backed knob away from its default (max_in_flight_frames stays above
# batch_max_frames: worker_options raises the bound to one full batch).
CHANGED = Settings(
    kafka=KafkaSettings(
        group_id="g2",
        topic_vehicle="v2",
        topic_dlq="d2",
        topic_alerts="a2",
        max_record_bytes=300_000,
        session_timeout_ms=45_000,
    ),
    pipeline=PipelineSettings(
        batch_max_frames=123,
        batch_linger_ms=45,
        max_in_flight_frames=6789,
        max_in_flight_bytes=3_000_000,
        pause_after_s=2.5,
        revoke_timeout_s=7.0,
        shutdown_timeout_s=11.0,
        lag_interval_s=3.5,
        retry_backoff_max_s=9.0,
        write_lanes=3,
        frame_max_future_s=60.0,
    ),
    storage=StorageSettings(retention_days=30, shards=("postgresql://a/nev", "postgresql://b/nev")),
)


def test_only_internal_timings_have_a_default() -> None:
    with_default = {
        f.name
        for f in dataclasses.fields(WorkerOptions)
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    }
    assert with_default == INTERNAL


def test_every_field_has_a_source() -> None:
    assert {f.name for f in dataclasses.fields(WorkerOptions)} == set(SOURCES) | INTERNAL


@pytest.mark.parametrize("settings", [Settings(), CHANGED], ids=["defaults", "changed"])
def test_worker_options_follow_the_settings(settings: Settings) -> None:
    options = worker_options(settings)
    for name, source in SOURCES.items():
        assert getattr(options, name) == source(settings), name


def test_the_changed_settings_change_every_knob() -> None:
    # Else the "changed" case above could pass with a knob that ignores its setting.
    default, changed = worker_options(Settings()), worker_options(CHANGED)
    assert [n for n in SOURCES if getattr(default, n) == getattr(changed, n)] == []


def test_the_issue_defaults_agree() -> None:
    options, pipeline = worker_options(Settings()), PipelineSettings()
    assert options.max_in_flight == pipeline.max_in_flight_frames == 50_000
    assert options.shutdown_timeout_s == pipeline.shutdown_timeout_s == 30.0
    assert options.revoke_timeout_s == pipeline.revoke_timeout_s
