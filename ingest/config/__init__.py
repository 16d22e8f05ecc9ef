"""Settings: the typed configuration object, its fields, loading and the generated reference.

``settings`` holds the sections and their keys, ``fields`` the ``setting()`` declarations and
masking, ``load`` the reading order (defaults < TOML < environment < ``--set``) and validation,
``docs`` the ``config show`` views and docs/configuration.md. The common names are re-exported
here.
"""

from __future__ import annotations

from ingest.config.settings import (
    ENTITY_KINDS,
    SECTIONS,
    AlertsSettings,
    KafkaSettings,
    LogSettings,
    MetricsSettings,
    PipelineSettings,
    PostgresSettings,
    Settings,
    StorageSettings,
)

# Re-exports ingest.config.settings' names (the package's pinned public API).
__all__ = [
    "ENTITY_KINDS",
    "SECTIONS",
    "AlertsSettings",
    "KafkaSettings",
    "LogSettings",
    "MetricsSettings",
    "PipelineSettings",
    "PostgresSettings",
    "Settings",
    "StorageSettings",
]
