"""Fixtures shared by the pipeline's integration tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.pipeline_support import PipelineEnv, make_env


@pytest.fixture
async def env(
    kafka_bootstrap: str,
    fresh_database: str,
    unique_topic: Callable[..., str],
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> PipelineEnv:
    """A private topic, group and database for one run of the service (the shared dev stack's
    Kafka and PostgreSQL). A test module that needs another database overrides ``env``."""
    return await make_env(kafka_bootstrap, fresh_database, unique_topic, unique_name, tmp_path)
