"""The names of the database roles and what reconciling them changed (storage.roles)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from storage.params import check_identifier

__all__ = ["PRIVATE_TABLES", "RoleNames", "RolesReport"]

# The service's bookkeeping and the scope mapping: no reader's (docs/security.md, the roles
# table): the regulator gets no grant on them, and the query database does not import them.
PRIVATE_TABLES: Final = (
    "account_scopes",
    "consumer_offsets",
    "alerts_outbox",
    "schema_migrations",
    "shard_identity",  # each shard's place in the map (storage.shard_map): a union means nothing
    "vehicle_stats_recompute",  # plain, 0088: the upkeep's progress through the old buckets
)


@dataclass(frozen=True, slots=True)
class RoleNames:
    """The group roles' names (``[roles]``; each a plain SQL identifier)."""

    owner: str = "nev_owner"
    writer: str = "nev_writer"
    regulator: str = "nev_regulator"
    operator: str = "nev_operator"
    oem: str = "nev_oem"
    charging: str = "nev_charging"
    public: str = "nev_public"

    def __post_init__(self) -> None:
        for name in self.all():
            check_identifier(name, "role name")
        if len(set(self.all())) != len(self.all()):
            raise ValueError(f"role names must differ: {', '.join(self.all())}")

    def all(self) -> tuple[str, ...]:
        return (
            self.owner,
            self.writer,
            self.regulator,
            self.operator,
            self.oem,
            self.charging,
            self.public,
        )

    def family(self, name: str) -> str:
        """The configured role of a family name (``oem`` -> ``nev_oem``)."""
        if name not in _FAMILIES:
            raise ValueError(f"unknown role family {name!r}; one of {', '.join(_FAMILIES)}")
        return str(getattr(self, name))


_FAMILIES: Final = ("owner", "writer", "regulator", "operator", "oem", "charging", "public")


@dataclass(slots=True)
class RolesReport:
    """What ``apply`` changed (empty when everything was in place)."""

    changes: list[str] = field(default_factory=list)
