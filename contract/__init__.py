"""The contract every layer builds on, and nothing else: the flat rows the decoders produce and
``storage`` and ``alerts`` consume (``contract.rows``), the entity kinds (``contract.kinds``) and
the frame clock's zone (``contract.clock``). It imports no other package of the project.
"""

from __future__ import annotations

from contract.clock import CHINA_TZ
from contract.kinds import ENTITY_KINDS, Decoded, EntityKind

__all__ = ["CHINA_TZ", "ENTITY_KINDS", "Decoded", "EntityKind"]
