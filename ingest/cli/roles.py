"""``nev-ingest roles``: give a login one of the database roles, and an OEM or charging-operator
account its scope.

``grant LOGIN --as oem --scope LFV,LSV`` creates the login when it is missing (without a
password: set one with psql's ``\\password LOGIN``, which sends it hashed, or use certificate
authentication), makes it a member of the configured group role (``[roles]``), sets its
search_path to the schema, and records its scope in ``account_scopes`` of every shard. A writer
login is also set to act as the writer role in every session (``ALTER ROLE ... SET role``):
BYPASSRLS, which binary COPY into the guarded tables needs, is an attribute and not inherited
through membership. ``revoke`` undoes a grant (the login stays); ``list`` shows who has what.
Run it as the migrating user (CREATEROLE, a member of the owner role). The roles come from
``nev-ingest migrate`` with roles.enabled.
"""

from __future__ import annotations

import argparse
import asyncio
import re
from typing import Any, Final

import orjson

from ingest.cli.args import add_database_arguments, database_flags, login_name
from ingest.cli.migrate import open_connection, role_names
from ingest.config import Settings
from ingest.config.load import add_config_arguments, settings_from_args
from ingest.errors import UserError
from ingest.wiring import pool_params, shard_pool_params
from storage.params import check_identifier
from storage.roles import RoleNames

__all__ = ["register", "role_names"]

FAMILIES: Final = ("writer", "regulator", "operator", "oem", "charging", "public", "owner")
SCOPED: Final = ("oem", "charging")
# What a scope item may be (the same rules as account_scopes' CHECKs): a VIN prefix of VIN
# characters (no I, O, Q; so never a LIKE wildcard), a 9-character T/CEC OperatorID.
_VIN_PREFIX: Final = re.compile(r"[A-HJ-NPR-Z0-9]{1,17}")
_OPERATOR_ID: Final = re.compile(r"[A-Z0-9]{9}")


def register(subparsers: Any) -> None:
    """Add the ``roles`` subcommand."""
    p = subparsers.add_parser(
        "roles",
        help="grant a login a database role (and an OEM / charging operator its scope)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (
        ("grant", "make LOGIN a member of a role (created if missing); --scope for oem/charging"),
        ("revoke", "take the role (and its scope) from LOGIN; the login stays"),
    ):
        a = sub.add_parser(action, help=text, description=text)
        a.add_argument("login", type=login_name, help="login role (a plain lower-case SQL name)")
        a.add_argument("--as", dest="family", choices=FAMILIES, required=True)
        if action == "grant":
            a.add_argument(
                "--scope",
                default="",
                help="oem: VIN prefixes (WMI, e.g. LFV,LSV); charging: 9-character operator ids",
            )
        _common(a)
    _common(sub.add_parser("list", help="the roles, their members and the scopes"))
    p.set_defaults(func=_main)


def _common(p: argparse.ArgumentParser) -> None:
    add_database_arguments(p)
    p.add_argument("--format", choices=("text", "json"), default="text")
    add_config_arguments(p)


def parse_scope(family: str, text: str) -> list[str]:
    """The scope items of ``--scope`` for ``family``, or a one-line ``UserError``."""
    items = [s.strip().upper() for s in text.split(",") if s.strip()]
    if family not in SCOPED:
        if items:
            raise UserError(f"--scope is for --as oem or charging, not {family}: drop it")
        return []
    if not items:
        what = "VIN prefixes (e.g. LFV,LSV)" if family == "oem" else "operator ids (9 characters)"
        raise UserError(f"--as {family} needs --scope with its {what}")
    rule = _VIN_PREFIX if family == "oem" else _OPERATOR_ID
    bad = [s for s in items if not rule.fullmatch(s)]
    if bad:
        what = (
            "a VIN prefix is 1-17 VIN characters (A-Z without I, O, Q; 0-9)"
            if family == "oem"
            else "an operator id is 9 letters or digits"
        )
        raise UserError(f"--scope {bad[0]!r}: {what}")
    return sorted(set(items))


def _main(args: argparse.Namespace) -> int:
    settings = settings_from_args(args, database_flags(args))
    if args.action == "grant":
        args.items = parse_scope(args.family, args.scope)
    if args.action != "list":
        names = role_names(settings)
        if args.login in names.all():
            raise UserError(f"{args.login} is one of the group roles of [roles]; name a login")
    return asyncio.run(_run(args, settings))


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    app = "nev-ingest roles"
    targets = [pool_params(settings, app)] if args.dsn else shard_pool_params(settings, app)
    names = role_names(settings)
    schema = check_identifier(settings.storage.schema)
    out: list[dict[str, Any]] = []
    for index, params in enumerate(targets):
        conn = await open_connection(settings, app, params)
        try:
            await _require_schema(conn, schema)
            if args.action == "list":
                out.append({"shard": index, **await _list(conn, schema, names)})
            elif args.action == "grant":
                out.append(await _grant(conn, schema, names, args.login, args.family, args.items))
            else:
                out.append(await _revoke(conn, schema, names, args.login, args.family))
        finally:
            await conn.close()
    for item in out if args.format == "json" else ():
        print(orjson.dumps(item).decode())
    if args.format == "text":
        _print_text(args, out)
    return 0


async def _require_schema(conn: Any, schema: str) -> None:
    if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{schema}.account_scopes"):
        raise UserError(
            f"schema {schema} has no account_scopes table: run nev-ingest migrate (with "
            "roles.enabled = true) first, or name the schema with --schema"
        )


async def _group(conn: Any, names: RoleNames, family: str) -> str:
    group = names.family(family)
    if not await conn.fetchval("SELECT count(*) FROM pg_roles WHERE rolname = $1", group):
        raise UserError(
            f"role {group} does not exist: set roles.enabled = true and run nev-ingest migrate"
        )
    return group


async def _grant(
    conn: Any, schema: str, names: RoleNames, login: str, family: str, items: list[str]
) -> dict[str, Any]:
    group = await _group(conn, names, family)
    done: dict[str, Any] = {"login": login, "role": group, "created": False}
    if not await conn.fetchval("SELECT count(*) FROM pg_roles WHERE rolname = $1", login):
        await conn.execute(f"CREATE ROLE {login} LOGIN")
        done["created"] = True
    if family in SCOPED:
        other = await conn.fetchval(
            f"SELECT family FROM {schema}.account_scopes WHERE login = $1", login
        )
        if other is not None and other != family:
            raise UserError(
                f"{login} is a {other} account: nev-ingest roles revoke {login} --as {other} "
                "first (one login, one scope)"
            )
    await conn.execute(f"GRANT {group} TO {login}")
    # Unqualified names (BI tools, `nev-ingest alerts`, which does not qualify them) find the
    # schema's tables; the service itself sets its own search_path.
    await conn.execute(f"ALTER ROLE {login} SET search_path = {schema}, public")
    if family == "writer":
        await conn.execute(f"ALTER ROLE {login} SET role = '{group}'")
    if family in SCOPED:
        column = "vin_prefixes" if family == "oem" else "operator_ids"
        await conn.execute(
            f"INSERT INTO {schema}.account_scopes (login, family, {column}) VALUES ($1, $2, $3) "
            f"ON CONFLICT (login) DO UPDATE SET {column} = excluded.{column}, updated_at = now()",
            login,
            family,
            items,
        )
        done["scope"] = items
    return done


async def _revoke(
    conn: Any, schema: str, names: RoleNames, login: str, family: str
) -> dict[str, Any]:
    group = await _group(conn, names, family)
    if not await conn.fetchval("SELECT count(*) FROM pg_roles WHERE rolname = $1", login):
        raise UserError(f"there is no login {login}: nothing to revoke")
    await conn.execute(f"REVOKE {group} FROM {login}")
    if family == "writer":
        await conn.execute(f"ALTER ROLE {login} RESET role")
    scopes = 0
    if family in SCOPED:
        status = await conn.execute(
            f"DELETE FROM {schema}.account_scopes WHERE login = $1 AND family = $2", login, family
        )
        scopes = int(status.split()[-1])
    return {"login": login, "role": group, "revoked": True, "scopes_removed": scopes}


async def _list(conn: Any, schema: str, names: RoleNames) -> dict[str, Any]:
    rows = await conn.fetch(
        "SELECT g.rolname AS role, m.rolname AS member FROM pg_auth_members a "
        "JOIN pg_roles g ON g.oid = a.roleid JOIN pg_roles m ON m.oid = a.member "
        "WHERE g.rolname = ANY($1::text[]) ORDER BY 1, 2",
        list(names.all()),
    )
    members: dict[str, list[str]] = {n: [] for n in names.all()}
    for r in rows:
        members[r["role"]].append(r["member"])
    scopes = await conn.fetch(
        f"SELECT login, family, vin_prefixes, operator_ids FROM {schema}.account_scopes "
        "ORDER BY login"
    )
    return {
        "members": members,
        "scopes": {
            s["login"]: list(s["vin_prefixes"] if s["family"] == "oem" else s["operator_ids"])
            for s in scopes
        },
    }


def _print_text(args: argparse.Namespace, out: list[dict[str, Any]]) -> None:
    label = len(out) > 1
    for index, item in enumerate(out):
        prefix = f"shard {index}: " if label else ""
        if args.action == "list":
            for role, members in item["members"].items():
                print(f"{prefix}{role}: {', '.join(members) or '-'}")
            for login, scope in item["scopes"].items():
                print(f"{prefix}  scope of {login}: {', '.join(scope)}")
        elif args.action == "grant":
            made = " (created, no password: psql \\password to set one)" if item["created"] else ""
            scope = f"; scope {', '.join(item['scope'])}" if "scope" in item else ""
            print(f"{prefix}{item['login']}{made}: member of {item['role']}{scope}")
        else:
            print(f"{prefix}{item['login']}: no longer in {item['role']}")
