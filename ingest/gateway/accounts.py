"""Enterprise-platform accounts: user name -> scrypt password hash, in a TOML or JSON file.

The file (``gateway.accounts_file``) is a table ``accounts`` of user -> hash string::

    [accounts]
    "oem-platform-1" = "scrypt$16384$8$1$<salt base64>$<hash base64>"

One hash string per entry carries its own salt and cost parameters, so the parameters can be
raised later without invalidating older entries. scrypt (``hashlib.scrypt``, OpenSSL) is the
standard library's memory-hard password hash; a check costs ~50 ms and 16 MiB at the default
cost, which is why ``verify`` runs off the event loop. ``nev-ingest gateway passwd`` adds or
rotates an entry (written atomically: a temporary file renamed over the old one).

``Accounts`` re-reads the file when its modification time, size or inode changed (at most
once per ``check_every_s``), so a rotation needs no restart; a file that no longer parses is
logged and the previous table kept (a typo must not lock every platform out).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
import tomllib
from pathlib import Path
from typing import Final

from ingest.errors import UserError

__all__ = ["Accounts", "hash_password", "load_accounts", "set_password", "verify_password"]

log = logging.getLogger(__name__)

# OWASP's scrypt minimum (N=2^17, r=8, p=1) costs 128 MiB per check; platform logins are rare
# but a burst of reconnects after a gateway restart checks one per platform, so the default is
# N=2^14 (16 MiB, ~50 ms): still ~10^4 times the cost of a fast hash per guess.
SCRYPT_N: Final = 2**14
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
_SALT_BYTES: Final = 16
_HASH_BYTES: Final = 32
_PREFIX: Final = "scrypt"
# GB/T 32960 fields: user STRING12, password STRING20.
MAX_USER_BYTES: Final = 12
MAX_PASSWORD_BYTES: Final = 20


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """A new hash string of ``password`` with a fresh random salt."""
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _scrypt(password, salt, n, r, p)
    b64 = base64.b64encode
    return f"{_PREFIX}${n}${r}${p}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches the hash string ``stored`` (False for a malformed one)."""
    try:
        prefix, n, r, p, salt, digest = stored.split("$")
        if prefix != _PREFIX:
            return False
        want = base64.b64decode(digest, validate=True)
        got = _scrypt(password, base64.b64decode(salt, validate=True), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(got, want)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    # maxmem: OpenSSL's default (32 MiB) refuses r=8 with N above 2^14; allow up to 2^16.
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=2**28, dklen=_HASH_BYTES
    )


def load_accounts(path: Path) -> dict[str, str]:
    """The file's user -> hash table; ``UserError`` (one line) if it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except FileNotFoundError:
        raise UserError(
            f"gateway.accounts_file {path} does not exist; create it with "
            f"nev-ingest gateway passwd USER --accounts {path}"
        ) from None
    except (OSError, ValueError) as exc:
        raise UserError(f"gateway.accounts_file {path} cannot be read ({exc}); fix it") from None
    table = data.get("accounts") if isinstance(data, dict) else None
    if not isinstance(table, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v.startswith(_PREFIX + "$")
        for k, v in table.items()
    ):
        raise UserError(
            f"gateway.accounts_file {path}: expected a table 'accounts' of user = "
            '"scrypt$..." strings; write entries with nev-ingest gateway passwd'
        )
    return dict(table)


def _wire(text: str, what: str) -> bytes:
    """``text`` as a platform login's STRING field carries it, or a one-line error for what the
    gateway could never match: it reads those fields without surrounding spaces and NULs
    (``decode_text``), and GB 18030 holds no lone surrogate."""
    if text != text.strip(" \0") or "\0" in text:
        raise UserError(
            f"{what}: no space or NUL at its start or end, and no NUL inside (the login frame's "
            "text fields drop them, so it could never match)"
        )
    try:
        return text.encode("gb18030")
    except UnicodeEncodeError:
        raise UserError(f"{what}: not text GB 18030 can carry") from None


def set_password(path: Path, user: str, password: str) -> bool:
    """Add or rotate ``user``'s entry in the file (created if missing); True if it existed."""
    if not user or len(_wire(user, f"user {user!r}")) > MAX_USER_BYTES:
        raise UserError(f"user {user!r}: 1 to {MAX_USER_BYTES} bytes (GB/T 32960 STRING12)")
    if not password or len(_wire(password, "the password")) > MAX_PASSWORD_BYTES:
        raise UserError(f"the password must be 1 to {MAX_PASSWORD_BYTES} bytes (STRING20)")
    table = load_accounts(path) if path.exists() else {}
    existed = user in table
    table[user] = hash_password(password)
    if path.suffix == ".json":
        text = json.dumps({"accounts": table}, ensure_ascii=False, indent=2) + "\n"
    else:
        lines = ["# nev-ingest gateway accounts: user = scrypt hash (nev-ingest gateway passwd)"]
        lines.append("[accounts]")
        # json.dumps quotes a TOML basic string correctly (same escapes, no "\/" emitted).
        lines += [
            f"{json.dumps(k, ensure_ascii=False)} = {json.dumps(v)}" for k, v in table.items()
        ]
        text = "\n".join(lines) + "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(0o600)  # hashes, but offline guessing still needs the file
    tmp.replace(path)
    return existed


class Accounts:
    """The accounts table of a file, re-read when the file changes."""

    def __init__(self, path: Path | None, *, check_every_s: float = 1.0) -> None:
        self._path = path
        self._check_every_s = check_every_s
        self._checked = float("-inf")
        self._stamp: tuple[int, int, int] | None = None
        self._table: dict[str, str] = {}
        if path is not None:
            self._table = load_accounts(path)  # a bad file at start is a one-line exit
            self._stamp = self._stat()

    def __len__(self) -> int:
        return len(self._table)

    def lookup(self, user: str) -> str | None:
        """The stored hash of ``user`` (after re-reading a changed file), or None."""
        self._maybe_reload()
        return self._table.get(user)

    def _stat(self) -> tuple[int, int, int] | None:
        assert self._path is not None
        try:
            st = self._path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if self._path is None or now - self._checked < self._check_every_s:
            return
        self._checked = now
        stamp = self._stat()
        if stamp == self._stamp:
            return
        try:
            self._table = load_accounts(self._path)
        except UserError as exc:
            log.error("accounts file not reloaded, keeping %d accounts: %s", len(self._table), exc)
            return
        self._stamp = stamp
        log.info("accounts file reloaded", extra={"accounts": len(self._table)})
