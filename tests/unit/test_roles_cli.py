"""Roles without a database: the [roles] settings, the names' validation, the scope rules of
``nev-ingest roles grant`` and the row-level predicates."""

from __future__ import annotations

import pytest

from ingest.cli import build_parser
from ingest.cli.roles import parse_scope, role_names
from ingest.config.load import load_settings
from ingest.errors import UserError
from storage.params import TIMESERIES_TABLES
from storage.roles import RoleNames
from storage.roles_policies import CHARGER_TABLES, VEHICLE_TABLES, Scope

pytestmark = pytest.mark.unit


def test_roles_are_off_by_default_and_named_from_the_settings() -> None:
    default = load_settings(environ={})
    assert default.roles.enabled is False
    assert role_names(default) == RoleNames()
    custom = load_settings(environ={"NEV_ROLES_ENABLED": "true", "NEV_ROLES_OEM": "fleet_oem"})
    assert custom.roles.enabled and role_names(custom).oem == "fleet_oem"
    with pytest.raises(UserError, match=r"roles\.oem"):
        load_settings(environ={"NEV_ROLES_OEM": "Robert'); DROP"})


def test_role_names_must_be_plain_and_distinct() -> None:
    with pytest.raises(ValueError, match="must differ"):
        RoleNames(oem="nev_public")
    with pytest.raises(Exception, match="role name"):
        RoleNames(writer="nev writer")


@pytest.mark.parametrize(
    ("family", "text", "scope"),
    [
        ("oem", "lfv, LSV,LFV", ["LFV", "LSV"]),  # upper-cased, deduplicated, sorted
        ("oem", "LSVAG2180E2100001", ["LSVAG2180E2100001"]),  # a whole VIN is a prefix too
        ("charging", "MA01H3BQ1", ["MA01H3BQ1"]),
        ("regulator", "", []),
    ],
)
def test_scopes_accepted(family: str, text: str, scope: list[str]) -> None:
    assert parse_scope(family, text) == scope


@pytest.mark.parametrize(
    ("family", "text", "says"),
    [
        ("oem", "", "needs --scope"),
        ("oem", "LF%", "VIN characters"),  # a LIKE wildcard never reaches a pattern
        ("oem", "LF_", "VIN characters"),
        ("oem", "LIO", "VIN characters"),  # I, O, Q are not VIN characters
        ("oem", "LSVAG2180E21000011", "VIN characters"),  # 18: longer than a VIN
        ("charging", "MA01H3BQ", "9 letters or digits"),
        ("writer", "LFV", "is for --as oem or charging"),
    ],
)
def test_scopes_refused_in_one_line(family: str, text: str, says: str) -> None:
    with pytest.raises(UserError) as err:
        parse_scope(family, text)
    message = str(err.value)
    assert "\n" not in message
    assert says in message


def test_the_command_line_parses_grant_revoke_and_list() -> None:
    parser = build_parser()
    args = parser.parse_args(["roles", "grant", "acme_bi", "--as", "oem", "--scope", "LFV"])
    assert (args.action, args.login, args.family, args.scope) == ("grant", "acme_bi", "oem", "LFV")
    assert parser.parse_args(["roles", "revoke", "acme_bi", "--as", "oem"]).action == "revoke"
    assert parser.parse_args(["roles", "list", "--format", "json"]).format == "json"
    with pytest.raises(SystemExit):
        parser.parse_args(["roles", "grant", "Acme BI", "--as", "oem"])


def test_every_owned_table_gets_the_regulator_and_its_owner_family() -> None:
    scope = Scope("nev", RoleNames())
    for table in VEHICLE_TABLES:
        policies = scope.policies(table)
        assert set(policies) == {"read_nev_regulator", "read_nev_oem"}
        assert "current_user" in policies["read_nev_oem"][1]
    for table in CHARGER_TABLES:
        assert set(scope.policies(table)) == {"read_nev_regulator", "read_nev_charging"}
    latest = scope.policies("latest_state")
    assert "entity_kind = 'vehicle'" in latest["read_nev_oem"][1]
    assert "entity_kind = 'charger'" in latest["read_nev_charging"][1]
    # every time series of an owner is guarded (packs have no owner mapping: regulators only)
    owned = {t for t in TIMESERIES_TABLES if not t.startswith(("pack_", "raw_"))}
    assert owned <= {*VEHICLE_TABLES, *CHARGER_TABLES}
