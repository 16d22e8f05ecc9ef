"""The ``[roles]`` section: the database roles ``nev-ingest migrate`` creates and grants.

Every name is a NOLOGIN group role of the PostgreSQL cluster; deployments grant them to their
login users (``nev-ingest roles grant LOGIN --as writer``). docs/security.md ("Database roles
and row-level access") says what each may do and what the migrating user needs.
"""

from __future__ import annotations

from dataclasses import dataclass

from ingest.config.bounds import SQL_ROLE
from ingest.config.fields import Section, setting

__all__ = ["RolesSettings"]


# A declarative table like the sections of ingest.config.settings: one line a key.
@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class RolesSettings(Section):
    enabled: bool = setting(
        False,
        "nev-ingest migrate creates the roles below, their grants and the row-level policies "
        "(needs CREATEROLE; the writer's BYPASSRLS needs a superuser on PostgreSQL 15, or a "
        "migrating user with BYPASSRLS on 16+). Off: everything stays with the migrating user.",
    )
    owner: str = setting(
        "nev_owner",
        "Owns the schema and its objects; grant it to the migrating login.",
        pattern=SQL_ROLE,
    )
    writer: str = setting(
        "nev_writer",
        "The service (nev-ingest run): inserts telemetry, its offsets, latest_state, alerts.",
        pattern=SQL_ROLE,
    )
    regulator: str = setting(
        "nev_regulator",
        "Municipal regulator: reads every table and view, writes nothing.",
        pattern=SQL_ROLE,
    )
    operator: str = setting(
        "nev_operator",
        "Regulator who may also acknowledge alerts (nev-ingest alerts ack).",
        pattern=SQL_ROLE,
    )
    oem: str = setting(
        "nev_oem",
        "Enterprise (OEM) accounts: their vehicles only, by VIN prefix (account_scopes).",
        pattern=SQL_ROLE,
    )
    charging: str = setting(
        "nev_charging",
        "Charging operators: their connectors only, by operator_id (account_scopes).",
        pattern=SQL_ROLE,
    )
    public: str = setting(
        "nev_public",
        "Public statistics: the public_* views only (positions to ~1 km, no VINs).",
        pattern=SQL_ROLE,
    )
