"""Entity kinds: the dimension every layer is keyed by (topics, decoders, tables, rules)."""

from __future__ import annotations

from typing import Final, Literal

__all__ = ["ENTITY_KINDS", "EntityKind"]

EntityKind = Literal["vehicle", "charger", "battery"]

# In the order configuration, docs and metrics list them.
ENTITY_KINDS: Final[tuple[EntityKind, ...]] = ("vehicle", "charger", "battery")
