"""``nev-ingest keys``: the device key registry that 2025 signatures are verified against
(docs/security.md, "Signatures").

``keys add VIN --algorithm rsa|sm2 --key-file FILE`` registers a key (PEM or DER in the file,
or ``--key-hex`` for the activation's raw form); a VIN that has a key keeps it unless
``--replace`` rotates it. ``keys list`` shows the active keys (``--all``: revoked too);
``keys revoke VIN`` revokes the VIN's key. The registry is shard 0's database
(``storage.shards[0]``, else ``postgres.dsn``); workers pick a change up within
``security.key_refresh_s``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
from pathlib import Path
from typing import Any, Final

import orjson

from ingest.cli.args import text, vin
from ingest.config.load import add_config_arguments, settings_from_args
from ingest.errors import UserError

__all__ = ["register"]

ALGORITHMS: Final = {"sm2": 1, "rsa": 2}
NAMES: Final = {v: k for k, v in ALGORITHMS.items()}
MAX_KEY_BYTES: Final = 16 * 1024  # a PEM RSA-8192 key is ~1.5 KiB: anything bigger is a mistake


def register(subparsers: Any) -> None:
    """Add the ``keys`` subcommand (``add``, ``list``, ``revoke``)."""
    p = subparsers.add_parser("keys", help="register, list and revoke vehicle signature keys")
    sub = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="register a vehicle's public key")
    add.add_argument("vin", type=vin, metavar="VIN")
    add.add_argument("--algorithm", choices=tuple(ALGORITHMS), required=True)
    src = add.add_mutually_exclusive_group(required=True)
    src.add_argument("--key-file", type=Path, help="PEM or DER public key")
    src.add_argument("--key-hex", help="the key as hex (RSA modulus||exponent, SM2 x||y)")
    add.add_argument("--chip-id", type=text(16), help="the security chip's id")
    add.add_argument("--replace", action="store_true", help="revoke the VIN's key first")
    add.set_defaults(func=_add)
    ls = sub.add_parser("list", help="active keys (--all: revoked too)")
    ls.add_argument("--all", action="store_true", help="include revoked keys")
    ls.add_argument("--format", choices=("table", "json"), default="table")
    ls.set_defaults(func=_list)
    rv = sub.add_parser("revoke", help="revoke a vehicle's key")
    # Any stored id: keys registered before add checked VINs, or from activation frames.
    rv.add_argument("vin", type=text(17), metavar="VIN")
    rv.set_defaults(func=_revoke)
    for sp in (add, ls, rv):
        add_config_arguments(sp)


async def _with_registry(args: argparse.Namespace, work: Any) -> Any:
    from ingest.cli.migrate import open_connection
    from ingest.wiring import shard_pool_params

    settings = settings_from_args(args)
    params = shard_pool_params(settings, "nev-ingest-keys")[0]
    fix = "set NEV_POSTGRES_DSN or [postgres] dsn (with shards: the registry is on shard 0)"
    conn = await open_connection(settings, "nev-ingest-keys", params, fix=fix)
    try:
        return await work(conn, params.schema)
    except Exception as exc:
        if type(exc).__name__ == "UndefinedTableError":
            raise UserError("no device_keys table: run `nev-ingest migrate` first") from exc
        raise
    finally:
        await conn.close()


def _read_key(args: argparse.Namespace) -> bytes:
    if args.key_hex is not None:
        try:
            return bytes.fromhex(args.key_hex)
        except ValueError as exc:
            raise UserError(f"--key-hex: not hex ({exc}); give the key's bytes as hex") from exc
    path: Path = args.key_file
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"--key-file {path}: {exc.strerror}; give a readable key file") from exc
    if len(data) > MAX_KEY_BYTES:
        raise UserError(f"--key-file {path}: {len(data)} bytes is no public key; check the file")
    return data


def _add(args: argparse.Namespace) -> int:
    import nev_native

    from storage.keys import DeviceKey, add

    key = _read_key(args)
    algorithm = ALGORITHMS[args.algorithm]
    try:
        nev_native.check_key(algorithm, key)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    row = DeviceKey(args.vin, algorithm, key, "admin", args.chip_id)

    async def work(conn: Any, schema: str) -> tuple[bool, DeviceKey | None]:
        return await add(conn, schema, row, replace=args.replace)

    added, existing = asyncio.run(_with_registry(args, work))
    if not added and args.replace:
        # The one way --replace adds nothing: another registration's key took the VIN's one
        # active place (the partial unique index) while this one waited - a second `keys add
        # --replace` that revoked the old key first, or for a VIN without a key a plain `keys
        # add` or a vehicle's activation.
        now = (
            "no active key now"
            if existing is None
            else f"its active key is now a {NAMES.get(existing.algorithm, '?')} key "
            f"{_fingerprint(existing.public_key)} ({existing.source})"
        )
        raise UserError(
            f"VIN {args.vin}: another registration added a key meanwhile and {now}; "
            "this command changed nothing: check nev-ingest keys list --all, then run it "
            "again if this key is to replace that one"
        )
    if not added:
        raise UserError(
            f"VIN {args.vin} already has a {NAMES.get(existing.algorithm if existing else 0, '?')}"
            " key; rotate it with --replace"
        )
    print(f"registered {args.algorithm} key {_fingerprint(key)} for VIN {args.vin}")
    return 0


def _fingerprint(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


def _list(args: argparse.Namespace) -> int:
    from storage.keys import DeviceKey, list_keys

    async def work(conn: Any, schema: str) -> list[DeviceKey]:
        return await list_keys(conn, schema, include_revoked=args.all)

    rows: list[DeviceKey] = asyncio.run(_with_registry(args, work))
    for k in rows:
        item = {
            "vin": k.vin,
            "algorithm": NAMES.get(k.algorithm, str(k.algorithm)),
            "fingerprint": _fingerprint(k.public_key),
            "source": k.source,
            "chip_id": k.chip_id,
            "created_at": k.created_at.isoformat() if k.created_at else None,
            "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
        }
        if args.format == "json":
            print(orjson.dumps(item).decode())
        else:
            print("  ".join(str(item[c] or "-") for c in item))
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from storage.keys import revoke

    async def work(conn: Any, schema: str) -> int:
        return await revoke(conn, schema, args.vin)

    if asyncio.run(_with_registry(args, work)) == 0:
        raise UserError(f"VIN {args.vin} has no active key; see nev-ingest keys list")
    print(f"revoked the key of VIN {args.vin}")
    return 0
