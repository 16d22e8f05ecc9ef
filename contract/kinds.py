"""Entity kinds: the dimension every layer is keyed by (topics, decoders, tables, rules)."""

from __future__ import annotations

from typing import Final, Literal, TypeAlias

from contract.battery import PackFrameRows
from contract.charger import ChargerRows
from contract.rows import FrameRows

__all__ = ["ENTITY_KINDS", "Decoded", "EntityKind"]

EntityKind = Literal["vehicle", "charger", "battery"]

# In the order configuration, docs and metrics list them.
ENTITY_KINDS: Final[tuple[EntityKind, ...]] = ("vehicle", "charger", "battery")

# What one raw record decodes to, by kind: a vehicle frame, a charger frame or T/CEC 102 push,
# a standalone pack frame. Each carries ``ts_ms`` (epoch ms, None without a frame time) and
# ``command``; a batch (ingest.pipeline.batch) mixes them when it spans several topics.
Decoded: TypeAlias = FrameRows | ChargerRows | PackFrameRows
